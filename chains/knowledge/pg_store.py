"""The shared document store: PostgreSQL with pgvector (an HNSW index, cosine) and a generated `tsvector`
column with a GIN index for full text, so every replica searches the same collections."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from chains.database import SCHEMA_LOCK, Database
from chains.errors import InvalidInput, NotFound, SessionsUnavailable
from chains.knowledge.store import DocumentStore

EF_SEARCH = 400  # HNSW candidates per query (pgvector's default 40; RESULTS: recall@10 0.92 at 100k, 8 ms)
ANALYZE_AFTER = 1000  # chunks stored by one ingestion that refresh the planner's statistics
SEARCH_DDL = [
    "ALTER TABLE hfchain_chunks ADD COLUMN IF NOT EXISTS tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX IF NOT EXISTS hfchain_chunks_tsv ON hfchain_chunks USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS hfchain_chunks_hnsw ON hfchain_chunks "
    "USING hnsw (embedding vector_cosine_ops)",
]


class PgStore(DocumentStore):
    """pgvector's HNSW for vectors (iterative scans, so filters still fill k), ts_rank_cd for text."""

    kind = "pgvector"

    def __init__(self, database: Database, encoder: str, dimensions: int) -> None:
        from pgvector.sqlalchemy import Vector

        _create_extension(database)
        super().__init__(database, encoder, dimensions, Vector(dimensions))

    def prepare(self) -> None:
        super().prepare()
        with self.database.connect() as conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
            width = conn.execute(
                text(
                    "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'hfchain_chunks'::regclass "
                    "AND attname = 'embedding'"
                )
            ).scalar()
            if width not in (None, -1, self.dimensions):
                raise InvalidInput(
                    f"the documents database holds {width}-dimensional vectors; the served encoder "
                    f"{self.encoder} gives {self.dimensions}: serve the encoder the collections were made "
                    "with (HFCHAIN_EMBEDDING_MODEL) or use another database (HFCHAIN_DOCUMENTS_URL)"
                )
            for ddl in SEARCH_DDL:
                conn.execute(text(ddl))

    def to_column(self, vector: Any) -> Any:
        return [float(x) for x in vector]

    def lock(self, conn: Any, collection_id: int) -> None:
        sql = text("SELECT id FROM hfchain_collections WHERE id = :id FOR UPDATE")
        if conn.execute(sql, {"id": collection_id}).first() is None:
            raise NotFound("the collection was deleted meanwhile: create it again and upload the documents")

    def vector_search(self, collection_id: int, vector: Any, n: int, where: dict) -> list[tuple[int, float]]:
        filters, params = _filter_sql(where)
        sql = text(
            "SELECT c.id, 1 - (c.embedding <=> CAST(:q AS vector)) AS score FROM hfchain_chunks c "
            "JOIN hfchain_documents d ON d.id = c.document_row "
            f"WHERE c.collection_id = :collection{filters} "
            "ORDER BY c.embedding <=> CAST(:q AS vector) LIMIT :limit"
        )
        params |= {"q": _literal(vector), "collection": collection_id, "limit": n}
        with self.database.connect() as conn, conn.begin():
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, n)}"))
            conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            rows = conn.execute(sql, params).all()
        return sorted(((r.id, float(r.score)) for r in rows), key=lambda hit: -hit[1])

    def text_search(self, collection_id: int, query: str, n: int, where: dict) -> list[tuple[int, float]]:
        """Chunks scored by the summed inverse document frequency of the query's words they hold (BM25's
        weights without term counts): ts_rank_cd alone weighs a word found in every chunk as much as a name
        found in one."""
        filters, params = _filter_sql(where)
        sql = text(
            "WITH words AS (SELECT DISTINCT quote_literal(word)::tsquery AS q FROM "
            "unnest(tsvector_to_array(to_tsvector('english', :text))) AS word LIMIT 32), "
            "total AS (SELECT count(*) AS n FROM hfchain_chunks WHERE collection_id = :collection), "
            "weights AS (SELECT words.q, ln(1 + (total.n - df.n + 0.5) / (df.n + 0.5)) AS idf "
            "FROM words, total, LATERAL (SELECT count(*) AS n FROM hfchain_chunks c "
            "WHERE c.collection_id = :collection AND c.tsv @@ words.q) AS df WHERE df.n > 0) "
            "SELECT c.id, sum(weights.idf) AS score FROM weights "
            "JOIN hfchain_chunks c ON c.tsv @@ weights.q "
            "JOIN hfchain_documents d ON d.id = c.document_row "
            f"WHERE c.collection_id = :collection{filters} "
            "GROUP BY c.id ORDER BY score DESC, c.id LIMIT :limit"
        )
        params |= {"text": query[:2000], "collection": collection_id, "limit": n}
        with self.database.connect() as conn:
            return [(r.id, float(r.score)) for r in conn.execute(sql, params)]

    def after_ingest(self, chunks: int) -> None:
        """Fresh planner statistics after many rows: until autovacuum's ANALYZE, PostgreSQL estimates a new
        collection as tiny and scans it without the HNSW index."""
        if chunks >= ANALYZE_AFTER:
            with self.database.connect() as conn, conn.begin():
                conn.execute(text("ANALYZE hfchain_chunks"))


def _literal(vector: Any) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def _filter_sql(where: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """SQL conditions for a metadata filter (jsonb containment: equal values, typed as JSON)."""
    parts, params = [], {}
    for i, (key, wanted) in enumerate(where.items()):
        options = wanted if isinstance(wanted, list) else [wanted]
        if key == "document_id":
            names = [f":f{i}_{j}" for j in range(len(options))]
            parts.append(f"d.document_id IN ({', '.join(names)})")
            params |= {f"f{i}_{j}": str(v) for j, v in enumerate(options)}
            continue
        tests = []
        for j, value in enumerate(options):
            tests.append(f"CAST(d.metadata AS jsonb) @> CAST(:f{i}_{j} AS jsonb)")
            params[f"f{i}_{j}"] = json.dumps({key: value})
        parts.append("(" + " OR ".join(tests) + ")")
    return "".join(f" AND {p}" for p in parts), params


def _create_extension(database: Database) -> None:
    """pgvector in the database (503 naming the fix when the server lacks it or the role may not)."""
    try:
        with database.engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except Exception as error:
        raise SessionsUnavailable(
            f"the documents database needs the pgvector extension ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0]}): install pgvector on the PostgreSQL server and run "
            "CREATE EXTENSION vector as a superuser, or leave HFCHAIN_DOCUMENTS_URL unset (SQLite)"
        ) from error
