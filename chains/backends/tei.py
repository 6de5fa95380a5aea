"""An encoder served elsewhere: a Text Embeddings Inference server (or anything speaking its POST /embed,
another hfchain included) in place of the packaged sentence encoder."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import numpy as np

from chains.errors import EndpointError, EndpointUnavailable
from chains.tokens import EstimatedTokens, Tokens

BATCH = 32  # TEI's default max_client_batch_size
DEFAULT_MAX_TOKENS = 512


class RemoteEncoder:
    """The Encoder interface over TEI's protocol: POST {url}/embed {"inputs", "truncate"}; GET {url}/info
    (when it is TEI's) names the model and its input limit. Vectors are normalised here."""

    def __init__(self, url: str, tokenizer: str | None = None, token: str | None = None, timeout: float = 60):
        self.url = url.rstrip("/").removesuffix("/embed")
        self.tokenizer_source, self.timeout = tokenizer, timeout
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._info: dict[str, Any] | None = None
        self._tokens: Tokens | EstimatedTokens | None = None
        self._dimensions: int | None = None
        self._lock = threading.Lock()

    @property
    def info(self) -> dict[str, Any]:
        """TEI's /info when the server gives it (an embedding model's), else {}."""
        with self._lock:
            if self._info is None:
                try:
                    found = httpx.get(f"{self.url}/info", headers=self.headers, timeout=self.timeout).json()
                except (httpx.HTTPError, ValueError):
                    found = {}
                kind = found.get("model_type") if isinstance(found, dict) else None
                self._info = found if isinstance(kind, dict) and "embedding" in kind else {}
            return self._info

    @property
    def name(self) -> str:
        return str(self.info.get("model_id") or self.url)

    @property
    def max_tokens(self) -> int:
        return int(self.info.get("max_input_length") or DEFAULT_MAX_TOKENS)

    @property
    def tokens(self) -> Tokens | EstimatedTokens:
        """The model's tokenizer (HFCHAIN_EMBEDDING_TOKENIZER) for exact counts, else a safe estimate."""
        with self._lock:
            if self._tokens is None:
                if self.tokenizer_source:
                    from transformers import AutoTokenizer

                    tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_source)
                    tokenizer.model_max_length = 10**9
                    self._tokens = Tokens(tokenizer)
                else:
                    self._tokens = EstimatedTokens()
            return self._tokens

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = int(self.embed(["dimensions"]).shape[1])
        return self._dimensions

    def embed(self, texts: list[str]) -> np.ndarray:
        """A (len(texts), dim) array of unit vectors, in calls of at most BATCH texts."""
        parts = [self._post(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
        vectors = np.asarray([v for part in parts for v in part], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)

    def _post(self, texts: list[str]) -> list[list[float]]:
        try:
            reply = httpx.post(
                f"{self.url}/embed",
                json={"inputs": texts, "truncate": True},
                headers=self.headers,
                timeout=self.timeout,
            )
        except httpx.HTTPError as error:
            raise EndpointUnavailable(
                f"the embedding server {self.url} cannot be reached ({error.__class__.__name__}): "
                "check HFCHAIN_EMBEDDING_URL",
                retry_after=2,
            ) from error
        if reply.status_code != 200:
            raise EndpointError(
                f"the embedding server {self.url} answered {reply.status_code}: {reply.text[:300]}"
            )
        return reply.json()
