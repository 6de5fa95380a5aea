"""Collections of the caller's documents: parse, chunk, embed and store them, then search by vectors, by
full text, or both fused by reciprocal rank. Every call names the tenant that owns the collection."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from chains.errors import InvalidInput
from chains.knowledge.chunking import Prepared, prepare
from chains.knowledge.embeddings import EmbeddingService
from chains.knowledge.parsing import parse_file, parse_text
from chains.knowledge.store import DocumentStore
from chains.tenants.caller import check_name

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "vector", "text"]
MODES = ("hybrid", "vector", "text")
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.): 1 / (60 + rank)
MAX_K = 100
EMBED_GROUP = 256  # chunks embedded per call while ingesting (progress moves between calls)
FILTER_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks in all)
_SEARCHES = ThreadPoolExecutor(4, thread_name_prefix="hfchain-text-search")  # the full-text half of searches


@dataclass(frozen=True)
class Limits:
    """How documents are cut and bounded."""

    chunk_tokens: int = 128
    chunk_overlap: int = 16
    max_chars: int = 5_000_000


def check_document_id(document_id: object) -> str:
    """A document id: 1-256 printable characters (422 otherwise)."""
    if not isinstance(document_id, str) or not 0 < len(document_id) <= 256 or not document_id.isprintable():
        raise InvalidInput(f"document id {document_id!r}: 1-256 printable characters (a file name will do)")
    if document_id.strip() != document_id:
        raise InvalidInput(f"document id {document_id!r}: no spaces at its start or end")
    return document_id


def check_filter(where: object) -> dict[str, Any]:
    """A metadata filter: {key: value} or {key: [value, ...]} (any of); `document_id` is the document's id."""
    if where is None:
        return {}
    if not isinstance(where, dict):
        raise InvalidInput('filter must be an object such as {"author": "Ann", "year": [2023, 2024]}')
    for key, value in where.items():
        if not FILTER_KEY.match(key):
            raise InvalidInput(f"filter key {key!r}: 1-64 letters, digits and _ . : -")
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > 100 or not all(_scalar(v) for v in values):
            raise InvalidInput(
                f"filter[{key!r}]: a string, number or boolean, or a list of 1-100 of them (any may match)"
            )
    return where


def text_id(text: str) -> str:
    """A document's id when it is sent without one: a hash of its text (sending it again changes nothing)."""
    return "sha256-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and not (isinstance(value, float) and value != value)


class Knowledge:
    """The document collections of every tenant over one store and one encoder."""

    def __init__(
        self,
        store: DocumentStore | Callable[[], DocumentStore],
        embeddings: EmbeddingService,
        limits: Limits | None = None,
    ) -> None:
        """`store`: the store, or a function that opens it on first use (it needs the encoder loaded)."""
        self.embeddings, self.limits = embeddings, limits or Limits()
        self._store = store if isinstance(store, DocumentStore) else None
        self._open = None if isinstance(store, DocumentStore) else store
        self._lock = threading.Lock()

    @property
    def store(self) -> DocumentStore:
        """The document store, opened (and the encoder checked) on first use."""
        with self._lock:
            if self._store is None:
                chunk_limit = self.embeddings.encoder.max_tokens
                if self.limits.chunk_tokens > chunk_limit:
                    raise InvalidInput(
                        f"HFCHAIN_CHUNK_TOKENS={self.limits.chunk_tokens} is over what the encoder reads "
                        f"({chunk_limit} tokens): set it to {chunk_limit} or less"
                    )
                self._store = self._open()
            return self._store

    @property
    def recipe(self) -> str:
        """What decides a document's chunks and vectors, hashed with its text."""
        return f"{self.embeddings.model}:{self.limits.chunk_tokens}:{self.limits.chunk_overlap}"

    # collections
    def create(self, tenant: str, name: str, description: str = "") -> dict[str, Any]:
        """A new empty collection (409 when the name is taken in the tenant)."""
        return self.store.create_collection(tenant, check_name(name, "collection name"), description)

    def names(self, tenant: str) -> list[str]:
        """The tenant's collections."""
        return self.store.names(tenant)

    def describe(self, tenant: str, name: str) -> dict[str, Any]:
        """Counts, encoder and the last ingestion job of one collection."""
        return self.store.describe(tenant, check_name(name, "collection name"))

    def delete(self, tenant: str, name: str) -> dict[str, Any]:
        """Remove a collection and everything in it."""
        return self.store.delete_collection(tenant, check_name(name, "collection name"))

    def documents(self, tenant: str, name: str) -> list[dict[str, Any]]:
        """The collection's documents."""
        return self.store.documents(tenant, check_name(name, "collection name"))

    def delete_document(self, tenant: str, name: str, document_id: str) -> dict[str, Any]:
        """Remove a document (gone from search at once)."""
        return self.store.delete_document(tenant, check_name(name, "collection name"), document_id)

    # ingestion
    def prepare_file(self, filename: str, data: bytes, document_id: str | None = None,
                     metadata: dict[str, Any] | None = None) -> Prepared:  # fmt: skip
        """A file parsed and chunked (415 / 422 / 413 naming the file when it cannot be)."""
        parsed = parse_file(filename, data, self.limits.max_chars)
        document_id = check_document_id(document_id or filename.replace("\\", "/").rsplit("/", 1)[-1])
        return self._prepare(document_id, parsed, metadata, filename)

    def prepare_text(self, document_id: str, text: str, metadata: dict[str, Any] | None = None) -> Prepared:
        """A JSON document's text chunked."""
        parsed = parse_text(text, self.limits.max_chars)
        return self._prepare(check_document_id(document_id), parsed, metadata, None)

    def _prepare(self, document_id: str, parsed: Any, metadata: Any, source: str | None) -> Prepared:
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInput(f"metadata of document {document_id!r} must be an object")
        tokens = self.embeddings.encoder.tokens
        size, overlap = self.limits.chunk_tokens, self.limits.chunk_overlap
        return prepare(document_id, parsed, tokens, self.recipe, size, overlap, metadata, source)

    def ingest(
        self, tenant: str, name: str, documents: list[Prepared], progress: Progress | None = None
    ) -> dict[str, Any]:
        """Embed and store `documents`, each replacing its id atomically; unchanged ones are skipped.
        Chunks are embedded in groups of EMBED_GROUP across documents (many small files embed as fast as
        one large one); a document is stored as soon as its vectors are all there."""
        row = self.store.usable(tenant, check_name(name, "collection name"))
        todo = [d for d in documents if self.store.content_hash(row.id, d.document_id) != d.content_hash]
        status = {d.document_id: "unchanged" for d in documents}
        total, done, vectors = sum(len(d.chunks) for d in todo), 0, {}
        if progress:
            progress(0, total)
        for group in _groups(todo, EMBED_GROUP):
            embedded = self.embeddings.embed([todo[i].chunks[j].text for i, j in group]).vectors
            for (i, j), vector in zip(group, embedded, strict=True):
                vectors.setdefault(i, {})[j] = vector
            done += len(group)
            if progress:
                progress(done, total)
            for i in sorted({i for i, _ in group}):
                document = todo[i]
                if len(vectors.get(i, {})) == len(document.chunks):  # every parsed document has chunks
                    by_chunk = vectors.pop(i)
                    ordered = [by_chunk[j] for j in range(len(document.chunks))]
                    status[document.document_id] = self.store.put_document(
                        row.id, document.row(), document.chunks, ordered
                    )
        self.store.after_ingest(total)
        counts = {s: list(status.values()).count(s) for s in ("added", "replaced", "unchanged")}
        log.info("collection %s/%s: %s (%d chunks embedded)", tenant, name, counts, total)
        listed = [
            {"id": d.document_id, "status": status[d.document_id], "chunks": len(d.chunks)} for d in documents
        ]
        tokens = sum(chunk.tokens for document in todo for chunk in document.chunks)
        return {"collection": name, **counts, "chunks": total, "tokens": tokens, "documents": listed}

    # search
    def search(
        self,
        tenant: str,
        name: str,
        query: str,
        k: int = 5,
        where: object = None,
        mode: str = "hybrid",
    ) -> list[dict[str, Any]]:
        """The `k` best chunks for `query`: by vectors, by full text, or both fused by reciprocal rank."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("query is empty: send the text to search for")
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be a whole number from 1 to {MAX_K}")
        if mode not in MODES:
            raise InvalidInput(f"mode {mode!r}: one of {', '.join(MODES)}")
        where = check_filter(where)
        row = self.store.usable(tenant, check_name(name, "collection name"))
        depth = max(4 * k, 40)  # candidates from each side before fusion
        by_vector, by_text = [], []
        texts = (
            _SEARCHES.submit(self.store.text_search, row.id, query, depth, where)
            if mode != "vector"
            else None
        )
        if mode != "text":  # while the full-text half runs on another thread
            vector = self.embeddings.embed([query], truncate=True).vectors[0]
            by_vector = self.store.vector_search(row.id, vector, depth, where)
        if texts is not None:
            by_text = texts.result()
        return self._results(fuse(by_vector, by_text, k), dict(by_vector), dict(by_text))

    def _results(self, ranked: list[tuple[int, float]], cosine: dict, text: dict) -> list[dict[str, Any]]:
        hits = self.store.hits([chunk_id for chunk_id, _ in ranked])
        results = []
        for chunk_id, score in ranked:
            if (hit := hits.get(chunk_id)) is None:  # deleted between the search and this read
                continue
            results.append(
                {
                    "text": hit.text,
                    "score": round(score, 6),
                    "document_id": hit.document_id,
                    "metadata": hit.metadata,
                    "chunk": hit.position,
                    "start": hit.start,
                    "end": hit.end,
                    "page": hit.page,
                    "source": hit.source,
                    "vector_score": None if chunk_id not in cosine else round(cosine[chunk_id], 6),
                    "text_score": None if chunk_id not in text else round(text[chunk_id], 6),
                }
            )
        return results


def _groups(documents: list[Prepared], size: int) -> Iterator[list[tuple[int, int]]]:
    """(document index, chunk index) pairs in order, `size` at a time."""
    pairs = [(i, j) for i, document in enumerate(documents) for j in range(len(document.chunks))]
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def fuse(
    by_vector: list[tuple[int, float]], by_text: list[tuple[int, float]], k: int
) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of two ranked lists (one list alone keeps its own scores and order)."""
    if not by_text:
        return by_vector[:k]
    if not by_vector:
        return by_text[:k]
    scores: dict[int, float] = {}
    for ranked in (by_vector, by_text):
        for rank, (chunk_id, _) in enumerate(ranked, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
