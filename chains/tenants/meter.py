"""Tokens a request used, gathered from the runs it made (LangChain callbacks) or told by a route."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

USAGE_EVENT = "hfchain_usage"  # a custom callback event: {"prompt_tokens": n, "completion_tokens": m}
# LangChain adds the handler in this variable to every run started in its context (as it does for its own
# tracers), so a request's runs are metered however they are started: invoke, stream, LangServe's batch
# (which keeps only config["configurable"] of a request's configs), tools inside the agent
_metering: ContextVar[MeterCallback | None] = ContextVar("hfchain_metering", default=None)
register_configure_hook(_metering, inheritable=True)


class Meter:
    """Prompt and completion tokens of one request (thread-safe: a request's runs may be concurrent)."""

    def __init__(self) -> None:
        self.prompt_tokens = self.completion_tokens = 0
        self._lock = threading.Lock()

    def add(self, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self.prompt_tokens += max(0, int(prompt_tokens))
            self.completion_tokens += max(0, int(completion_tokens))


class MeterCallback(BaseCallbackHandler):
    """Adds each model run's tokens to a Meter: the model's own counts when it reports them, else the
    text counted with `count` (the served model's tokenizer)."""

    # not run_inline: an inline sync handler breaks astream_events' own handler (its run map loses runs)

    def __init__(self, meter: Meter, count: Callable[[str], int]) -> None:
        self.meter, self.count = meter, count
        self._prompts: dict[UUID, list[Any]] = {}  # counted only if the model reports no usage

    def on_llm_start(self, serialized: Any, prompts: list[str], *, run_id: UUID, **kwargs: Any) -> None:
        self._prompts[run_id] = list(prompts)

    def on_chat_model_start(self, serialized: Any, messages: list[list[Any]], *, run_id: UUID, **kw: Any):
        self._prompts[run_id] = [m.content for batch in messages for m in batch]

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        prompts = self._prompts.pop(run_id, [])
        reported_prompt = reported_completion = 0
        reported, texts = False, []
        for generation in (g for batch in response.generations for g in batch):
            usage = _reported(generation)
            if usage is not None:
                reported = True
                reported_prompt += usage[0]
                reported_completion += usage[1]
            texts.append(generation.text)
        if reported:
            self.meter.add(reported_prompt, reported_completion)
        else:
            prompt = sum(self._counted(p) for p in prompts)
            self.meter.add(prompt, sum(self._counted(text) for text in texts))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A run cut short (the client left) still used its prompt and what it generated so far."""
        prompts = self._prompts.pop(run_id, [])
        partial = kwargs.get("response")
        texts = [g.text for batch in getattr(partial, "generations", None) or [] for g in batch]
        self.meter.add(sum(self._counted(p) for p in prompts), sum(self._counted(t) for t in texts))

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == USAGE_EVENT and isinstance(data, dict):
            self.meter.add(data.get("prompt_tokens", 0), data.get("completion_tokens", 0))

    def _counted(self, content: Any) -> int:
        if not isinstance(content, str):
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        return self.count(content) if content else 0


def _reported(generation: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens the model reported for a generation, if it did."""
    if isinstance(generation, ChatGeneration):
        usage = getattr(generation.message, "usage_metadata", None)
        if usage:
            return usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    info = generation.generation_info or {}
    if "prompt_tokens" in info or "completion_tokens" in info:
        return info.get("prompt_tokens", 0), info.get("completion_tokens", 0)
    return None


@contextmanager
def metering(meter: Meter, count: Callable[[str], int]) -> Iterator[MeterCallback]:
    """Within this block, every LangChain run adds its tokens to `meter`."""
    callback = MeterCallback(meter, count)
    token = _metering.set(callback)
    try:
        yield callback
    finally:
        _metering.reset(token)
