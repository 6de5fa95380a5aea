"""LocalModel: loads a transformers model and owns it; every generation runs on its one model thread."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any

from chains.backends.engine import BatchEngine, Completion, GenerationParams, Job
from chains.backends.logprobs import entry, prompt_scored
from chains.budget import Budget
from chains.errors import ModelNotReady
from chains.tokens import Tokens

log = logging.getLogger(__name__)


class LocalModel:
    """A causal LM and its tokenizer, loaded once and driven from a single thread."""

    def __init__(
        self,
        source: str | Callable[[], str],
        *,
        name: str,
        device: str = "cpu",
        dtype: str = "float32",
        threads: int | None = None,
        context_window: int | None = None,
        margin: int = 16,
        max_batch: int = 16,
        max_tokens_in_flight: int | None = None,
        queue_timeout: float | None = None,
        max_input_tokens: int | None = None,
        max_prefill_tokens: int = 8192,
        kv_cache_bytes: int | None = None,
        prefix_cache_tokens: int | None = None,
        repetition_guard: bool = True,
        speculation: bool = True,
        speculation_max_batch: int = 1,
        runtime: str = "torch",
        onnx: dict[str, Any] | None = None,
    ) -> None:
        self.source, self.name, self.device, self.dtype, self.threads = source, name, device, dtype, threads
        self.runtime = runtime  # auto, torch or onnx
        self.runtime_name: str | None = None  # what runs the model once loaded: torch, onnx-fp32, ...
        self.onnx = onnx or {}  # ONNX runtime options: precision, provider, batch_invariant, cache_dir
        self.tokenizer: Any = None
        self._tokens: Tokens | None = None
        self.model: Any = None
        self.context_window = context_window  # None: read from the model's config when it loads
        self.margin, self.max_input_tokens = margin, max_input_tokens
        self.load_error: BaseException | None = None
        self._loaded = threading.Event()
        self._start_lock = threading.Lock()
        self._loading: Future | None = None
        self.engine = BatchEngine(
            max_batch,
            max_tokens_in_flight,
            queue_timeout,
            max_prefill_tokens=max_prefill_tokens,
            kv_cache_bytes=kv_cache_bytes,
            prefix_cache_tokens=prefix_cache_tokens,
            repetition_guard=repetition_guard,
            speculation=speculation,
            speculation_max_batch=speculation_max_batch,
        )

    @property
    def ready(self) -> bool:
        """True once the model can generate."""
        return self._loaded.is_set() and self.load_error is None

    def load(self) -> None:
        """Load tokenizer and model (blocking); remembers a failure for /ready to report."""
        try:
            self.engine.start(self._init_thread)
            self.engine.call(self._load).result()
        except BaseException as error:
            self.load_error = error
            raise
        finally:
            self._loaded.set()

    def load_in_background(self) -> Future:
        """Start loading on the model thread (once) and return at once."""
        with self._start_lock:
            if self._loading is None:
                self.engine.start(self._init_thread)
                self._loading = self.engine.call(self._load)
                self._loading.add_done_callback(self._on_loaded)
            return self._loading

    def close(self) -> None:
        """Stop the model thread: queued and running generations fail with 503."""
        self.engine.stop()

    def _on_loaded(self, future: Future) -> None:
        self.load_error = future.exception()
        if self.load_error:
            log.error("model %s failed to load: %s", self.name, self.load_error)
        self._loaded.set()

    def _init_thread(self) -> None:
        import torch

        # OpenMP's thread count is per thread: set it explicitly on the one thread that runs the model
        torch.set_num_threads(self.threads or os.cpu_count() or 1)

    def _load(self) -> None:
        started = time.perf_counter()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a tqdm bar per load is noise in server logs
        source = self.source() if callable(self.source) else self.source
        tokenizer = AutoTokenizer.from_pretrained(source)
        tokenizer.padding_side = "left"  # batched generation needs left padding
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = self._load_onnx(source) if self.runtime in ("onnx", "auto") else None
        if model is None:
            log.info("loading model %s (device=%s, dtype=%s)", source, self.device, self.dtype)
            dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
            device_map = None if self.device == "cpu" else self.device
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device_map)
            model.eval()
            self.runtime_name = "torch"
        else:
            self.runtime_name = f"onnx-{model.precision}"
        self.context_window = self.context_window or _context_window(model.config, tokenizer) or 2048
        self.model, self.tokenizer, self._tokens = model, tokenizer, Tokens(tokenizer)
        self.engine.model, self.engine.tokenizer = model, tokenizer
        self.engine.make_pool()
        log.info(
            "model %s ready in %.1f s, imports included (context %s tokens)",
            self.name,
            time.perf_counter() - started,
            self.context_window,
        )

    def _load_onnx(self, source: str) -> Any:
        """The ONNX graph of `source` (exported into the cache at the first start) in a session; for
        HFCHAIN_RUNTIME=auto, fp32 on CPU, or None (torch) when that cannot be had, logged with why."""
        if self.runtime == "auto":
            reason = self._torch_because()
            if reason is None:
                try:
                    return self._onnx_session(source, "fp32", "cpu")
                except Exception as error:  # the exporter does not support this architecture, ...
                    reason = f"its ONNX export failed ({str(error).splitlines()[0]})"
            log.info("HFCHAIN_RUNTIME=auto: torch, because %s", reason)
            return None
        return self._onnx_session(
            source, self.onnx.get("precision", "int4"), self.onnx.get("provider", "cpu")
        )

    def _torch_because(self) -> str | None:
        """Why HFCHAIN_RUNTIME=auto keeps torch for these settings (None: ONNX fp32 on CPU applies)."""
        if self.device != "cpu":
            return (
                f"HFCHAIN_DEVICE={self.device} (ONNX is chosen on CPU; HFCHAIN_RUNTIME=onnx to try it there)"
            )
        if self.dtype != "float32":
            return f"HFCHAIN_DTYPE={self.dtype} (the ONNX runtime's exact mode is float32)"
        return None

    def _onnx_session(self, source: str, precision: str, provider: str) -> Any:
        from chains.backends.onnx.export import ensure_exported
        from chains.backends.onnx.runtime import OnnxCausalLM, check_provider

        check_provider(provider)  # before a long export
        folder = ensure_exported(self.onnx["cache_dir"], source, precision, provider)
        log.info("loading ONNX model %s (%s, %s)", folder, precision, provider)
        return OnnxCausalLM(
            folder,
            source,
            precision=precision,
            provider=provider,
            threads=self.threads,
            batch_invariant=self.onnx.get("batch_invariant", True),
        )

    def _require_ready(self) -> None:
        if not self.ready:
            reason = f"failed to load: {self.load_error}" if self.load_error else "still loading"
            raise ModelNotReady(f"model {self.name} is {reason}; retry shortly", retry_after=2)

    @property
    def tokens(self) -> Tokens:
        """Prompt encoding with this model's tokenizer (the same ids that are generated from)."""
        self._require_ready()
        return self._tokens

    @property
    def budget(self) -> Budget:
        """The context budget, counted with this model's tokenizer."""
        self._require_ready()
        return Budget(self._tokens, self.context_window, self.margin, self.max_input_tokens)

    def run(self, work: Callable[..., Any], *args: Any) -> Any:
        """work(model, *args) on the model thread (between batches), returning its result."""
        self._require_ready()
        return self.engine.call(work, self.model, *args).result()

    async def aprompt_logprobs(self, ids: list[int], top: int) -> list[dict]:
        """Each prompt token's entry (logprobs.py) given the tokens before it, with `top` alternatives; the
        first token has none (logprob and top_logprobs null). Runs between the engine's steps."""
        self._require_ready()
        raw = await asyncio.wrap_future(self.engine.call(prompt_scored, self.model, ids, top))
        tokenizer = self.engine.tokenizer
        first = {**entry(tokenizer, (ids[0], 0.0, [])), "logprob": None, "top_logprobs": None}
        return [first, *(entry(tokenizer, r) for r in raw)]

    def generate(self, prompts: list[list[int]], params: GenerationParams) -> list[Completion]:
        """Completions for prompts given as token ids (batched with whatever else is waiting)."""
        self._require_ready()
        jobs: list[Job] = []
        try:
            jobs.extend(self.engine.submit(prompt, params) for prompt in prompts)
            return [_last(job.events()) for job in jobs]
        finally:
            for job in jobs:
                job.cancel()  # no-op for finished jobs; stops the others if this thread is interrupted

    async def agenerate(self, prompts: list[list[int]], params: GenerationParams) -> list[Completion]:
        """As generate(), awaited; a cancelled caller (a client that left) cancels its jobs."""
        self._require_ready()
        loop = asyncio.get_running_loop()
        jobs: list[Job] = []
        try:
            jobs.extend(self.engine.submit(prompt, params, loop) for prompt in prompts)  # 429 cancels earlier
            return [await _alast(job.aevents()) for job in jobs]
        finally:
            for job in jobs:
                job.cancel()

    def stream(self, prompt: list[int], params: GenerationParams) -> TokenStream:
        """Text pieces as tokens are decoded; close() (from any thread) stops the generation."""
        self._require_ready()
        return TokenStream(self.engine.submit(prompt, params))

    async def astream(self, prompt: list[int], params: GenerationParams) -> AsyncIterator[str | Completion]:
        """Async stream of text pieces, then the Completion (the whole text, counts and finish reason).

        A cancelled consumer (a client that left) stops the generation at the next token.
        """
        self._require_ready()
        job = self.engine.submit(prompt, params, asyncio.get_running_loop())
        async for item in job.aevents():
            yield item


class TokenStream:
    """The text of one streamed generation; close() stops it at the next token.

    Once iterated to the end, `completion` holds the whole text, the token counts and the finish reason.
    """

    def __init__(self, job: Job) -> None:
        self._job, self._events = job, job.events()
        self.completion: Completion | None = None

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> str:
        item = next(self._events)
        if isinstance(item, Completion):
            self.completion = item
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop generating (thread-safe; a no-op once finished)."""
        self._job.cancel()

    def __del__(self) -> None:
        self.close()


def _last(events: Iterator[Any]) -> Completion:
    *_, completion = events
    return completion


async def _alast(events: AsyncIterator[Any]) -> Completion:
    completion = None
    async for completion in events:  # noqa: B007 - the last item is the Completion
        pass
    return completion


def _context_window(config: Any, tokenizer: Any) -> int | None:
    """The model's context size from its config, else from the tokenizer when plausible."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 10**7 else None
