"""Service settings: one validated object, read from HFCHAIN_* variables and an optional .env file."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, ByteSize, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "HFCHAIN_"


def default_cache_dir() -> Path:
    """The user's cache folder for hfchain (XDG_CACHE_HOME aware)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hfchain"


def default_data_dir() -> Path:
    """The user's data folder for hfchain (XDG_DATA_HOME aware)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "hfchain"


class Settings(BaseSettings):
    """Everything the service can be told, each field an HFCHAIN_<NAME> variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    backend: Literal["local", "endpoint"] = Field(
        "local", description="local: run the model in-process; endpoint: call a remote server"
    )
    model: str | None = Field(
        None, description="Hub id or local folder (local backend); empty = embedded SmolLM2-135M"
    )
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Where the local model runs")
    dtype: Literal["float32", "float16", "bfloat16", "auto"] = Field(
        "float32", description="Compute dtype of the local model"
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for the local model (default: all cores)"
    )
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="Local backend: auto (ONNX Runtime in fp32 on CPU, the same greedy tokens as torch and "
        "about 3x faster, where its exporter supports the model; torch otherwise), torch (transformers), or "
        "onnx (ONNX Runtime in HFCHAIN_ONNX_PRECISION, exported once to the cache)",
    )
    onnx_precision: Literal["int4", "fp32"] = Field(
        "int4", description="ONNX runtime: weights in int4 (fast on CPU) or fp32 (as the torch model)"
    )
    onnx_provider: Literal["cpu", "cuda"] = Field(
        "cpu", description="ONNX runtime: execution provider (cuda needs onnxruntime-gpu)"
    )
    onnx_batch_invariant: bool = Field(
        True,
        description="ONNX int4: replies independent of the other requests in the batch (false: faster "
        "single stream, greedy replies may change with what else is decoded)",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="Where the converted embedded model lives"
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where hfchain keeps its data (sessions, trained classifiers)",
    )
    sessions_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the chat sessions database (default: SQLite in HFCHAIN_DATA_DIR)",
    )
    replica_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=128,
        description="This replica's name in every log line and on /metrics (default: the host name)",
    )
    sessions_pool_size: int = Field(
        5,
        ge=1,
        le=200,
        description="Sessions on a server database: connections kept per replica (as many more at peaks)",
    )
    sessions_connect_timeout: float = Field(
        5.0, gt=0, le=120, description="Seconds to wait for a connection to the sessions database (then 503)"
    )
    sessions_from_user: bool = Field(
        False,
        description="OpenAI route: use the request's `user` field as the session id (x-session-id wins)",
    )
    endpoint_url: str | None = Field(
        None, description="Endpoint backend: URL of a TGI / Inference Endpoint / OpenAI-style server"
    )
    repo_id: str | None = Field(
        None, description="Endpoint backend: hub model id served by Inference Providers"
    )
    endpoint_model: str | None = Field(
        None, description="Endpoint backend: model name the server expects in chat requests"
    )
    hf_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("HFCHAIN_HF_TOKEN", "HF_TOKEN"),
        description="Token for Hugging Face endpoints (HF_TOKEN also works)",
    )
    endpoint_api_key: SecretStr | None = Field(
        None, description="Endpoint backend: key sent as 'Authorization: Bearer' to a non-Hugging Face URL"
    )
    tokenizer: str | None = Field(
        None, description="Endpoint backend: hub id or folder of the served model's tokenizer (exact counts)"
    )
    context_window: int | None = Field(
        None, ge=64, description="Context size in tokens (default: the model's config; endpoint: 4096)"
    )
    budget_margin: int = Field(16, ge=0, description="Tokens kept free in every call's budget")
    endpoint_timeout: float = Field(120.0, gt=0, description="Seconds to wait for an endpoint reply")
    max_new_tokens: int = Field(256, ge=1, description="Default new tokens per reply")
    max_new_tokens_limit: int = Field(2048, ge=1, description="Largest max_new_tokens a request may ask for")
    temperature: float = Field(0.0, ge=0, le=2, description="Default temperature (0 = greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="Default nucleus sampling top_p")
    system_prompt: str | None = Field(
        None, description="Chat system prompt when the client sends none (default: prompts/ file)"
    )
    classifier: str | None = Field(
        None, description="Classifier checkpoints for /classify: 'name=hub-id-or-folder,...'"
    )
    embedding_model: str | None = Field(
        None,
        description="Encoder served by /v1/embeddings, /embed: a sentence-transformers folder or hub id "
        "(default: the packaged all-MiniLM-L6-v2)",
    )
    encoder_runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto",
        description="What runs the in-process encoder: auto = ONNX Runtime float32 (exported once to the "
        "cache; torch's vectors to 1e-6), torch where the encoder cannot be exported; onnx = ONNX float32 or "
        "fail; onnx-int8 = int8 weights (vectors differ slightly: benchmarks/RESULTS.md); torch",
    )
    documents_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the document store: postgresql+psycopg://... (pgvector, shared by "
        "replicas) or sqlite:///...; default: the sessions database when it is PostgreSQL, else "
        "HFCHAIN_DATA_DIR/documents.db",
    )
    chunk_tokens: int = Field(
        128, ge=16, le=512, description="Encoder tokens per document chunk (at most what the encoder reads)"
    )
    chunk_overlap: int = Field(16, ge=0, le=256, description="Encoder tokens repeated between chunks")
    ingest_max_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest document upload (POST /collections/{name}/documents)"
    )
    ingest_max_chars: int = Field(
        5_000_000, ge=1000, description="Most characters of text one document may hold after parsing"
    )
    ingest_job_bytes: int = Field(
        256 * 1024,
        ge=0,
        description="Uploads at least this large are ingested as a job (202, progress in GET /collections/"
        "{name}); smaller ones are answered when stored",
    )
    ask_style: Literal["auto", "quote", "free"] = Field(
        "auto",
        description="/ask: quote = the answer is a sentence of a source, picked by the model among the "
        "closest to the question (grounded even on a small model); free = the model's own words with [n] "
        "citations; auto = quote for the embedded model, free for a model you name",
    )
    ask_min_score: float = Field(
        0.3,
        ge=-1,
        le=1,
        description="/ask: the best chunk's cosine similarity must reach this, else the answer is that the "
        "documents do not say",
    )
    embedding_url: str | None = Field(
        None,
        description="A Text Embeddings Inference server (POST /embed) to take embeddings from instead of the "
        "in-process encoder, e.g. http://127.0.0.1:8080",
    )
    embedding_tokenizer: str | None = Field(
        None,
        description="With HFCHAIN_EMBEDDING_URL: hub id or folder of that model's tokenizer for exact counts "
        "and chunking (default: a conservative estimate)",
    )
    classify_method: Literal["embedding", "llm", "checkpoint"] = Field(
        "embedding", description="Default /classify method"
    )
    agent_tools: str = Field(
        "calculator,current_time,count_tokens,summarize,classify,search_documents",
        description="/agent tools, comma-separated: built-in names and Python module:attribute entries",
    )
    agent_mcp_servers: str | None = Field(
        None,
        description='/agent MCP servers, JSON: {"name": {"transport": "stdio", "command": ..., "args": '
        '[...]} or {"transport": "streamable_http", "url": ...}}',
    )
    agent_max_steps: int = Field(6, ge=1, le=50, description="Most model calls per /agent request")
    agent_tool_choice: Literal["auto", "required"] = Field(
        "auto", description="/agent: required = the first step of each turn must call a tool"
    )
    agent_tool_timeout: float = Field(30.0, gt=0, description="Seconds one /agent tool call may take")
    agent_require_approval: str = Field(
        "",
        description="Agent tools that wait for a person's approval before they run, comma-separated (on "
        "threads; /agent refuses them); a run adds its own with config.configurable.require_approval",
    )
    repetition_guard: bool = Field(
        True,
        description="Constrained replies: the same few tokens again and again inside a JSON string or "
        "container end it (free text is never touched)",
    )
    tool_router: Literal["auto", "on", "off"] = Field(
        "auto",
        description='tool_choice "auto" decided by the encoder router (the closest tool by description, '
        "or a text reply): auto = on for the embedded model, off for a model you name",
    )
    tool_router_threshold: float = Field(
        0.255, ge=-1, le=1, description="Cosine above which the router calls the closest tool"
    )
    agent_tool_result_chars: int = Field(
        4000, ge=100, description="Longest tool result the /agent model reads; longer ones are cut"
    )
    train_max_rows: int = Field(
        100_000, ge=10, description="Most rows a training file may have (POST /classifiers)"
    )
    train_max_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest training upload accepted by POST /classifiers"
    )
    max_batch_size: int = Field(16, ge=1, description="Most requests the local model generates for at once")
    max_prefill_tokens: int = Field(
        8192, ge=64, description="Padded prompt tokens prefilled at once when requests join the batch"
    )
    kv_cache_bytes: ByteSize | None = Field(
        None,
        description="Memory for cached keys and values (the prefix cache, reused by prompts that start the "
        "same way: sessions, agents, shared system prompts), e.g. 512MiB or 2GB; reserved once at start "
        "in blocks of 16 tokens; 0 turns the cache off; unset: 5% of memory, at most 1 GiB",
    )
    speculation: bool = Field(
        True,
        description="Speculative decoding: replies that copy from their prompt (summaries, cited answers, "
        "edits) check drafts looked up in the prompt in one pass per step, with the same greedy tokens; a "
        "row whose drafts keep failing stops drafting. off: never (per request: the speculation knob)",
    )
    speculation_max_batch: int = Field(
        1,
        ge=1,
        description="Speculative decoding runs while at most this many rows are generating (torch; ONNX: 1). "
        "Batches are compute-bound on CPU: checking drafts there costs more than it saves",
    )
    prefix_cache_tokens: int | None = Field(
        None,
        ge=0,
        description="Retired: use HFCHAIN_KV_CACHE_BYTES. Still read when that is unset (tokens times the "
        "model's bytes per token), with a warning",
    )
    max_concurrent_requests: int = Field(
        128, ge=1, description="Requests admitted at once (running plus waiting); more get 429"
    )
    max_tokens_in_flight: int = Field(
        131072, ge=1, description="Prompt plus max_new_tokens of all admitted generations; more get 429"
    )
    queue_timeout: float = Field(
        120.0, gt=0, description="Seconds a request may wait for the model; then 503"
    )
    max_input_tokens: int | None = Field(
        None, ge=1, description="Most prompt tokens a request may send (default: what fits the context)"
    )
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="Largest request body accepted")
    api_keys: SecretStr | None = Field(
        None,
        description="Comma-separated admin API keys; with these or keys made by `hfchain keys create`, every "
        "route but /health and /ready needs one",
    )
    api_keys_file: Path | None = Field(None, description="File with one admin API key per line (# comments)")
    keys_cache_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="Seconds a key lookup is reused: a key revoked on another replica is refused within it",
    )
    playground: bool = Field(True, description="Serve the LangServe playgrounds")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS (* for any)")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text or one JSON object each"
    )
    host: str = Field("127.0.0.1", description="Address the server binds to")
    port: int = Field(8000, ge=1, le=65535, description="Port the server binds to")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level")

    @model_validator(mode="after")
    def _check_endpoint(self) -> Settings:
        if self.backend == "endpoint" and not (self.endpoint_url or self.repo_id):
            raise ValueError(
                "the endpoint backend needs a server: set HFCHAIN_ENDPOINT_URL "
                "(e.g. http://127.0.0.1:8080) or HFCHAIN_REPO_ID (a hub model id)"
            )
        if self.endpoint_url and self.repo_id:
            raise ValueError("set only one of HFCHAIN_ENDPOINT_URL and HFCHAIN_REPO_ID")
        if self.api_keys_file and not self.api_keys_file.is_file():
            raise ValueError(f"HFCHAIN_API_KEYS_FILE={self.api_keys_file} is not a readable file")
        if self.runtime == "onnx" and self.dtype != "float32":
            raise ValueError(
                "HFCHAIN_DTYPE applies to the torch runtime; with HFCHAIN_RUNTIME=onnx choose the weights "
                "with HFCHAIN_ONNX_PRECISION=int4|fp32"
            )
        if self.runtime == "onnx" and self.device != "cpu":
            raise ValueError(
                f"HFCHAIN_DEVICE={self.device} applies to the torch runtime; with HFCHAIN_RUNTIME=onnx set "
                "HFCHAIN_ONNX_PROVIDER=cuda (needs onnxruntime-gpu) and leave HFCHAIN_DEVICE=cpu"
            )
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("HFCHAIN_CHUNK_OVERLAP must be smaller than HFCHAIN_CHUNK_TOKENS")
        if self.max_new_tokens > self.max_new_tokens_limit:
            raise ValueError("HFCHAIN_MAX_NEW_TOKENS must not exceed HFCHAIN_MAX_NEW_TOKENS_LIMIT")
        return self

    def keys(self) -> list[str]:
        """The API keys from HFCHAIN_API_KEYS and HFCHAIN_API_KEYS_FILE (empty: no auth)."""
        keys = (self.api_keys.get_secret_value() if self.api_keys else "").split(",")
        if self.api_keys_file:
            lines = self.api_keys_file.read_text().splitlines()
            keys += [line for line in lines if not line.lstrip().startswith("#")]
        return [k.strip() for k in keys if k.strip()]

    @property
    def origins(self) -> list[str]:
        """CORS origins from HFCHAIN_CORS_ORIGINS."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def classifiers_dir(self) -> Path:
        """Where trained classifiers are kept: HFCHAIN_DATA_DIR/classifiers."""
        return self.data_dir / "classifiers"

    @property
    def documents_database(self) -> str:
        """The document store's URL: HFCHAIN_DOCUMENTS_URL, the sessions' PostgreSQL, or a SQLite file."""
        if self.documents_url:
            return self.documents_url
        if self.sessions_url and self.sessions_url.startswith("postgresql"):
            return self.sessions_url
        return f"sqlite:///{self.data_dir / 'documents.db'}"

    @property
    def sessions_database(self) -> str:
        """The sessions database URL: HFCHAIN_SESSIONS_URL, else a SQLite file in the data folder."""
        return self.sessions_url or f"sqlite:///{self.data_dir / 'sessions.db'}"


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each variable and the fix."""


def describe_errors(error: ValidationError) -> str:
    """Turn a pydantic error into lines naming the HFCHAIN_ variable and what is wrong."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        given = f" (got {item['input']!r})" if field and "input" in item else ""
        lines.append(f"{name}: {item['msg']}{given}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus overrides; raise SettingsError naming the fix."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        raise SettingsError(describe_errors(error)) from None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, loaded once (tests call get_settings.cache_clear())."""
    return load_settings()
