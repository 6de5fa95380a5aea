"""A fake sentence encoder for the document tests: hashed bags of words, so texts sharing words are close."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from chains.database import Database
from chains.knowledge.collections import Knowledge, Limits
from chains.knowledge.embeddings import EmbeddingService
from chains.knowledge.store import open_store
from chains.tokens import EstimatedTokens

DIMENSIONS = 64


class WordsEncoder:
    """Unit vectors of hashed lower-case words; a text containing `fail_on` makes the batch fail."""

    name, max_tokens = "words", 64

    def __init__(self, fail_on: str | None = None) -> None:
        self.tokens, self.fail_on, self.calls = EstimatedTokens(), fail_on, 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.fail_on and any(self.fail_on in text for text in texts):
            raise RuntimeError(f"encoder failed on {self.fail_on!r}")
        vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                vectors[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


def knowledge_over(url: str, encoder: WordsEncoder | None = None, chunk_tokens: int = 40) -> Knowledge:
    """Collections in the database at `url` over the fake encoder (small chunks: many per document)."""
    service = EmbeddingService(encoder or WordsEncoder())
    store = open_store(Database(url), WordsEncoder.name, DIMENSIONS)
    return Knowledge(store, service, Limits(chunk_tokens=chunk_tokens, chunk_overlap=4, max_chars=100_000))
