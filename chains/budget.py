"""Token budgets: what fits the context with room for the reply, checks, history trimming, splitting."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, trim_messages

from chains.errors import InputTooLong
from chains.messages import to_chat_dicts
from chains.tokens import EstimatedTokens, Tokens

# Natural cut points, best first: paragraph, line, sentence end, any space (then a token boundary).
BOUNDARIES = [
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n\s*"),
    re.compile(r"[.!?;:\u2026\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*\s+"),
    re.compile(r"\s+"),
]
ADVICE = "shorten the input, lower max_new_tokens, or send long text to /summarize"


@dataclass(frozen=True)
class Budget:
    """Room in the model's context: prompt tokens as sent + max_new_tokens + margin <= context."""

    tokens: Tokens | EstimatedTokens
    context_window: int
    margin: int = 16
    max_input: int | None = None  # HFCHAIN_MAX_INPUT_TOKENS: a cap below what the context allows

    @property
    def counting(self) -> str:
        """'tokenizer' (exact) or 'estimate' (conservative)."""
        return self.tokens.method

    def limit(self, max_new_tokens: int) -> int:
        """Most prompt tokens (as sent, template included) a call may have."""
        room = self.context_window - max_new_tokens - self.margin
        return min(room, self.max_input) if self.max_input else room

    def check(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Raise InputTooLong (HTTP 413) with the numbers when the prompt cannot fit."""
        limit = self.limit(max_new_tokens)
        if prompt_tokens > limit:
            why = (
                f"this server's HFCHAIN_MAX_INPUT_TOKENS={self.max_input}"
                if self.max_input and limit == self.max_input
                else f"context window {self.context_window} - max_new_tokens {max_new_tokens} - margin "
                f"{self.margin}"
            )
            raise InputTooLong(
                f"the input is {prompt_tokens} tokens but only {max(limit, 0)} fit ({why}): {ADVICE}",
                prompt_tokens=prompt_tokens,
                budget=max(limit, 0),
                context_window=self.context_window,
                max_new_tokens=max_new_tokens,
                margin=self.margin,
                counting=self.counting,
            )

    def count_messages(self, messages: list[BaseMessage]) -> int:
        """Tokens of a conversation as sent."""
        return self.tokens.count_chat(to_chat_dicts(messages))

    def fit_history(self, messages: list[BaseMessage], max_new_tokens: int) -> tuple[list[BaseMessage], int]:
        """Keep the system message and the newest turns that fit; return them and how many were dropped."""
        limit = self.limit(max_new_tokens)
        if self.count_messages(messages) <= limit:
            return list(messages), 0
        kept = trim_messages(
            messages,
            max_tokens=limit,
            token_counter=self.count_messages,
            strategy="last",
            include_system=True,
            allow_partial=False,
        )
        if not kept or kept[-1] is not messages[-1]:  # even the newest message alone does not fit
            self.check(self.count_messages(_system_and_last(messages)), max_new_tokens)
        return kept, len(messages) - len(kept)


def _system_and_last(messages: list[BaseMessage]) -> list[BaseMessage]:
    head = [messages[0]] if messages[0].type == "system" and len(messages) > 1 else []
    return [*head, messages[-1]]


@dataclass(frozen=True)
class Chunk:
    """A piece of the text: text[start:end], and its tokens as it will be sent."""

    text: str
    start: int
    end: int
    tokens: int


def split_text(
    text: str,
    tokens: Tokens | EstimatedTokens,
    limit: int,
    measure: Callable[[str], int] | None = None,
    overlap: int = 0,
) -> list[Chunk]:
    """Cut `text` into chunks whose measure (default: their own tokens) is at most `limit`.

    `measure` should count a chunk as it will be sent (e.g. rendered inside its prompt): each chunk
    is checked with it after cutting, and cut shorter until it fits. Cuts prefer paragraph, line,
    sentence and word boundaries, then token boundaries. `overlap` tokens are repeated at the
    start of the next chunk. Chunks cover the whole text in order.
    """
    measure = measure or tokens.count_text
    room = limit - measure("")
    if room < 1:
        raise InputTooLong(f"no room for any text: the prompt alone is over the budget of {limit}")
    starts = [start for start, _ in tokens.offsets(text)]
    chunks: list[Chunk] = []
    pos = 0
    while pos < len(text):
        chunk = _fitting_chunk(text, starts, pos, room, limit, measure)
        chunks.append(chunk)
        pos = _next_start(starts, pos, chunk.end, overlap) if chunk.end < len(text) else len(text)
    return chunks


def _fitting_chunk(
    text: str, starts: list[int], pos: int, room: int, limit: int, measure: Callable[[str], int]
) -> Chunk:
    """The longest well-cut chunk from `pos` that measures at most `limit`."""
    size = min(room, len(starts) + 1)
    while True:
        end = _cut(text, starts, pos, size)
        count = measure(text[pos:end])
        if count <= limit:
            return Chunk(text[pos:end], pos, end, count)
        if size == 1:
            raise InputTooLong(f"a single token at character {pos} does not fit the budget of {limit}")
        size = max(1, min(size - (count - limit), size - 1))


def _cut(text: str, starts: list[int], pos: int, size: int) -> int:
    """End of a chunk from `pos` holding about `size` tokens, at the best boundary in its second half."""
    first = bisect_left(starts, pos)
    if first + size >= len(starts):
        return len(text)
    hard_end = starts[first + size]  # the token there would be one too many
    floor = max(pos + 1, starts[first + max(1, size // 2)])
    for pattern in BOUNDARIES:
        last = None
        for match in pattern.finditer(text, floor, hard_end):
            last = match.end()
        if last is not None and last <= hard_end:
            return last
    return max(hard_end, pos + 1)


def _next_start(starts: list[int], pos: int, end: int, overlap: int) -> int:
    """Where the next chunk begins: `overlap` tokens before `end`, but always after `pos`."""
    if overlap <= 0:
        return end
    back = bisect_left(starts, end) - overlap
    start = starts[back] if 0 <= back < len(starts) else end
    return start if pos < start <= end else end
