"""Documents and retrieval: embeddings first (the served encoder, batched over concurrent requests)."""

from chains.knowledge.embeddings import Embedded, EmbeddingService

__all__ = ["Embedded", "EmbeddingService"]
