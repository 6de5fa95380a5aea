"""The document store's tables and the writes both databases share: collections (owned by a tenant),
documents (replaced atomically by id) and their chunks with a vector and full text each.

Vector and text search differ by database: `sqlite_store.SqliteStore` (the embedded default) and
`pg_store.PgStore` (PostgreSQL + pgvector, shared by replicas). `open_store` picks one."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)

from chains.database import Database, safe_url
from chains.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkRow:
    """One chunk as stored: its place in the document and its text."""

    position: int
    text: str
    start: int
    end: int
    page: int | None
    tokens: int


@dataclass(frozen=True)
class Hit:
    """A chunk a search found, with its document's id and metadata."""

    chunk_id: int
    text: str
    document_id: str
    position: int
    start: int
    end: int
    page: int | None
    metadata: dict[str, Any]
    source: str | None


def tables(vector_type: Any) -> tuple[MetaData, Table, Table, Table]:
    """The collections, documents and chunks tables, with `vector_type` for the embeddings."""
    meta = MetaData()
    collections = Table(
        "hfchain_collections",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("tenant", String(64), nullable=False),
        Column("name", String(64), nullable=False),
        Column("description", Text, nullable=False, default=""),
        Column("encoder", String(256), nullable=False),
        Column("dimensions", Integer, nullable=False),
        Column("version", Integer, nullable=False, default=0),  # bumped by every change: caches reload
        Column("job", Text),  # JSON: the last ingestion job's progress
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("tenant", "name"),
        sqlite_autoincrement=True,  # ids are never reused: nothing of a deleted collection reaches a new one
    )
    documents = Table(
        "hfchain_documents",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("collection_id", Integer, nullable=False, index=True),
        Column("document_id", String(256), nullable=False),
        Column("content_hash", String(64), nullable=False),
        Column("metadata", Text, nullable=False, default="{}"),
        Column("source", String(256)),
        Column("chars", Integer, nullable=False),
        Column("chunks", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("collection_id", "document_id"),
        sqlite_autoincrement=True,
    )
    chunks = Table(
        "hfchain_chunks",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("collection_id", Integer, nullable=False, index=True),
        Column("document_row", Integer, nullable=False, index=True),
        Column("position", Integer, nullable=False),
        Column("text", Text, nullable=False),
        Column("start", Integer, nullable=False),
        Column("end", Integer, nullable=False),
        Column("page", Integer),
        Column("tokens", Integer, nullable=False),
        Column("norm", Float, nullable=False, default=1.0),
        Column("embedding", vector_type, nullable=False),
        sqlite_autoincrement=True,
    )
    return meta, collections, documents, chunks


class DocumentStore:
    """Collections of documents in one database; subclasses add vector and text search."""

    kind = "base"

    def __init__(self, database: Database, encoder: str, dimensions: int, vector_type: Any = LargeBinary):
        self.database, self.encoder, self.dimensions = database, encoder, dimensions
        self.meta, self.collections_t, self.documents_t, self.chunks_t = tables(vector_type)
        self.prepare()
        log.info("documents stored in %s (%s)", safe_url(database.url), self.kind)

    def prepare(self) -> None:
        """Create the tables (and the search structures of the database)."""
        self.database.create(self.meta)

    # collections
    def create_collection(self, tenant: str, name: str, description: str = "") -> dict[str, Any]:
        """A new empty collection (409 if the tenant has one of that name)."""
        now = datetime.now(UTC)
        row = {
            "tenant": tenant,
            "name": name,
            "description": description,
            "encoder": self.encoder,
            "dimensions": self.dimensions,
            "version": 0,
            "created_at": now,
            "updated_at": now,
        }
        with self.database.connect() as conn, conn.begin():
            taken = conn.execute(select(self.collections_t.c.id).where(*self._named(tenant, name))).first()
            if taken is not None:
                raise Conflict(f"a collection named {name!r} exists: pick another name or delete it first")
            conn.execute(insert(self.collections_t).values(**row))
        return self.describe(tenant, name)

    def collection_row(self, tenant: str, name: str) -> Any:
        """The tenant's collection row (404 when the tenant has none of that name)."""
        with self.database.connect() as conn:
            row = conn.execute(select(self.collections_t).where(*self._named(tenant, name))).first()
        if row is None:
            raise NotFound(f"no collection named {name!r}: create it with POST /collections first")
        return row

    def usable(self, tenant: str, name: str) -> Any:
        """The collection row, checked to be embedded with the served encoder (422 otherwise)."""
        row = self.collection_row(tenant, name)
        if row.encoder != self.encoder or row.dimensions != self.dimensions:
            raise InvalidInput(
                f"collection {name!r} was embedded with {row.encoder} ({row.dimensions} dimensions) but "
                f"the server's encoder is {self.encoder} ({self.dimensions}): serve that encoder "
                "(HFCHAIN_EMBEDDING_MODEL) or ingest the documents into a new collection"
            )
        return row

    def names(self, tenant: str) -> list[str]:
        """The tenant's collections, by name."""
        query = select(self.collections_t.c.name).where(self.collections_t.c.tenant == tenant)
        with self.database.connect() as conn:
            return sorted(conn.execute(query).scalars().all())

    def describe(self, tenant: str, name: str) -> dict[str, Any]:
        """What GET /collections/{name} shows: counts, encoder, times and the last ingestion job."""
        row = self.collection_row(tenant, name)
        d, c = self.documents_t, self.chunks_t
        with self.database.connect() as conn:
            documents = conn.execute(select(func.count()).where(d.c.collection_id == row.id)).scalar()
            chunks, tokens = conn.execute(
                select(func.count(), func.coalesce(func.sum(c.c.tokens), 0)).where(
                    c.c.collection_id == row.id
                )
            ).one()
        return {
            "name": row.name,
            "description": row.description,
            "documents": documents,
            "chunks": chunks,
            "tokens": int(tokens),
            "encoder": row.encoder,
            "dimensions": row.dimensions,
            "store": self.kind,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
            "job": json.loads(row.job) if row.job else None,
        }

    def delete_collection(self, tenant: str, name: str) -> dict[str, Any]:
        """Remove the collection with its documents and chunks, in one transaction."""
        row = self.collection_row(tenant, name)
        with self.database.connect() as conn, conn.begin():
            self.lock(conn, row.id)  # waits for a document being stored; later ones find no collection
            chunks = conn.execute(delete(self.chunks_t).where(self.chunks_t.c.collection_id == row.id))
            docs = conn.execute(delete(self.documents_t).where(self.documents_t.c.collection_id == row.id))
            conn.execute(delete(self.collections_t).where(self.collections_t.c.id == row.id))
        self.forget(row.id)
        return {"name": name, "deleted": True, "documents": docs.rowcount, "chunks": chunks.rowcount}

    def set_job(self, collection_id: int, job: dict[str, Any]) -> None:
        """Record an ingestion job's progress on its collection (every replica's GET shows it)."""
        values = {"job": json.dumps(job)}
        with self.database.connect() as conn, conn.begin():
            conn.execute(update(self.collections_t).where(self.collections_t.c.id == collection_id), values)

    # documents
    def documents(self, tenant: str, name: str) -> list[dict[str, Any]]:
        """The collection's documents: id, source, metadata, characters, chunks, time."""
        row = self.collection_row(tenant, name)
        d = self.documents_t
        query = select(d).where(d.c.collection_id == row.id).order_by(d.c.document_id)
        with self.database.connect() as conn:
            return [_document(doc) for doc in conn.execute(query)]

    def content_hash(self, collection_id: int, document_id: str) -> str | None:
        """The stored hash of a document's text and metadata (None when it is not stored)."""
        d = self.documents_t
        where = (d.c.collection_id == collection_id) & (d.c.document_id == document_id)
        with self.database.connect() as conn:
            return conn.execute(select(d.c.content_hash).where(where)).scalar()

    def put_document(
        self,
        collection_id: int,
        document: dict[str, Any],
        chunks: list[ChunkRow],
        vectors: Any,
    ) -> str:
        """Store a document and its chunks, replacing one of the same id in the same transaction (a
        search sees the old chunks or the new ones, never a mix); "added" or "replaced"."""
        d, c = self.documents_t, self.chunks_t
        now = datetime.now(UTC)
        where = (d.c.collection_id == collection_id) & (d.c.document_id == document["document_id"])
        with self.database.connect() as conn, conn.begin():
            self.lock(conn, collection_id)
            old = conn.execute(select(d.c.id).where(where)).scalar()
            if old is not None:
                conn.execute(delete(c).where(c.c.document_row == old))
                conn.execute(delete(d).where(d.c.id == old))
            values = {**document, "metadata": json.dumps(document.get("metadata") or {})}
            values |= {"collection_id": collection_id, "chunks": len(chunks), "created_at": now}
            row_id = conn.execute(insert(d).values(**values).returning(d.c.id)).scalar_one()
            rows = [
                {**chunk.__dict__, "collection_id": collection_id, "document_row": row_id}
                | {"embedding": self.to_column(vector), "norm": 1.0}
                for chunk, vector in zip(chunks, vectors, strict=True)
            ]
            if rows:
                conn.execute(insert(c), rows)
            self._touch(conn, collection_id, now)
        return "added" if old is None else "replaced"

    def delete_document(self, tenant: str, name: str, document_id: str) -> dict[str, Any]:
        """Remove one document and its chunks (gone from search at once); 404 when it is not stored."""
        row = self.collection_row(tenant, name)
        d, c = self.documents_t, self.chunks_t
        where = (d.c.collection_id == row.id) & (d.c.document_id == document_id)
        with self.database.connect() as conn, conn.begin():
            self.lock(conn, row.id)
            old = conn.execute(select(d.c.id).where(where)).scalar()
            if old is None:
                raise NotFound(f"collection {name!r} has no document {document_id!r}")
            removed = conn.execute(delete(c).where(c.c.document_row == old)).rowcount
            conn.execute(delete(d).where(d.c.id == old))
            self._touch(conn, row.id, datetime.now(UTC))
        return {"document_id": document_id, "deleted": True, "chunks": removed}

    def hits(self, ids: list[int]) -> dict[int, Hit]:
        """The chunks of `ids` with their documents, by chunk id."""
        if not ids:
            return {}
        c, d = self.chunks_t, self.documents_t
        columns = [c.c.id, c.c.text, c.c.position, c.c.start, c.c.end, c.c.page]
        query = (
            select(*columns, d.c.document_id, d.c.metadata, d.c.source)
            .join(d, d.c.id == c.c.document_row)
            .where(c.c.id.in_(ids))
        )
        with self.database.connect() as conn:
            rows = conn.execute(query).all()
        return {r.id: _hit(r) for r in rows}

    # search: implemented per database
    def vector_search(self, collection_id: int, vector: Any, n: int, where: dict) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the `n` nearest chunks passing the filter `where`."""
        raise NotImplementedError

    def text_search(self, collection_id: int, query: str, n: int, where: dict) -> list[tuple[int, float]]:
        """(chunk id, full-text score) of the `n` best full-text matches passing the filter `where`."""
        raise NotImplementedError

    def to_column(self, vector: Any) -> Any:
        """A vector as the embedding column stores it."""
        raise NotImplementedError

    def lock(self, conn: Any, collection_id: int) -> None:
        """Serialise writers of one collection (a no-op where the database serialises all writes)."""

    def after_ingest(self, chunks: int) -> None:
        """Called once an ingestion stored `chunks` chunks."""

    def forget(self, collection_id: int) -> None:
        """Drop anything kept in memory for the collection."""

    def close(self) -> None:
        """Release the database connections."""
        self.database.close()

    def _touch(self, conn: Any, collection_id: int, now: datetime) -> None:
        t = self.collections_t
        values = {"version": t.c.version + 1, "updated_at": now}
        conn.execute(update(t).where(t.c.id == collection_id).values(**values))

    def _named(self, tenant: str, name: str) -> tuple[Any, Any]:
        t = self.collections_t
        return t.c.tenant == tenant, t.c.name == name


def _hit(r: Any) -> Hit:
    return Hit(
        r.id, r.text, r.document_id, r.position, r.start, r.end, r.page, json.loads(r.metadata), r.source
    )


def _document(row: Any) -> dict[str, Any]:
    return {
        "id": row.document_id,
        "source": row.source,
        "metadata": json.loads(row.metadata),
        "chars": row.chars,
        "chunks": row.chunks,
        "content_hash": row.content_hash,
        "created_at": row.created_at.isoformat(),
    }


def matches(metadata: dict[str, Any], document_id: str, where: dict[str, Any]) -> bool:
    """Whether a document passes a filter: every key equal to its value, or to one of a list's values."""
    for key, wanted in where.items():
        value = document_id if key == "document_id" else metadata.get(key)
        if value not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def open_store(database: Database, encoder: str, dimensions: int) -> DocumentStore:
    """The store for `database`: pgvector on PostgreSQL, SQLite with FTS5 otherwise."""
    if database.dialect == "postgresql":
        from chains.knowledge.pg_store import PgStore

        return PgStore(database, encoder, dimensions)
    if database.dialect == "sqlite":
        from chains.knowledge.sqlite_store import SqliteStore

        return SqliteStore(database, encoder, dimensions)
    raise InvalidInput(
        f"documents need SQLite or PostgreSQL with pgvector; {safe_url(database.url)} is {database.dialect}: "
        "set HFCHAIN_DOCUMENTS_URL to a postgresql+psycopg:// URL or leave it unset (SQLite)"
    )
