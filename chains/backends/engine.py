"""The generation engine: one thread owns the model and runs continuous batching.

Between two decoding steps, waiting jobs join the running batch (up to max_batch rows, each with its
own sampling settings) and finished ones leave; each row streams its own tokens and stops at its own
max_new_tokens, stop sequences or EOS; a cancelled row stops at the next step. Other model work
(`call`, e.g. label scoring) runs between steps. The decoding itself is in decoder.py.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from chains.backends.logprobs import Piece, entry, joined, scored
from chains.backends.pool import BLOCK
from chains.backends.scope import register
from chains.errors import (
    HfchainError,
    InvalidInput,
    KvPoolTooSmall,
    ModelNotReady,
    Overloaded,
    QueueTimeout,
)
from chains.stops import StopFilter

log = logging.getLogger(__name__)
SHARE_TOKENS = 64  # a prompt waits one step for another's blocks when it would reuse this many more


@dataclass(frozen=True)
class Completion:
    """One generated reply with its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop sequence), "length" (max_new_tokens) or "cancelled"
    cached_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache
    guard_tokens: int = 0  # constrained rows: tokens a guard chose instead of the model (tools/constraint.py)
    repetitions_ended: int = 0  # constrained rows: strings or containers the repetition guard ended
    stop_sequence: str | None = None  # the request's stop sequence that ended the reply, if one did
    logprobs: tuple[dict, ...] | None = None  # per reply token (logprobs.py), when the request asked


@dataclass(frozen=True)
class GenerationParams:
    """Resolved knob values for one generation."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: str | None = None  # a Lark grammar (chains/tools/grammar.py) the tokens must follow
    speculation: bool | None = None  # prompt-lookup drafts for this row (None: the server's setting)
    logprobs: int | None = None  # report each token's log-probability and this many alternatives


class Observer:
    """Hooks the engine calls (metrics); the default does nothing."""

    def batch(self, size: int) -> None: ...

    def first_token(self, seconds: float) -> None: ...

    def finished(self, completion: Completion) -> None: ...

    def rejected(self) -> None: ...

    def prefill(self, reused: int, computed: int) -> None: ...

    def drafts(self, drafted: int, accepted: int) -> None: ...


class Job:
    """One generation request: its events (text pieces, then a Completion or an error) reach the consumer
    through a thread-safe queue, or an asyncio queue on the consumer's loop."""

    def __init__(self, prompt: list[int], params: GenerationParams, loop: asyncio.AbstractEventLoop | None):
        self.prompt, self.params, self.loop = prompt, params, loop
        self.submitted = time.monotonic()
        self.cancelled = threading.Event()
        self.lease: Any = None  # its blocks in the KV pool (pool.py), once taken from the queue
        self.waited = False  # whether it had to wait for blocks
        self.constraint: Any = None  # the grammar's matcher, when params.grammar is set
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
        max_prefill_tokens: int = 8192,
        kv_cache_bytes: int | None = None,
        prefix_cache_tokens: int | None = None,
        repetition_guard: bool = True,
        speculation: bool = True,
        speculation_max_batch: int = 1,
    ) -> None:
        self.max_batch, self.max_tokens_in_flight = max_batch, max_tokens_in_flight
        self.kv_cache_bytes = kv_cache_bytes  # None: sized from memory when the model is known; 0: off
        self.prefix_cache_tokens = prefix_cache_tokens  # retired: read when kv_cache_bytes is None
        self.pool: Any = None  # the KV block pool (pool.py), made once the model is loaded
        # constrained rows: a structure closes within max_new_tokens (budget); degenerate strings end
        self.budget_guard, self.repetition_guard = True, repetition_guard
        self.queue_timeout, self.max_prefill_tokens = queue_timeout, max_prefill_tokens
        # prompt-lookup drafts checked in one pass (speculation.py), while the batch is this small
        self.speculation, self.speculation_max_batch = speculation, speculation_max_batch
        self.observer = observer or Observer()
        self.model: Any = None
        self.tokenizer: Any = None
        self._queue: deque[Job | _Call] = deque()
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._initializer: Callable[[], None] | None = None
        self._grammars: Any = None

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
        if params.grammar is not None:  # compiled (or found) here: a bad grammar fails its caller only
            job.constraint = self.grammars.constraint(
                params.grammar, self.budget_guard, self.repetition_guard
            )
            if self.budget_guard:
                _check_room(job.constraint.minimum, params.max_new_tokens)
        if self.pool is not None:
            _check_pool(self.pool, job.tokens)
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
        register(job)
        return job

    @property
    def grammars(self) -> Any:
        """The compiled grammars for this model's tokenizer (made on first use)."""
        if self._grammars is None:
            from chains.tools.grammar import GrammarBook

            self._grammars = GrammarBook(self.tokenizer, self.model.config.vocab_size)
        return self._grammars

    def stop(self) -> None:
        """Stop the thread after the current step; queued and running jobs fail with 503."""
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
        decoder = None
        while True:
            with self._cond:
                while not self._queue and not self._running and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    self._fail_running(decoder)
                    return
                calls, joiners = self._take(self.max_batch - len(self._running))
            for call in calls:
                _run_call(call)
            joiners = self._live(joiners) + self._expire_waiting()
            if decoder is None or not decoder.rows:
                decoder = self._new_decoder() if joiners else None
            if decoder is None:
                continue
            try:
                self._advance(decoder, joiners)
            except Exception as error:  # a failed step fails the running jobs, not the engine
                log.exception("generation failed for a batch of %d", len(decoder.rows) + len(joiners))
                jobs = {id(r.job): r.job for r in decoder.rows} | {id(j): j for j in joiners}
                self._release(jobs.values())
                for job in jobs.values():
                    job.emit(error)
                decoder = None
            self._running = [row.job for row in decoder.rows] if decoder else []

    def _fail_running(self, decoder: Any) -> None:
        """At shutdown: the rows still generating get 503 instead of waiting forever."""
        error = ModelNotReady("the server is shutting down; retry on another replica", retry_after=2)
        for row in decoder.rows if decoder else []:
            row.job.emit(error)
        self._running = []

    def _new_decoder(self) -> Any:
        if hasattr(self.model, "new_decoder"):  # a runtime of its own (chains/backends/onnx)
            return self.model.new_decoder(self.tokenizer.pad_token_id, self.pool)
        from chains.backends.decoder import Decoder

        return Decoder(self.model, self.tokenizer.pad_token_id, self.pool)

    def make_pool(self) -> None:
        """Reserve the KV block pool for the loaded model (on the model thread); none when set to 0."""
        from chains.backends.pool import allocate, bytes_per_token, default_bytes

        if self.kv_cache_bytes is None and self.prefix_cache_tokens is not None:
            self.kv_cache_bytes = self.prefix_cache_tokens * bytes_per_token(self.model)
            log.warning(
                "HFCHAIN_PREFIX_CACHE_TOKENS is retired: set HFCHAIN_KV_CACHE_BYTES instead (%d tokens of "
                "this model are HFCHAIN_KV_CACHE_BYTES=%d)",
                self.prefix_cache_tokens,
                self.kv_cache_bytes,
            )
        if self.kv_cache_bytes == 0:
            log.info("KV pool: off (HFCHAIN_KV_CACHE_BYTES=0): no prefix cache")
            return
        self.pool = allocate(self.model, self.kv_cache_bytes or default_bytes(self.model))
        log.info(
            "KV pool: %.0f MiB, %d blocks of %d tokens (%d tokens of this model)%s",
            self.pool.bytes / 2**20,
            self.pool.total,
            BLOCK,
            self.pool.total * BLOCK,
            "" if self.kv_cache_bytes else "; set HFCHAIN_KV_CACHE_BYTES to change it",
        )

    def _advance(self, decoder: Any, joiners: list[Job]) -> None:
        """Prefill the joiners into the batch, then one decoding step for every row."""
        if joiners:
            rows = [_Row(job, self.tokenizer, self.model, self.observer) for job in joiners]
            self._running = [*self._running, *joiners]
            joined = decoder.join(rows, [j.prompt for j in joiners], rows)
            for row, (token, reused) in zip(rows, joined, strict=True):
                row.cached = reused
                self.observer.prefill(reused, len(row.job.prompt) - reused)
                row.push(token)
            decoder.share(len(rows))  # after the first tokens are out: storing blocks delays them
            self._drop_finished(decoder)
        if decoder.rows:
            self.observer.batch(len(decoder.rows))
            drafts = self._drafts(decoder)
            if any(drafts):
                self._speculate(decoder, drafts)
            else:
                for row, token in zip(decoder.rows, decoder.step(decoder.rows), strict=True):
                    row.push(token)
            self._drop_finished(decoder)

    def _drafts(self, decoder: Any) -> list[list[int]]:
        """Each row's prompt-lookup draft (empty where it does not speculate this step)."""
        rows, limit = (
            decoder.rows,
            min(self.speculation_max_batch, getattr(decoder, "verify_rows", len(decoder))),
        )
        if not hasattr(decoder, "verify") or len(rows) > limit:
            return [[] for _ in rows]
        policy = getattr(decoder, "drafting", {})
        return [row.draft(self.speculation, policy) for row in rows]

    def _speculate(self, decoder: Any, drafts: list[list[int]]) -> None:
        """One verifying pass: each row keeps its accepted drafts and the model's next token."""
        from chains.backends.sampling import pick
        from chains.backends.speculation import accept

        logits = decoder.verify(drafts)
        kept = []
        for row, scores, draft in zip(decoder.rows, logits, drafts, strict=True):
            if draft:
                kept.append(accept(scores, draft, row))
                if row.logprobs is not None:  # each kept token from the logits it was chosen with
                    row.scored.extend(scored(scores[j], row, t, row.logprobs) for j, t in enumerate(kept[-1]))
                row.drafter.record(len(draft), len(kept[-1]) - 1)
                self.observer.drafts(len(draft), len(kept[-1]) - 1)
            else:  # constraints and plain sampling as in a normal step
                kept.append([int(pick(scores[-1:].clone(), [row])[0])])  # a grammar masks in place
        decoder.settle(kept)
        for row, tokens in zip(decoder.rows, kept, strict=True):
            row.push_all(tokens)

    def _drop_finished(self, decoder: Any) -> None:
        for row in decoder.rows:
            row.check_cancelled()
        leaving = [row for row in decoder.rows if row.done]
        decoder.keep([not row.done for row in decoder.rows])  # a leaving row's blocks get its keys first
        self._release(row.job for row in leaving)  # before the reply: a client then sees its blocks back
        for row in leaving:
            row.finish()

    def _release(self, jobs: Any) -> None:
        """Give the jobs' blocks back to the pool (once each)."""
        if self.pool is not None:
            for job in jobs:
                if job.lease is not None:
                    self.pool.release(job.lease)

    def _take(self, free: int) -> tuple[list[_Call], list[Job]]:
        """Queued calls (all) and up to `free` jobs, in order, out of the queue (caller holds the lock).

        The jobs' padded prefill stays within max_prefill_tokens (always at least one job): attention
        over many long prompts at once would need memory quadratic in their length.
        """
        calls, jobs, kept, width = [], [], deque(), 0
        for item in self._queue:
            if isinstance(item, _Call):
                calls.append(item)
                continue
            wider = max(width, len(item.prompt))
            fits = not jobs or (len(jobs) + 1) * wider <= self.max_prefill_tokens
            # in order: a job never overtakes one left waiting (for a batch slot or for pool blocks)
            if len(jobs) < free and fits and not kept and not self._follows(item, jobs) and self._lease(item):
                jobs.append(item)
                width = wider
            else:
                kept.append(item)
        self._queue = kept
        return calls, jobs

    def _follows(self, job: Job, leaders: list[Job]) -> bool:
        """Whether the job waits one step for a leader's prompt blocks: its prompt starts with at least
        SHARE_TOKENS more tokens of a prompt joining now than the pool holds, so n samples of one prompt
        (or many clients sending one long system prompt) compute it once."""
        if self.pool is None or not leaders:
            return False
        keep = getattr(self.model, "min_rows", 1)
        common = max(_common_prefix(job.prompt, leader.prompt) for leader in leaders)
        usable = min(common, len(job.prompt) - keep) // BLOCK * BLOCK
        return usable - self.pool.reusable(job.prompt, keep) >= SHARE_TOKENS

    def _lease(self, job: Job) -> bool:
        """Take the job's blocks from the pool (its cached prefix, then fresh ones); False: wait."""
        if self.pool is None:
            return True
        keep = getattr(self.model, "min_rows", 1)  # prompt tokens that must still be computed
        job.lease = self.pool.lease(job.prompt, job.tokens, keep)
        if job.lease is None and not job.waited:
            job.waited = True
            self.pool.stats.waits += 1
        return job.lease is not None

    def _live(self, jobs: list[Job]) -> list[Job]:
        """Drop jobs whose client left, and fail those that waited past the queue timeout."""
        now, live = time.monotonic(), []
        self._release(job for job in jobs if job.cancelled.is_set() or self._expired(job, now))
        for job in jobs:
            if job.cancelled.is_set():
                self.observer.finished(Completion("", len(job.prompt), 0, "cancelled"))
                job.emit(Completion("", len(job.prompt), 0, "cancelled"))
            elif self._expired(job, now):
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

    def _expired(self, job: Job, now: float) -> bool:
        return bool(self.queue_timeout) and now - job.submitted > self.queue_timeout

    def _expire_waiting(self) -> list[Job]:
        """Jobs still queued that were cancelled or timed out: answered now, not when a slot frees."""
        with self._cond:
            now, limit = time.monotonic(), self.queue_timeout
            gone = [
                item
                for item in self._queue
                if isinstance(item, Job)
                and (item.cancelled.is_set() or (limit and now - item.submitted > limit))
            ]
            if not gone:
                return []
            self._queue = deque(item for item in self._queue if item not in gone)
        return self._live(gone)  # always [] here: every one of them is answered


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
        self.temperature, self.top_p = job.params.temperature, job.params.top_p
        from chains.backends.sampling import Noise  # torch is imported once a model runs

        self.noise, self.constraint = Noise(job.params.seed), job.constraint  # noise: sampled rows
        self.lease, self.cached = job.lease, 0
        self.held: list[str] | None = None  # text held back while a step's several tokens are pushed
        self.logprobs = job.params.logprobs  # None: not asked for; else alternatives per token
        self.scored: deque = deque()  # pick()'s entries for tokens not pushed yet
        self.pending: list[dict] = []  # entries of pushed tokens whose text is not out yet
        self.reported: list[dict] = []  # entries of the text emitted so far
        self.drafter: Any = None  # its prompt-lookup index (speculation.py), made at its first draft

    @property
    def remaining(self) -> int:
        """Tokens this row may still generate, the next one included."""
        return self.job.params.max_new_tokens - self.generated

    def draft(self, default: bool, policy: dict) -> list[int]:
        """Tokens to check with the model this step (speculation.py): none for constrained rows, rows that
        turned it off, or rows whose drafts keep failing."""
        wanted = self.job.params.speculation
        if self.done or self.constraint is not None or not (default if wanted is None else wanted):
            return []
        if self.drafter is None:
            from chains.backends.speculation import Drafter

            self.drafter = Drafter(self.job.prompt + self.ids, **policy)
        return self.drafter.propose(self.remaining - 1)

    def check_cancelled(self) -> None:
        """End the row if its client left."""
        if not self.done and self.job.cancelled.is_set():
            self.done, self.reason = True, "cancelled"

    def push(self, token: int) -> None:
        """The row's next token (ignored once the row is done)."""
        if self.done:
            return
        raw = self.scored.popleft() if self.scored else None
        if self.generated == 0:
            self.observer.first_token(time.monotonic() - self.job.submitted)
        self.generated += 1
        if token in self.eos:
            self.done, self.reason = True, "stop"
            return
        if self.constraint is not None:
            self.constraint.consume(token)
        if raw is not None:
            self.pending.append(entry(self.tokenizer, raw))
        self.ids.append(token)
        if self.drafter is not None:
            self.drafter.extend([token])
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence waits for its next token
            self._emit(self.stops.feed(text[len(self.printed) :]))
            self.printed = text
        if self.stops.stopped or (self.constraint is not None and self.constraint.stopped):
            self.done, self.reason = True, "stop"
        elif self.generated >= self.job.params.max_new_tokens:
            whole = self.constraint is not None and self.constraint.structure and self.constraint.complete
            self.done, self.reason = True, "stop" if whole else "length"  # "length": cut free text only

    def finish(self) -> None:
        """Emit the held-back tail and the Completion."""
        if self.reason != "cancelled":
            self._emit(self.stops.flush())
        text, prompt, guard = "".join(self.emitted), len(self.job.prompt), self.constraint
        forced, ended = (guard.forced, guard.repeats) if guard is not None else (0, 0)
        logprobs = tuple(self.reported) if self.logprobs is not None else None
        completion = Completion(
            text, prompt, self.generated, self.reason, self.cached, forced, ended, self.stops.matched
        )
        if logprobs is not None:
            completion = dataclasses.replace(completion, logprobs=logprobs)
        self.observer.finished(completion)
        self.job.emit(completion)

    def push_all(self, tokens: list[int]) -> None:
        """Several tokens of one step, reaching the consumer as one piece of text (one stream event)."""
        self.held = []
        for token in tokens:
            self.push(token)
        held, self.held = self.held, None
        if held:
            self.job.emit(joined(held))

    def _emit(self, text: str) -> None:
        if text and self.logprobs is not None:  # the tokens that produced it (a stop's tokens produce none)
            text, self.pending = Piece(text, self.pending), []
            self.reported.extend(text.logprobs)
        if text:
            self.emitted.append(text)
            if self.held is not None:
                self.held.append(text)
            else:
                self.job.emit(text)


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two prompts share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _check_room(minimum: int, limit: int) -> None:
    """Refuse, before any work, a constrained reply whose shortest whole form exceeds the token limit."""
    if minimum > limit:
        raise InvalidInput(
            f"max_tokens (max_new_tokens) is {limit}, but the shortest reply this schema, grammar or tool "
            f"call allows takes {minimum} tokens: raise it to at least {minimum}",
            minimum_tokens=minimum,
        )


def _check_pool(pool: Any, tokens: int) -> None:
    """Refuse, before any work, a row that would need more blocks than the whole pool has."""
    if pool.blocks_for(tokens) > pool.total:
        raise KvPoolTooSmall(
            f"this request may hold {tokens} tokens (prompt plus max_new_tokens) but the KV pool holds "
            f"{pool.total * BLOCK} (HFCHAIN_KV_CACHE_BYTES={pool.bytes}): ask for fewer max_tokens or "
            "raise HFCHAIN_KV_CACHE_BYTES"
        )


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
