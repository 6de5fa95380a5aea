"""The generation engine: one thread owns the model and batches the requests that are waiting.

Dynamic batching: when the model is free, every queued job with compatible sampling settings (up to
max_batch) goes into one padded `generate()`; each row streams its own tokens, stops at its own
max_new_tokens, stop sequences or EOS, and a cancelled row stops at the next token. Jobs that arrive
while a batch runs wait for the next one. Other model work (`call`) runs between batches.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from chains.errors import HfchainError, ModelNotReady
from chains.stops import StopFilter

log = logging.getLogger(__name__)


class Overloaded(HfchainError):
    """More work in flight than the server admits; retry shortly."""

    status_code = 429
    error_type = "overloaded"


class QueueTimeout(HfchainError):
    """The request waited for the model longer than the queue timeout."""

    status_code = 503
    error_type = "queue_timeout"


@dataclass(frozen=True)
class Completion:
    """One generated reply with its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop sequence), "length" (max_new_tokens) or "cancelled"


@dataclass(frozen=True)
class GenerationParams:
    """Resolved knob values for one generation."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def generate_kwargs(self) -> dict[str, Any]:
        """Sampling keyword arguments for generate(); temperature 0 means greedy."""
        if self.temperature > 0:
            return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}

    def batch_key(self) -> tuple:
        """Jobs with equal keys can share a generate() call (a seeded job runs alone, to be reproducible)."""
        if self.seed is not None:
            return ("seeded", id(self))
        return ("greedy",) if self.temperature <= 0 else ("sample", self.temperature, self.top_p)


class Observer:
    """Hooks the engine calls (metrics); the default does nothing."""

    def batch(self, size: int) -> None: ...

    def first_token(self, seconds: float) -> None: ...

    def finished(self, completion: Completion) -> None: ...

    def rejected(self) -> None: ...


class Job:
    """One generation request: its events (text pieces, then a Completion or an error) reach the consumer
    through a thread-safe queue, or an asyncio queue on the consumer's loop."""

    def __init__(self, prompt: list[int], params: GenerationParams, loop: asyncio.AbstractEventLoop | None):
        self.prompt, self.params, self.loop = prompt, params, loop
        self.submitted = time.monotonic()
        self.cancelled = threading.Event()
        self.started = False
        self._sync: queue.SimpleQueue = queue.SimpleQueue()
        self._async: asyncio.Queue | None = asyncio.Queue() if loop else None

    @property
    def tokens(self) -> int:
        """Tokens this job may hold in the model: its prompt and all it may generate."""
        return len(self.prompt) + self.params.max_new_tokens

    def emit(self, item: str | Completion | BaseException) -> None:
        """Hand an event to the consumer (from the engine thread)."""
        if self._async is not None and self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self._async.put_nowait, item)
            except RuntimeError:  # the consumer's loop is gone: nobody is listening
                self.cancel()
        else:
            self._sync.put(item)

    def cancel(self) -> None:
        """Stop this job at its next token (or skip it if it has not started)."""
        self.cancelled.set()

    def events(self) -> Iterator[str | Completion]:
        """Blocking iteration: text pieces, then the Completion (an error is raised)."""
        while True:
            item = self._sync.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Completion):
                return

    async def aevents(self) -> AsyncIterator[str | Completion]:
        """Async iteration, as events(); leaving early cancels the job."""
        assert self._async is not None, "submit with a loop to consume asynchronously"
        try:
            while True:
                item = await self._async.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Completion):
                    return
        finally:
            self.cancel()


@dataclass
class _Call:
    """Model work other than generation (e.g. scoring), run between batches."""

    fn: Callable[..., Any]
    args: tuple
    future: Future = field(default_factory=Future)


class BatchEngine:
    """Owns the model on one thread; `submit` generation jobs, `call` other work; both run there."""

    def __init__(
        self,
        max_batch: int = 16,
        max_tokens_in_flight: int | None = None,
        queue_timeout: float | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.max_batch, self.max_tokens_in_flight = max_batch, max_tokens_in_flight
        self.queue_timeout = queue_timeout
        self.observer = observer or Observer()
        self.model: Any = None
        self.tokenizer: Any = None
        self._queue: deque[Job | _Call] = deque()
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._initializer: Callable[[], None] | None = None

    # --- what the rest of the process sees -------------------------------------------------------

    def start(self, initializer: Callable[[], None] | None = None) -> None:
        """Start the model thread (once); `initializer` runs on it first (e.g. torch threads)."""
        with self._cond:
            if self._thread is None:
                self._initializer = initializer
                self._thread = threading.Thread(target=self._loop, name="hfchain-model", daemon=True)
                self._thread.start()
                atexit.register(self._stop_at_exit)

    def call(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run fn(*args) on the model thread between batches; a Future of its result."""
        item = _Call(fn, args)
        self._put(item)
        return item.future

    def submit(self, prompt: list[int], params: GenerationParams, loop: Any = None) -> Job:
        """Queue a generation job; raises Overloaded (429) when it would exceed the tokens in flight."""
        job = Job(prompt, params, loop)
        with self._cond:
            limit = self.max_tokens_in_flight
            if limit and self._tokens_in_flight() + job.tokens > limit and (self._queue or self._running):
                self.observer.rejected()
                raise Overloaded(
                    f"the server holds {self._tokens_in_flight()} tokens in flight (limit {limit}); "
                    "retry shortly or ask for fewer max_new_tokens",
                    retry_after=1,
                )
        self._put(job)
        return job

    def stop(self) -> None:
        """Stop the thread after the current batch; queued jobs fail with 503."""
        with self._cond:
            self._stopped = True
            pending, self._queue = list(self._queue), deque()
            self._cond.notify_all()
        for item in pending:
            _fail(item, ModelNotReady("the server is shutting down; retry on another replica", retry_after=2))

    def _stop_at_exit(self) -> None:
        """Let the thread leave torch before the interpreter goes (else the process aborts at exit)."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def queued(self) -> int:
        """Generation jobs waiting for the model."""
        with self._cond:
            return sum(isinstance(item, Job) for item in self._queue)

    @property
    def running(self) -> int:
        """Generation jobs in the batch on the model now."""
        return len(self._running)

    def _tokens_in_flight(self) -> int:
        jobs = [item for item in self._queue if isinstance(item, Job)] + self._running
        return sum(job.tokens for job in jobs)

    def _put(self, item: Job | _Call) -> None:
        with self._cond:
            if self._stopped:
                raise ModelNotReady("the server is shutting down; retry on another replica", retry_after=2)
            self._queue.append(item)
            self._cond.notify()

    # --- the model thread --------------------------------------------------------------------------

    def _loop(self) -> None:
        if self._initializer:
            self._initializer()
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                head = self._queue.popleft()
                batch = [head, *self._compatible(head)] if isinstance(head, Job) else []
            if isinstance(head, _Call):
                _run_call(head)
                continue
            batch = self._live(batch)
            if batch:
                self._run(batch)

    def _compatible(self, head: Job) -> list[Job]:
        """Queued jobs that can join head's batch, taken out of the queue (caller holds the lock)."""
        key, taken, kept = head.params.batch_key(), [], deque()
        while self._queue:
            item = self._queue.popleft()
            joins = isinstance(item, Job) and item.params.batch_key() == key
            (taken if joins and len(taken) < self.max_batch - 1 else kept).append(item)
        self._queue = kept
        return taken

    def _live(self, jobs: list[Job]) -> list[Job]:
        """Drop jobs whose client left, and fail those that waited past the queue timeout."""
        now, live = time.monotonic(), []
        for job in jobs:
            if job.cancelled.is_set():
                job.emit(Completion("", len(job.prompt), 0, "cancelled"))
            elif self.queue_timeout and now - job.submitted > self.queue_timeout:
                job.emit(
                    QueueTimeout(
                        f"waited {now - job.submitted:.0f} s for the model (HFCHAIN_QUEUE_TIMEOUT="
                        f"{self.queue_timeout:g}); the server is busy, retry later",
                        retry_after=5,
                    )
                )
            else:
                live.append(job)
        return live

    def _run(self, jobs: list[Job]) -> None:
        import torch
        from transformers import StoppingCriteriaList

        rows = [_Row(job, self.tokenizer, self.model, self.observer) for job in jobs]
        self._running = jobs
        self.observer.batch(len(jobs))
        try:
            _seed(jobs[0].params.seed)
            padded = self.tokenizer.pad({"input_ids": [j.prompt for j in jobs]}, return_tensors="pt")
            with torch.inference_mode():
                self.model.generate(
                    **padded.to(self.model.device),
                    **jobs[0].params.generate_kwargs(),
                    max_new_tokens=max(j.params.max_new_tokens for j in jobs),
                    pad_token_id=self.tokenizer.pad_token_id,
                    streamer=_RowsStreamer(rows, self._expire_waiting),
                    stopping_criteria=StoppingCriteriaList([_rows_done_class()(rows)]),
                )
            for row in rows:
                row.finish()
        except Exception as error:  # a failed batch fails its jobs, not the engine
            log.exception("generation failed for a batch of %d", len(jobs))
            for job in jobs:
                job.emit(error)
        finally:
            self._running = []

    def _expire_waiting(self) -> None:
        """Between decoding steps: fail queued jobs past the queue timeout, so their clients hear now."""
        if not self.queue_timeout:
            return
        with self._cond:
            now = time.monotonic()
            expired = [
                i for i in self._queue if isinstance(i, Job) and now - i.submitted > self.queue_timeout
            ]
            if not expired:
                return
            self._queue = deque(i for i in self._queue if i not in expired)
        self._live(expired)


class _Row:
    """One job's row in a batch: decodes its tokens, applies its stops and limits, emits its text."""

    def __init__(self, job: Job, tokenizer: Any, model: Any, observer: Observer) -> None:
        self.job, self.tokenizer, self.observer = job, tokenizer, observer
        eos = model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.ids: list[int] = []
        self.generated, self.printed, self.emitted = 0, "", []
        self.stops = StopFilter(job.params.stop)
        self.done, self.reason = False, "length"

    def push(self, token: int) -> None:
        """The row's next token (ignored once the row is done)."""
        if self.done:
            return
        if self.job.cancelled.is_set():
            self.done, self.reason = True, "cancelled"
            return
        if self.generated == 0:
            self.observer.first_token(time.monotonic() - self.job.submitted)
        self.generated += 1
        if token in self.eos:
            self.done, self.reason = True, "stop"
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence waits for its next token
            self._emit(self.stops.feed(text[len(self.printed) :]))
            self.printed = text
        if self.stops.stopped:
            self.done, self.reason = True, "stop"
        elif self.generated >= self.job.params.max_new_tokens:
            self.done, self.reason = True, "length"

    def finish(self) -> None:
        """Emit the held-back tail and the Completion."""
        if self.reason != "cancelled":
            self._emit(self.stops.flush())
        completion = Completion("".join(self.emitted), len(self.job.prompt), self.generated, self.reason)
        self.observer.finished(completion)
        self.job.emit(completion)

    def _emit(self, text: str) -> None:
        if text:
            self.emitted.append(text)
            self.job.emit(text)


class _RowsStreamer:
    """generate()'s streamer: routes each step's tokens to their rows (the first call is the prompt)."""

    def __init__(self, rows: list[_Row], between_steps: Callable[[], None]) -> None:
        self.rows, self.between_steps, self.prompt_seen = rows, between_steps, False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(len(self.rows), -1)[:, -1].tolist(), strict=True):
            row.push(token)
        self.between_steps()

    def end(self) -> None:
        pass


@cache
def _rows_done_class() -> type:
    """Made on first use: importing transformers at module import would slow every start."""
    from transformers import StoppingCriteria

    class RowsDone(StoppingCriteria):
        """Per-row stop: a row ends when its job is done or cancelled; generate() stops when all have."""

        def __init__(self, rows: list[_Row]) -> None:
            self.rows = rows

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            for row in self.rows:
                if not row.done and row.job.cancelled.is_set():
                    row.done, row.reason = True, "cancelled"
            return torch.tensor([row.done for row in self.rows], device=input_ids.device)

    return RowsDone


def _run_call(item: _Call) -> None:
    if not item.future.set_running_or_notify_cancel():
        return
    try:
        item.future.set_result(item.fn(*item.args))
    except BaseException as error:
        item.future.set_exception(error)


def _fail(item: Job | _Call, error: HfchainError) -> None:
    if isinstance(item, Job):
        item.emit(error)
    elif item.future.set_running_or_notify_cancel():
        item.future.set_exception(error)


def _seed(seed: int | None) -> None:
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
