"""The embedded document store: one SQLite file, vectors as float32 blobs searched exactly in memory, full
text through SQLite's FTS5 (BM25), kept in step with the chunks by triggers."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import LRUCache
from sqlalchemy import select, text

from chains.errors import NotFound
from chains.knowledge.stopwords import STOPWORDS
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
MAX_DF = 0.1  # a word in more of the chunks than this is left out of full-text queries...
VECTOR_CACHE_BYTES = 512 * 2**20  # collections' vectors kept in memory (least recently searched go first)
DF_FROM = 2000  # ...once there are this many chunks (small stores are fast, and each word may matter)
TEXT_SQL = text(
    "SELECT c.id, c.collection_id, r.rank FROM (SELECT rowid, bm25(hfchain_chunks_fts) AS rank "
    "FROM hfchain_chunks_fts WHERE hfchain_chunks_fts MATCH :match ORDER BY rank LIMIT :limit) AS r "
    "JOIN hfchain_chunks c ON c.id = r.rowid ORDER BY r.rank"
)
COUNT_SQL = text("SELECT count(*) FROM hfchain_chunks_fts WHERE hfchain_chunks_fts MATCH :match")


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


@dataclass
class _Vectors:
    """A collection's vectors in memory, as of one version of the collection."""

    version: int
    ids: np.ndarray  # chunk ids, one per row of `matrix`
    matrix: np.ndarray  # (chunks, dimensions) float32 unit vectors
    documents: list[tuple[str, dict]]  # (document id, metadata) per row

    def size(self) -> int:
        """Bytes it holds, about: the arrays, and ~200 per row for its document id and metadata."""
        return self.matrix.nbytes + self.ids.nbytes + 200 * len(self.documents)


class SqliteStore(DocumentStore):
    """Exact vector search (one matrix product over the collection, recall 1.0) and FTS5 BM25."""

    kind = "sqlite"

    def prepare(self) -> None:
        super().prepare()
        with self.database.connect() as conn, conn.begin():
            for ddl in FTS_DDL:
                conn.execute(text(ddl))
        self._cache: LRUCache = LRUCache(VECTOR_CACHE_BYTES, getsizeof=_Vectors.size)
        self._lock = threading.Lock()

    def lock(self, conn: Any, collection_id: int) -> None:
        """Write first, so the transaction holds SQLite's write lock before it reads (no stale snapshot)."""
        sql = "UPDATE hfchain_collections SET version = version WHERE id = :id"
        if conn.execute(text(sql), {"id": collection_id}).rowcount == 0:
            raise NotFound("the collection was deleted meanwhile: create it again and upload the documents")

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
        """BM25 over the query's words, less stop words and words in over MAX_DF of all chunks (they weigh
        little in BM25 and make every chunk a match to score); the best matches are read in rounds until `n`
        of them are the collection's (and pass the filter)."""
        words = [w for w in dict.fromkeys(w.lower() for w in WORD.findall(query)) if w not in STOPWORDS][:32]
        with self.database.connect() as conn:
            words = self._telling(conn, words)
            if not words:
                return []
            match = " OR ".join(_quoted(w) for w in words)
            allowed = self._allowed(collection_id, where)
            limit = max(4 * n, 200)
            while True:
                rows = conn.execute(TEXT_SQL, {"match": match, "limit": limit}).all()
                kept = [
                    r
                    for r in rows
                    if r.collection_id == collection_id and (allowed is None or r.id in allowed)
                ]
                if len(kept) >= n or len(rows) < limit:
                    return [(r.id, -float(r.rank)) for r in kept[:n]]  # bm25() is lower-is-better
                limit *= 4

    def _telling(self, conn: Any, words: list[str]) -> list[str]:
        """The words that say something: in at most MAX_DF of the chunks (else the two rarest found), once the
        store holds DF_FROM chunks."""
        total = conn.execute(text("SELECT count(*) FROM hfchain_chunks")).scalar() or 0
        if total < DF_FROM:
            return words
        counts = {w: conn.execute(COUNT_SQL, {"match": _quoted(w)}).scalar() for w in words}
        found = sorted((w for w in words if counts[w]), key=counts.get)
        return [w for w in found if counts[w] <= MAX_DF * total] or found[:2]

    def _allowed(self, collection_id: int, where: dict) -> set[int] | None:
        """The collection's chunk ids that pass the filter (None: no filter)."""
        if not where:
            return None
        loaded = self._vectors(collection_id)
        return {
            int(i) for i, (d, m) in zip(loaded.ids, loaded.documents, strict=True) if matches(m, d, where)
        }

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
            self._cache.pop(collection_id, None)
            if loaded.size() <= VECTOR_CACHE_BYTES:  # a larger one is searched, not kept
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
