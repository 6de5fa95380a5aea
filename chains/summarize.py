"""Map-reduce summarization of text of any length, every model call within the token budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.utils import AddableDict
from pydantic import BaseModel, ConfigDict, Field

from chains.backends import Backend
from chains.budget import Budget, split_text
from chains.configurable import DeclaredGenerator
from chains.errors import InvalidInput
from chains.prompts import load_prompt

MAP_BATCH = 4  # chunks summarized per model call batch (and per progress event)


class SummarizeInput(BaseModel):
    """Input of /summarize."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="The text to summarize, of any length")
    overlap_tokens: int = Field(0, ge=0, le=512, description="Tokens repeated between consecutive chunks")


class SummarizeOutput(BaseModel):
    """Output of /summarize (streamed as progress events, then the summary's tokens)."""

    summary: str
    content: str = Field(
        "", description="The run as a person reads it: a line per progress event, then the summary"
    )
    chunks: int = Field(description="Chunks the text was cut into")
    chunk_tokens: list[int] = Field(description="Tokens of each chunk's prompt, as sent")
    budget: int = Field(description="Most prompt tokens a call may have")
    context_window: int
    model_calls: int
    tokens_in: int = Field(description="Prompt tokens over all calls")
    tokens_out: int = Field(description="Generated tokens over all calls")
    collapse_levels: int = Field(description="Rounds of summarizing summaries before the final one")
    token_counting: str = Field(description="'tokenizer' (exact) or 'estimate'")
    progress: list[dict] = Field(default_factory=list, description="Progress events, in order")


@dataclass
class Run:
    """One summarization: the model, its budget and the running totals."""

    model: Runnable
    config: RunnableConfig
    budget: Budget
    max_new_tokens: int
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    levels: int = 0
    chunk_tokens: list[int] = field(default_factory=list)

    @property
    def limit(self) -> int:
        return self.budget.limit(self.max_new_tokens)

    def messages(self, prompt: str, text: str) -> list[BaseMessage]:
        return [HumanMessage(content=load_prompt(prompt).format(text=text))]

    def measure(self, prompt: str, text: str) -> int:
        """Tokens of the call that would summarize `text` with `prompt`, as sent."""
        return self.budget.count_messages(self.messages(prompt, text))

    def summarize_all(self, prompt: str, texts: list[str]) -> list[str]:
        """One model call per text, batched; every prompt checked against the budget first."""
        sizes = [self.measure(prompt, text) for text in texts]
        for size in sizes:
            self.budget.check(size, self.max_new_tokens)  # never send an over-budget call
        replies = self.model.batch([self.messages(prompt, t) for t in texts], self.config)
        self._count(sizes, replies)
        return [reply.content.strip() for reply in replies]

    def _count(self, sizes: list[int], replies: list[AIMessage]) -> None:
        self.calls += len(sizes)
        self.tokens_in += sum(sizes)
        for reply in replies:
            usage = getattr(reply, "usage_metadata", None) or {}
            self.tokens_out += usage.get("output_tokens") or self.budget.tokens.count_text(reply.content)


def _progress(stage: str, done: int, total: int) -> AddableDict:
    """A progress event; its `content` line is what the playground shows while the run goes on."""
    message = f"{stage}: {done} of {total}"
    event = {"stage": stage, "done": done, "total": total, "message": message}
    line = "[writing the summary]\n\n" if stage == "final" else f"[{message}]\n"
    return AddableDict(progress=[event], content=line)


def _groups(run: Run, partials: list[str]) -> list[str]:
    """Consecutive partial summaries joined into as few texts as fit one reduce call each."""
    groups: list[str] = []
    for partial in partials:
        joined = f"{groups[-1]}\n\n{partial}" if groups else partial
        if groups and run.measure("summarize_reduce", joined) <= run.limit:
            groups[-1] = joined
        else:
            groups.append(partial)
    return groups


def _check_room(run: Run) -> None:
    room = run.limit - run.measure("summarize_reduce", "")
    if room < 2 * run.max_new_tokens:
        raise InvalidInput(
            f"max_new_tokens={run.max_new_tokens} leaves too little room to combine summaries in a "
            f"{run.budget.context_window}-token context: use max_new_tokens <= {max(room // 2, 1)}"
        )


def summarize_steps(run: Run, value: SummarizeInput) -> Iterator[AddableDict]:
    """Progress events for map and collapse rounds, then the final summary's tokens, then the stats."""
    _check_room(run)
    chunks = split_text(
        value.text,
        run.budget.tokens,
        run.limit,
        measure=lambda text: run.measure("summarize_map", text),
        overlap=value.overlap_tokens,
    )
    run.chunk_tokens = [chunk.tokens for chunk in chunks]
    partials, texts = [], [chunk.text for chunk in chunks]
    if len(texts) > 1:
        yield _progress("map", 0, len(texts))
        for start in range(0, len(texts), MAP_BATCH):
            partials += run.summarize_all("summarize_map", texts[start : start + MAP_BATCH])
            yield _progress("map", len(partials), len(texts))
    while len(partials) > 1 and run.measure("summarize_reduce", "\n\n".join(partials)) > run.limit:
        run.levels += 1
        groups = _groups(run, partials)
        if len(groups) >= len(partials):  # no two summaries fit one call: another round cannot help
            raise InvalidInput(
                f"the partial summaries are too long to combine in a {run.budget.context_window}-token "
                f"context: lower max_new_tokens (now {run.max_new_tokens})"
            )
        yield _progress(f"collapse {run.levels}", 0, len(groups))
        partials = run.summarize_all("summarize_reduce", groups)
        yield _progress(f"collapse {run.levels}", len(groups), len(groups))
    prompt, text = ("summarize_reduce", "\n\n".join(partials)) if partials else ("summarize_map", texts[0])
    yield _progress("final", 0, 1)
    yield from _final(run, prompt, text)


def _final(run: Run, prompt: str, text: str) -> Iterator[AddableDict]:
    size = run.measure(prompt, text)
    run.budget.check(size, run.max_new_tokens)
    reply = None
    for chunk in run.model.stream(run.messages(prompt, text), run.config):
        reply = chunk if reply is None else reply + chunk
        if chunk.content:  # every chunk has a string `content`: the playground joins them as text
            yield AddableDict(summary=chunk.content, content=chunk.content)
    run._count([size], [reply or AIMessage(content="")])
    yield AddableDict(
        content="",
        chunks=len(run.chunk_tokens),
        chunk_tokens=run.chunk_tokens,
        budget=run.limit,
        context_window=run.budget.context_window,
        model_calls=run.calls,
        tokens_in=run.tokens_in,
        tokens_out=run.tokens_out,
        collapse_levels=run.levels,
        token_counting=run.budget.counting,
    )


def preflight(backend: Backend, value: object, config: dict | None) -> None:
    """Refuse (422) knobs that leave no room to combine summaries, before anything is streamed."""
    _check_room(Run(None, {}, backend.budget(), backend.max_new_tokens_of(config)))


def build_summarize_chain(backend: Backend) -> Runnable:
    """{"text": ...} -> {"summary", "chunks", ...}; streams progress, then the summary's tokens."""
    model = backend.configurable_chat_model()

    def transform(inputs: Iterator[dict], config: RunnableConfig) -> Iterator[AddableDict]:
        value = SummarizeInput.model_validate(next(iter(inputs)))
        concrete, call_config = model.prepare(config)  # the knob-configured model: batches stay batched
        run = Run(concrete, call_config, backend.budget(), backend.max_new_tokens_of(config))
        yield from summarize_steps(run, value)

    async def atransform(inputs: AsyncIterator[dict], config: RunnableConfig) -> AsyncIterator[AddableDict]:
        values = [value async for value in inputs]  # one input: the request's
        steps = transform(iter(values), config)
        while (step := await asyncio.to_thread(next, steps, None)) is not None:  # keeps the contextvars
            yield step

    chain = DeclaredGenerator(transform, atransform, model.config_specs, name="summarize")
    return chain.with_types(input_type=SummarizeInput, output_type=SummarizeOutput)
