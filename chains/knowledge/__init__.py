"""Documents and retrieval: embeddings (the served encoder, batched over concurrent requests), collections
of parsed and chunked documents in a vector store with full text, hybrid search, cited answers."""

from __future__ import annotations

from chains.knowledge.collections import Knowledge, Limits
from chains.knowledge.embeddings import Embedded, EmbeddingService

__all__ = ["Embedded", "EmbeddingService", "Knowledge", "Limits", "build_knowledge"]


def build_knowledge(settings, embeddings: EmbeddingService) -> Knowledge:
    """The collections of `settings`' document store (opened on first use) over `embeddings`."""
    from chains.database import Database
    from chains.knowledge.store import open_store

    def opened():
        database = Database(
            settings.documents_database, settings.sessions_pool_size, settings.sessions_connect_timeout
        )
        return open_store(database, embeddings.model, embeddings.dimensions)

    limits = Limits(settings.chunk_tokens, settings.chunk_overlap, settings.ingest_max_chars)
    return Knowledge(opened, embeddings, limits)
