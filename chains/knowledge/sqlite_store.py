"""The embedded document store: one SQLite file, vectors as float32 blobs searched exactly in memory, full
text through SQLite's FTS5 (BM25), kept in step with the chunks by triggers."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select, text

from chains.knowledge.store import DocumentStore, matches

FTS_DDL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS hfchain_chunks_fts USING fts5(text, content='hfchain_chunks', "
    "content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER IF NOT EXISTS hfchain_chunks_ai AFTER INSERT ON hfchain_chunks BEGIN "
    "INSERT INTO hfchain_chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS hfchain_chunks_ad AFTER DELETE ON hfchain_chunks BEGIN "
    "INSERT INTO hfchain_chunks_fts(hfchain_chunks_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); END",
]
WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class _Vectors:
    """A collection's vectors in memory, as of one version of the collection."""

    version: int
    ids: np.ndarray  # chunk ids, one per row of `matrix`
    matrix: np.ndarray  # (chunks, dimensions) float32 unit vectors
    documents: list[tuple[str, dict]]  # (document id, metadata) per row


class SqliteStore(DocumentStore):
    """Exact vector search (one matrix product over the collection, recall 1.0) and FTS5 BM25."""

    kind = "sqlite"

    def prepare(self) -> None:
        super().prepare()
        with self.database.connect() as conn, conn.begin():
            for ddl in FTS_DDL:
                conn.execute(text(ddl))
        self._cache: dict[int, _Vectors] = {}
        self._lock = threading.Lock()

    def lock(self, conn: Any, collection_id: int) -> None:
        """Write first, so the transaction holds SQLite's write lock before it reads (no stale snapshot)."""
        sql = "UPDATE hfchain_collections SET version = version WHERE id = :id"
        conn.execute(text(sql), {"id": collection_id})

    def to_column(self, vector: Any) -> bytes:
        return np.asarray(vector, dtype="<f4").tobytes()

    def vector_search(self, collection_id: int, vector: Any, n: int, where: dict) -> list[tuple[int, float]]:
        loaded = self._vectors(collection_id)
        if not len(loaded.ids):
            return []
        scores = loaded.matrix @ np.asarray(vector, dtype=np.float32)
        if where:
            allowed = np.fromiter((matches(m, d, where) for d, m in loaded.documents), bool, len(loaded.ids))
            scores = np.where(allowed, scores, -np.inf)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [(int(loaded.ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]

    def text_search(self, collection_id: int, query: str, n: int, where: dict) -> list[tuple[int, float]]:
        words = list(dict.fromkeys(w.lower() for w in WORD.findall(query)))[:64]
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        sql = text(
            "SELECT c.id, bm25(hfchain_chunks_fts) AS rank FROM hfchain_chunks_fts "
            "JOIN hfchain_chunks c ON c.id = hfchain_chunks_fts.rowid "
            "WHERE hfchain_chunks_fts MATCH :match AND c.collection_id = :collection "
            "ORDER BY rank LIMIT :limit"
        )
        limit = n if not where else n * 20 + 100  # filtered after: read more
        with self.database.connect() as conn:
            rows = conn.execute(sql, {"match": match, "collection": collection_id, "limit": limit}).all()
        if where:
            loaded = self._vectors(collection_id)
            by_id = dict(zip(loaded.ids.tolist(), loaded.documents, strict=True))
            rows = [r for r in rows if r.id in by_id and matches(by_id[r.id][1], by_id[r.id][0], where)]
        return [(r.id, -float(r.rank)) for r in rows[:n]]  # bm25() is lower-is-better

    def forget(self, collection_id: int) -> None:
        with self._lock:
            self._cache.pop(collection_id, None)

    def _vectors(self, collection_id: int) -> _Vectors:
        """The collection's vectors, reloaded when its version moved (another writer, another process)."""
        t = self.collections_t
        with self.database.connect() as conn:
            version = conn.execute(select(t.c.version).where(t.c.id == collection_id)).scalar() or 0
        with self._lock:
            cached = self._cache.get(collection_id)
            if cached is not None and cached.version == version:
                return cached
        loaded = self._load(collection_id, version)
        with self._lock:
            self._cache[collection_id] = loaded
        return loaded

    def _load(self, collection_id: int, version: int) -> _Vectors:
        c, d = self.chunks_t, self.documents_t
        query = (
            select(c.c.id, c.c.embedding, d.c.document_id, d.c.metadata)
            .join(d, d.c.id == c.c.document_row)
            .where(c.c.collection_id == collection_id)
            .order_by(c.c.id)
        )
        ids, blobs, documents, parsed = [], [], [], {}
        with self.database.connect() as conn:
            for row in conn.execute(query):
                ids.append(row.id)
                blobs.append(row.embedding)
                if row.metadata not in parsed:
                    parsed[row.metadata] = json.loads(row.metadata)
                documents.append((row.document_id, parsed[row.metadata]))
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), self.dimensions)
        return _Vectors(version, np.asarray(ids, dtype=np.int64), matrix, documents)
