"""Prompts as token ids, exactly as they are sent: template tokens are special, user text never is.

`Tokens` wraps the model's own tokenizer; `EstimatedTokens` stands in, conservatively, where no
tokenizer is available (an endpoint without HFCHAIN_TOKENIZER). Both count the same things.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any

_SLOT = re.compile("\ue000(\\d+)\ue001")  # private-use marks around a message index


class Tokens:
    """Encode text and chat prompts with the model's tokenizer; counting = encoding."""

    method = "tokenizer"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        # a fast tokenizer's truncation/padding state is shared: calls from threads must not interleave
        self._lock = threading.RLock()

    def text_ids(self, text: str) -> list[int]:
        """User text: special-token strings such as <|im_end|> stay plain text."""
        return self._encode(text, add_special_tokens=False)

    def prompt_ids(self, text: str) -> list[int]:
        """A raw prompt (no chat template): user text plus the tokenizer's own BOS/EOS rules."""
        return self._encode(text, add_special_tokens=True)

    @property
    def renders_tools(self) -> bool:
        """Whether the chat template has a syntax of its own for tools (it reads a `tools` variable)."""
        template = getattr(self.tokenizer, "chat_template", None) or ""
        return "tools" in (template if isinstance(template, str) else str(template))

    def chat_ids(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """A conversation through the chat template, each message's content encoded as user text;
        `tools` (OpenAI function tools) go to a template that renders them."""
        slots = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
        extra = {"tools": tools} if tools else {}
        rendered = self.tokenizer.apply_chat_template(
            slots, tokenize=False, add_generation_prompt=True, **extra
        )
        ids: list[int] = []
        for i, piece in enumerate(_SLOT.split(rendered)):
            if i % 2:  # a slot: the message's content
                ids += self.text_ids(messages[int(piece)]["content"])
            elif piece:  # template text: its special tokens are meant
                with self._lock:
                    ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
        return ids

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of `text` (as user text)."""
        with self._lock:
            encoded = self.tokenizer(
                text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True
            )
        return [tuple(span) for span in encoded["offset_mapping"]]

    def count_text(self, text: str) -> int:
        """Tokens of user text."""
        return len(self.text_ids(text))

    def count_prompt(self, text: str) -> int:
        """Tokens of a raw prompt as sent."""
        return len(self.prompt_ids(text))

    def count_chat(self, messages: list[dict[str, str]]) -> int:
        """Tokens of a conversation as sent, chat template included."""
        return len(self.chat_ids(messages))

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        with self._lock:
            encoded = self.tokenizer(text, add_special_tokens=add_special_tokens, split_special_tokens=True)
        return encoded["input_ids"]


class EstimatedTokens:
    """A conservative stand-in: one token per 3 UTF-8 bytes, plus 10% and a per-message overhead.

    Byte-level BPE tokenizers average about 4 bytes per token on English prose, so this over-counts
    English by about a third; it stays an over-count for CJK text (3 bytes per character). Counts
    are for budgeting only; configure HFCHAIN_TOKENIZER for exact ones.
    """

    method = "estimate"
    per_message = 8  # role markers and separators of common chat templates

    def count_text(self, text: str) -> int:
        """Estimated tokens of user text (never below the character count / 4)."""
        return math.ceil(len(text.encode("utf-8")) / 3 * 1.1)

    def count_prompt(self, text: str) -> int:
        """Estimated tokens of a raw prompt."""
        return self.count_text(text) + 1

    def count_chat(self, messages: list[dict[str, str]]) -> int:
        """Estimated tokens of a conversation with its template."""
        return sum(self.count_text(m["content"]) + self.per_message for m in messages) + self.per_message

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Pseudo-tokens of 3 characters each (whole characters, so spans stay valid)."""
        return [(i, min(i + 3, len(text))) for i in range(0, len(text), 3)]
