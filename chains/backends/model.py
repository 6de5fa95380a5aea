"""LocalModel: loads a transformers model and owns it; every generation runs on its one model thread."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from chains.budget import Budget
from chains.errors import ModelNotReady
from chains.stops import StopFilter, filter_stream, truncate_at_stop
from chains.tokens import Tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    """One generated reply with its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop sequence) or "length" (max_new_tokens reached)


@dataclass(frozen=True)
class GenerationParams:
    """Resolved knob values for one generation."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for generate(); temperature 0 means greedy."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop:
            kwargs["stop_strings"] = list(self.stop)  # ends generation early; text is cut below
        return kwargs


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
    ) -> None:
        self.source, self.name, self.device, self.dtype, self.threads = source, name, device, dtype, threads
        self.tokenizer: Any = None
        self._tokens: Tokens | None = None
        self.model: Any = None
        self.context_window = context_window  # None: read from the model's config when it loads
        self.margin = margin
        self.load_error: BaseException | None = None
        self._loaded = threading.Event()
        self._start_lock = threading.Lock()
        self._loading: Future | None = None
        self._worker = ThreadPoolExecutor(1, "hfchain-model", initializer=self._init_thread)

    @property
    def ready(self) -> bool:
        """True once the model can generate."""
        return self._loaded.is_set() and self.load_error is None

    def load(self) -> None:
        """Load tokenizer and model (blocking); remembers a failure for /ready to report."""
        try:
            self._worker.submit(self._load).result()
        except BaseException as error:
            self.load_error = error
            raise
        finally:
            self._loaded.set()

    def load_in_background(self) -> Future:
        """Start loading on the model thread (once) and return at once."""
        with self._start_lock:
            if self._loading is None:
                self._loading = self._worker.submit(self._load)
                self._loading.add_done_callback(self._on_loaded)
            return self._loading

    def close(self) -> None:
        """Stop the model thread: queued work is dropped, a running generation ends on its own."""
        self._worker.shutdown(wait=False, cancel_futures=True)

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
        log.info("loading model %s (device=%s, dtype=%s)", source, self.device, self.dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
        tokenizer.padding_side = "left"  # batched generation needs left padding
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
        device_map = None if self.device == "cpu" else self.device
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device_map)
        model.eval()
        self.context_window = self.context_window or _context_window(model.config, tokenizer) or 2048
        self.model, self.tokenizer, self._tokens = model, tokenizer, Tokens(tokenizer)
        log.info(
            "model %s ready in %.1f s, imports included (context %s tokens)",
            self.name,
            time.perf_counter() - started,
            self.context_window,
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
        return Budget(self._tokens, self.context_window, self.margin)

    def run(self, work: Callable[..., Any], *args: Any) -> Any:
        """work(model, *args) on the model thread (between generations), returning its result."""
        self._require_ready()
        return self._worker.submit(work, self.model, *args).result()

    def generate(self, prompts: list[list[int]], params: GenerationParams) -> list[Completion]:
        """Completions for prompts given as token ids (one padded batch), cut at their stop sequences."""
        self._require_ready()
        return self._worker.submit(self._generate, prompts, params).result()

    def _generate(self, prompts: list[list[int]], params: GenerationParams) -> list[Completion]:
        import torch

        _seed(params.seed)
        encoded = self._batch(prompts)
        with torch.inference_mode():
            output = self.model.generate(**encoded, **self._kwargs(params))
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        return [
            self._completion(ids, len(prompt), params)
            for ids, prompt in zip(new_tokens, prompts, strict=True)
        ]

    def _completion(self, ids: list[int], prompt_tokens: int, params: GenerationParams) -> Completion:
        """One row of a batch: its tokens up to and including EOS (the padding after it is not counted)."""
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        end = next((i for i, t in enumerate(ids) if t in eos or t == self.tokenizer.pad_token_id), None)
        if end is not None:
            ids = ids[: end + 1] if ids[end] in eos else ids[:end]
        text, stopped = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
        ended = stopped or len(ids) < params.max_new_tokens or bool(ids and ids[-1] in eos)
        return Completion(text, prompt_tokens, len(ids), "stop" if ended else "length")

    def _batch(self, prompts: list[list[int]]) -> Any:
        padded = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        return padded.to(self.model.device)

    def _kwargs(self, params: GenerationParams) -> dict[str, Any]:
        kwargs = {**params.generate_kwargs(), "pad_token_id": self.tokenizer.pad_token_id}
        if params.stop:
            kwargs["tokenizer"] = self.tokenizer  # generate() needs it to match stop strings
        return kwargs

    def stream(self, prompt: list[int], params: GenerationParams) -> TokenStream:
        """Text pieces as tokens are decoded; close() (from any thread) stops the generation."""
        self._require_ready()
        streamer = _counting_streamer_class()(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()
        job = self._worker.submit(self._stream_job, prompt, params, streamer, cancelled)
        return TokenStream(streamer, params, len(prompt), job, cancelled)

    async def astream(self, prompt: list[int], params: GenerationParams) -> AsyncIterator[str | Completion]:
        """Async stream of text pieces, then the Completion (the whole text, counts and finish reason).

        A cancelled consumer (a client that left) stops the generation.
        """
        stream = self.stream(prompt, params)
        loop = asyncio.get_running_loop()
        try:
            while (text := await loop.run_in_executor(None, next, stream, None)) is not None:
                yield text
            yield stream.completion
        finally:
            stream.close()

    def _stream_job(
        self, prompt: list[int], params: GenerationParams, streamer: Any, cancelled: threading.Event
    ) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        try:
            if cancelled.is_set():  # the client left while waiting for the model
                return
            import torch

            _seed(params.seed)
            with torch.inference_mode():
                self.model.generate(
                    **self._batch([prompt]),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    **self._kwargs(params),
                )
        finally:
            streamer.text_queue.put(streamer.stop_signal)  # always end the consumer's loop


@cache
def _counting_streamer_class() -> type:
    """Made on first use: importing transformers at module import would slow every start."""
    from transformers import TextIteratorStreamer

    class CountingStreamer(TextIteratorStreamer):
        """TextIteratorStreamer that also counts the tokens generated after the prompt."""

        generated = 0

        def put(self, value: Any) -> None:
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                self.generated += value.numel()
            super().put(value)

    return CountingStreamer


class TokenStream:
    """The text of one streamed generation; close() stops it at the next token.

    Once iterated to the end, `completion` holds the whole text, the token counts and the finish reason.
    """

    def __init__(
        self,
        streamer: Any,
        params: GenerationParams,
        prompt_tokens: int,
        job: Future,
        cancelled: threading.Event,
    ) -> None:
        self._stops = StopFilter(params.stop)
        self._texts = filter_stream(streamer, self._stops)
        self._streamer, self._params, self._prompt_tokens = streamer, params, prompt_tokens
        self._job, self._cancelled = job, cancelled
        self._pieces: list[str] = []

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> str:
        try:
            while not (text := next(self._texts)):
                pass
            self._pieces.append(text)
            return text
        except StopIteration:
            self.close()  # ended by a stop sequence: no need to generate further
            self._job.result()  # re-raise a generation error
            raise

    @property
    def completion(self) -> Completion:
        """The generation so far as a Completion (final once the stream has ended)."""
        generated = self._streamer.generated
        ended = self._stops.stopped or generated < self._params.max_new_tokens
        return Completion(
            "".join(self._pieces), self._prompt_tokens, generated, "stop" if ended else "length"
        )

    def close(self) -> None:
        """Stop generating (thread-safe; a no-op once finished)."""
        self._cancelled.set()

    def __del__(self) -> None:
        self.close()


def _seed(seed: int | None) -> None:
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)


def _context_window(config: Any, tokenizer: Any) -> int | None:
    """The model's context size from its config, else from the tokenizer when plausible."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 10**7 else None
