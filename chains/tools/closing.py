"""Constrained replies that always finish: the shortest way to close what a row has written, a budget guard
that keeps that within the row's remaining tokens, and a repetition guard that ends degenerate strings.

The closing path comes from the grammar's own matcher (llguidance), driven by a small policy that knows JSON's
lexical state: inside a string it closes the string, where a value is due it writes the smallest one, after
a value it closes the containers; whatever the grammar forces (required keys, the call's end tag) is taken
as forced. The path is an upper bound on the shortest completion and is nearly tight for JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CALL_TAG = b"<tool_call>\n"
STUCK = 3  # the same token this many times in a row: the policy tries another kind of token
PATH_LIMIT = 512  # policy steps before a path counts as not found (the guards then stay off for that row)
ALTERNATIVES = 4  # the likeliest tokens tried, in order, before the closing path's own token is forced
SMALL_VALUES = ("0", '""', "[]", "{}", "null", "false", "true", '"', "[", "{")
# each also with the separator's space before it, and the space alone (when " 0" is not one token)
VALUES = (*(v for value in SMALL_VALUES for v in (value, f" {value}")), " ")
DIGITS = "1234567890"  # a number that must go on (after "." or "-"): 1 before 0, which can repeat forever


class Vocabulary:
    """One tokenizer's token bytes and the tokens the closing policy tries first in each lexical state."""

    def __init__(self, info: Any, vocab_size: int, eos: set[int]) -> None:
        self.size, self.eos = vocab_size, sorted(eos)
        self.bytes = [info.decode_bytes([i]) for i in range(vocab_size)]
        special = [info.is_special_token(i) for i in range(vocab_size)]
        self.lengths = np.array([-1 if s else len(b) for b, s in zip(self.bytes, special, strict=True)])
        quote_closer = lambda b: b[:1] == b'"' and b'""' not in b and set(b) <= set(b'"}]')  # noqa: E731
        self.quote_closers = self._ordered(quote_closer)
        self.closers = self._ordered(lambda b: bool(b) and set(b) <= set(b"}]"))
        by_text = {b: i for i, b in enumerate(self.bytes) if not special[i]}
        self.values = [by_text[v.encode()] for v in VALUES if v.encode() in by_text]
        # after a value: close what is open, else the comma to the next required item, else a digit
        commas_digits = [b",", b", ", *(d.encode() for d in DIGITS)]
        self.after = [*self.closers, *(by_text[c] for c in commas_digits if c in by_text)]
        self.first = {  # per lexical state, the tokens the policy tries first, in order
            "string": self.quote_closers,
            "value": self.values,
            "first": [*self.closers, *self.values],  # an empty array, when it may be
            "key": self.closers,
            "after": self.after,
        }

    def _ordered(self, keep: Any) -> list[int]:
        """Regular tokens whose bytes pass `keep`, longest first (each closes as much as it can)."""
        found = [i for i, b in enumerate(self.bytes) if self.lengths[i] > 0 and keep(b)]
        return sorted(found, key=lambda i: -len(self.bytes[i]))


class JsonScan:
    """JSON's lexical state, fed token by token: open containers and strings (with the token index that
    opened each), and whether a value, a key or something after a value comes next.

    mode "json" scans from the start; "text" waits for a `<tool_call>` tag and scans the call's JSON;
    "off" (regular expressions) scans nothing.
    """

    __slots__ = ("count", "escape", "expect", "key", "mode", "origin", "stack", "string", "tail")

    def __init__(self, mode: str) -> None:
        self.mode, self.origin, self.tail, self.count = mode, mode, b"", 0
        self.stack: list[tuple[int, int]] = []  # (b"{" or b"[", index of the token that opened it)
        self.string: int | None = None  # index of the token that opened the string being written
        self.escape, self.expect, self.key = False, "value", False  # key: the open string is a key

    def copy(self) -> JsonScan:
        other = JsonScan.__new__(JsonScan)
        other.mode, other.origin, other.tail = self.mode, self.origin, self.tail
        other.count, other.stack = self.count, list(self.stack)
        other.string, other.escape, other.expect, other.key = self.string, self.escape, self.expect, self.key
        return other

    @property
    def depth(self) -> int:
        return len(self.stack)

    @property
    def state(self) -> str:
        """What the policy sees: "string", "value", "first" (an array's first item or its end), "key",
        "after", or "none" (text, or no JSON)."""
        if self.mode != "json":
            return "none"
        if self.string is not None:
            return "string"
        return self.expect

    def innermost(self) -> int | None:
        """Index of the token that opened the innermost open string or container (None: nothing open)."""
        if self.mode != "json":
            return None
        if self.string is not None:
            return self.string
        return self.stack[-1][1] if self.stack else None

    def feed(self, data: bytes) -> None:
        """Follow one token's bytes."""
        index, self.count = self.count, self.count + 1
        for byte in data:
            if self.mode == "text":
                self.tail = (self.tail + bytes([byte]))[-len(CALL_TAG) :]
                if self.tail == CALL_TAG:
                    self.mode, self.expect, self.tail = "json", "value", b""
            elif self.mode == "json":
                self._byte(byte, index)

    def _byte(self, byte: int, index: int) -> None:
        if self.string is not None:
            if self.escape:
                self.escape = False
            elif byte == 0x5C:  # backslash
                self.escape = True
            elif byte == 0x22:  # the closing quote
                self.string, self.expect = None, "after"
            return
        char = bytes([byte])
        if char == b'"':
            self.string, self.key = index, self.expect == "key"
        elif char in b"{[":
            self.stack.append((char, index))
            self.expect = "key" if char == b"{" else "first"  # first: an array's first item, or its end
        elif char in b"}]":
            if self.stack:
                self.stack.pop()
            self.expect = "after"
            if not self.stack and self.origin == "text":  # the call's JSON is whole: back to text
                self.mode = "text"
        elif char in b" \t\r\n":
            pass  # whitespace changes nothing (an array stays at its first item)
        elif char == b":":
            self.expect = "value"
        elif char == b",":
            self.expect = "key" if self.stack and self.stack[-1][0] == b"{" else "value"
        else:
            self.expect = "after"  # a number or literal being written


class Closer:
    """The closing policy over a matcher: the tokens that finish the structure soonest from a state."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.bitmask = np.zeros((1, (vocab.size + 31) // 32), dtype=np.int32)

    def path(self, matcher: Any, scan: JsonScan) -> list[int] | None:
        """Tokens from this state to an accepting one (None when the policy finds none)."""
        import llguidance.numpy

        matcher, scan, path = matcher.deep_copy(), scan.copy(), []
        while not matcher.is_accepting():
            if matcher.is_stopped() or matcher.is_error() or len(path) > PATH_LIMIT:
                return None
            forced = matcher.compute_ff_tokens()
            if not forced:
                llguidance.numpy.fill_next_token_bitmask(matcher, self.bitmask, 0)
                stuck = path[-1] if len(path) >= STUCK and len(set(path[-STUCK:])) == 1 else None
                forced = [self._choose(self._allowed(), scan.state, stuck)]
            for token in forced:
                if not matcher.consume_token(token):
                    return None
                scan.feed(self.vocab.bytes[token])
                path.append(token)
        return path

    def _allowed(self) -> np.ndarray:
        bits = np.unpackbits(self.bitmask[0].view(np.uint8), bitorder="little")
        return bits[: self.vocab.size].astype(bool)

    def _choose(self, allowed: np.ndarray, state: str, stuck: int | None = None) -> int:
        """The policy's next token; `stuck`: a token it took again and again (a pattern such as
        ^[A-Z]+-[0-9]+$ goes on with letters forever): then the shortest allowed token without its bytes."""
        vocab = self.vocab
        for token in vocab.first.get(state, ()):
            if allowed[token]:
                return token
        candidates = np.flatnonzero(allowed)
        regular = candidates[vocab.lengths[candidates] > 0]
        if stuck is not None:
            fresh = [int(t) for t in regular if not set(vocab.bytes[t]) & set(vocab.bytes[stuck])]
            if fresh:
                return min(fresh, key=lambda t: vocab.lengths[t])
        if len(regular):  # the longest allowed token: finishes an enum, a pattern or a number soonest
            return int(regular[np.argmax(vocab.lengths[regular])])
        return int(candidates[0])
