"""Cited answers from a collection (/ask): retrieve, keep as many chunks as the token budget holds, and
answer with `[n]` markers that can only name a chunk the model was given (a regex grammar on the local
backend). Two styles: "quote" (the model picks, among the source sentences closest to the question, the
one to quote: grounded even on a 135M model) and "free" (its own words). When no chunk is close enough to
the question, the answer says so without calling the model."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.utils import AddableDict
from pydantic import BaseModel, ConfigDict, Field

from chains.backends import Backend
from chains.budget import Budget
from chains.configurable import DeclaredGenerator
from chains.errors import InputTooLong
from chains.knowledge.collections import Knowledge
from chains.prompts import load_prompt
from chains.schemas import drop_nulls
from chains.tenants.caller import NAME_PATTERN, tenant_of

CITATION = re.compile(r"\[(\d+)\]")
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
PARAGRAPH = re.compile(r"\n\s*\n")
HEADING = re.compile(r"^\s*#+\s+", re.MULTILINE)
NOT_FOUND = "The documents in {collection!r} do not say: no passage is close enough to the question."
QUOTE_CHOICES = 3  # sentences, closest to the question by the encoder, that a quoted answer picks from
Style = Literal["quote", "free"]


class AskInput(BaseModel):
    """Input of /ask."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=drop_nulls)  # the playground draws it

    question: str = Field(min_length=1, max_length=4000, description="The question to answer")
    collection: str = Field(pattern=NAME_PATTERN, description="The collection to answer from")
    k: int = Field(5, ge=1, le=20, description="Chunks to retrieve (as many as fit the budget are used)")
    filter: dict[str, Any] | None = Field(None, description="Metadata the chunks' documents must match")
    mode: Literal["hybrid", "vector", "text"] = "hybrid"
    style: Style | None = Field(
        None, description="quote: a sentence of a source; free: the model's own words (default: the server's)"
    )


class AskOutput(BaseModel):
    """Output of /ask (streamed: the answer's tokens, then the citations)."""

    answer: str
    content: str = Field(
        "", description="The run as a person reads it (the playground shows it): the answer, then its sources"
    )
    citations: list[dict] = Field(description="The sources the answer cites: n, document_id, text, page, ...")
    sources: list[dict] = Field(description="Every source the model was given, numbered as in the answer")
    sources_used: int = Field(description="Chunks that fit the token budget and were given to the model")
    retrieved: int = Field(description="Chunks retrieved")
    found: bool = Field(description="False when no chunk was close enough to answer from")
    style: str = Field(description="quote or free")
    collection: str


def free_pattern(count: int) -> str:
    """Any text whose [ and ] only make citations of sources 1..count."""
    number = "(" + "|".join(str(n) for n in range(count, 0, -1)) + ")"
    return rf"([^\[\]]|\[{number}\])*"


def quote_pattern(choices: list[tuple[int, str]]) -> str:
    """One of the (source number, sentence) choices, as "[n] sentence"."""
    return "|".join(rf"\[{n}\] {re.escape(sentence)}" for n, sentence in choices)


def sentences(text: str) -> list[str]:
    """A chunk's sentences, paragraph by paragraph (Markdown heading marks dropped, whitespace made single
    spaces), at least three words each."""
    found = []
    for paragraph in PARAGRAPH.split(text):
        flat = " ".join(HEADING.sub("", paragraph).split())
        found += [part for part in SENTENCE_END.split(flat) if len(part.split()) >= 3]
    return found


def sources_text(citations: list[dict]) -> str:
    """The cited sources as a person reads them under the answer."""
    lines = []
    for citation in citations:
        page = f", page {citation['page']}" if citation.get("page") else ""
        excerpt = " ".join(citation["text"].split())
        excerpt = excerpt if len(excerpt) <= 240 else excerpt[:240] + "..."
        lines.append(f"[{citation['n']}] {citation['document_id']}{page}: {excerpt}")
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def render_sources(sources: list[dict]) -> str:
    """The numbered sources as the prompt shows them."""
    return "\n\n".join(f"[{n}] {' '.join(s['text'].split())}" for n, s in enumerate(sources, start=1))


def messages_for(question: str, sources: list[dict], style: Style = "free") -> list[BaseMessage]:
    """The model call for `question` over `sources`."""
    system = load_prompt("ask_quote" if style == "quote" else "ask_system")
    asked = load_prompt("ask_question").format(sources=render_sources(sources), question=question)
    return [SystemMessage(content=system), HumanMessage(content=asked)]


def fitting(
    budget: Budget, max_new_tokens: int, question: str, results: list[dict], style: Style
) -> list[dict]:
    """The best results that fit the budget together with the prompt (413 when not even one does)."""
    limit, kept = budget.limit(max_new_tokens), []
    for result in results:
        if budget.count_messages(messages_for(question, [*kept, result], style)) > limit:
            break
        kept.append(result)
    if not kept:
        needed = budget.count_messages(messages_for(question, results[:1], style))
        budget.check(needed, max_new_tokens)  # raises InputTooLong with the numbers
        raise InputTooLong(f"the question and one source do not fit the budget of {limit} tokens")
    return kept


def relevant(results: list[dict], min_score: float, mode: str) -> bool:
    """Whether the best chunk is close enough to answer from (text mode: any full-text match)."""
    if mode == "text":
        return bool(results)
    scores = [r["vector_score"] for r in results if r["vector_score"] is not None]
    return bool(scores) and max(scores) >= min_score


def cited(answer: str, sources: list[dict]) -> list[dict]:
    """The sources the answer names, in the order of their numbers."""
    numbers = sorted({int(n) for n in CITATION.findall(answer) if 1 <= int(n) <= len(sources)})
    return [{"n": n, **sources[n - 1]} for n in numbers]


def quote_choices(
    knowledge: Knowledge, question: str, sources: list[dict], fits: Any = lambda text: True
) -> list[tuple[int, str]]:
    """The sentences of `sources` closest to the question by the encoder, with their source numbers, each
    cut at a word so that `fits("[n] sentence")` (the reply's token room)."""
    candidates = [(n, text) for n, s in enumerate(sources, start=1) for text in sentences(s["text"])]
    if not candidates:
        candidates = [(n, " ".join(s["text"].split())) for n, s in enumerate(sources, start=1)]
    vectors = knowledge.embeddings.embed([question] + [text for _, text in candidates], truncate=True).vectors
    scores = np.asarray(vectors[1:]) @ np.asarray(vectors[0])
    chosen = [candidates[i] for i in np.argsort(-scores, kind="stable")[:QUOTE_CHOICES]]
    return [(n, _cut_to_fit(n, text, fits)) for n, text in chosen]


def _cut_to_fit(n: int, text: str, fits: Any) -> str:
    words = text.split()
    while len(words) > 1 and not fits(f"[{n}] {' '.join(words)}"):
        words = words[: max(1, len(words) * 3 // 4)]
    return " ".join(words)


def ask_style(settings: Any) -> Style:
    """HFCHAIN_ASK_STYLE, with auto decided: quote for the embedded model, free for a model you name."""
    if settings.ask_style != "auto":
        return settings.ask_style
    return "quote" if settings.backend == "local" and not settings.model else "free"


def build_ask_chain(
    knowledge: Knowledge, backend: Backend, min_score: float, style: Style = "free"
) -> Runnable:
    """{"question", "collection", "k"?} -> {"answer", "citations", ...}; streams the answer's tokens.
    `style`: the default answer style (quote needs the local backend's grammars)."""
    model = backend.configurable_chat_model()
    constrained = backend.engine is not None  # grammars run on the local backend

    def transform(inputs: Iterator[dict], config: RunnableConfig) -> Iterator[AddableDict]:
        value = AskInput.model_validate(next(iter(inputs)))
        chosen: Style = (value.style or style) if constrained else "free"
        results = knowledge.search(
            tenant_of(config), value.collection, value.question, value.k, value.filter, value.mode
        )
        done = {"retrieved": len(results), "collection": value.collection, "style": chosen}
        if not relevant(results, min_score, value.mode):
            text = NOT_FOUND.format(collection=value.collection)
            found = {"citations": [], "sources": [], "sources_used": 0, "found": False}
            yield AddableDict(answer=text, content=text, **found, **done)
            return
        sources = fitting(
            backend.budget(), backend.max_new_tokens_of(config), value.question, results, chosen
        )
        concrete, call_config = model.prepare(config)
        if chosen == "quote":
            room, tokens = backend.max_new_tokens_of(config) - 4, backend.budget().tokens
            choices = quote_choices(
                knowledge, value.question, sources, lambda t: tokens.count_text(t) <= room
            )
            pattern = quote_pattern(choices)
        else:
            pattern = free_pattern(len(sources))
        if constrained:
            concrete = concrete.bind(response_format={"type": "regex", "value": pattern})
        reply = None
        yield AddableDict(answer="", content="")
        for chunk in concrete.stream(messages_for(value.question, sources, chosen), call_config):
            reply = chunk if reply is None else reply + chunk
            if chunk.content:
                yield AddableDict(answer=chunk.content, content=chunk.content)
        answer = (reply or AIMessage(content="")).content
        citations, numbered = cited(answer, sources), [{"n": n, **s} for n, s in enumerate(sources, start=1)]
        found = {"sources": numbered, "sources_used": len(sources), "found": True}
        yield AddableDict(citations=citations, content=sources_text(citations), **found, **done)

    async def atransform(inputs: AsyncIterator[dict], config: RunnableConfig) -> AsyncIterator[AddableDict]:
        values = [value async for value in inputs]
        steps = transform(iter(values), config)
        while (step := await asyncio.to_thread(next, steps, None)) is not None:  # keeps the contextvars
            yield step

    chain = DeclaredGenerator(transform, atransform, model.config_specs, name="ask")
    return chain.with_types(input_type=AskInput, output_type=AskOutput)
