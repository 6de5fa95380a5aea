"""One row's grammar: masks its logits, follows its tokens, and keeps the structure finishable.

Two guards run on every constrained row that writes a structure (JSON, tool calls, regular expressions):
- budget: a token is taken only if the structure can still close in the tokens left after it; when the
  likeliest few cannot, the closing path's next token is forced (closing.py). So a reply is whole whenever
  the shortest one fits in max_new_tokens, and the engine refuses a request whose limit cannot hold it.
- repetition: the same few tokens again and again inside a JSON string or container end that string or
  container (by the closing path), and the model goes on from there.
Free-text grammars (no structure) are left alone.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from chains.tools.closing import ALTERNATIVES, Closer, JsonScan, Vocabulary

log = logging.getLogger(__name__)

MAX_PERIOD = 8  # longest repeated unit, in tokens, the repetition guard looks for
LEAST = 16  # tokens a repetition spans at least (digits are one token each: 10 zeros are a number)
STRING_TIMES, ITEM_TIMES = 4, 8  # repeats that end a string, and array items (one-hot vectors repeat)


def repeats(span: list[int], times: int = STRING_TIMES, least: int = LEAST) -> bool:
    """Whether `span` ends in one unit of 1-8 tokens said `times` times in a row, over `least` tokens."""
    for period in range(1, MAX_PERIOD + 1):
        need = max(period * times, least)
        if len(span) < need:
            continue
        tail = span[-need:]
        if tail[period:] == tail[:-period]:
            return True
    return False


class Constraint:
    """One row's matcher with its budget and repetition guards; `kind` is json, tools, regex or text."""

    def __init__(
        self,
        matcher: Any,
        vocab: Vocabulary,
        kind: str = "json",
        budget: bool = True,
        repetition: bool = True,
    ) -> None:
        self.matcher, self.vocab, self.kind = matcher, vocab, kind
        self.closer = Closer(vocab)
        self.bitmask = np.full((1, (vocab.size + 31) // 32), -1, dtype=np.int32)
        self.scan = JsonScan({"json": "json", "tools": "text"}.get(kind, "off"))
        self.ids: list[int] = []
        self.structure = not matcher.is_accepting()  # an empty reply is not whole (free text's is)
        self.guarded, self.repetition = budget and kind != "text", repetition and kind != "text"
        self.path: list[int] | None = self.closer.path(matcher, self.scan) if self.guarded else None
        if self.guarded and self.path is None:
            log.debug("no closing path for this grammar: its row runs without the budget guard")
            self.guarded = False
        self.minimum = len(self.path or [])  # tokens the shortest whole reply takes (an upper bound)
        self._next: tuple[int, list[int] | None] | None = None  # (token fit chose, path after it)
        self.closing: tuple[int, bool] | None = None  # repetition guard: (depth, a string) to close
        self.forced = self.repeats = 0  # tokens the guards chose instead of the model; strings ended

    def mask(self, logits: Any) -> None:
        """Forbid (in place) every token the grammar does not allow next."""
        import llguidance.numpy
        import torch

        llguidance.numpy.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        bits = np.unpackbits(self.bitmask[0].view(np.uint8), bitorder="little")[: logits.shape[-1]]
        allowed = torch.from_numpy(bits.astype(bool)).to(logits.device)
        logits.masked_fill_(~allowed, float("-inf"))

    def fit(self, token: int, logits: Any, remaining: int) -> int:
        """`token` (picked from the masked `logits`), or the likeliest token after which the structure
        still closes within the `remaining` tokens (this one included), or the closing path's next."""
        if token in self.vocab.eos or not (self.guarded or self.closing is not None):
            return token
        try:
            return self._fit(token, logits, remaining)
        except BaseException as error:  # a Rust panic is a BaseException: this row's guards, not the batch
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            log.exception("the constrained-reply guards failed; this row continues without them")
            self.guarded, self.repetition, self.closing, self._next = False, False, None, None
            return token

    def _fit(self, token: int, logits: Any, remaining: int) -> int:
        path = self._current_path()
        if path is None:
            return token
        if self.closing is not None or remaining <= len(path):
            return self._take(path[0] if path else self.vocab.eos[0], token, path[1:] if path else [])
        if path and token == path[0]:
            return self._take(token, token, path[1:])
        if len(path) <= remaining - 1 and self._keeps_path(token, path):
            return self._take(token, token, path)
        for candidate in self._candidates(token, logits):
            after = self._path_after(candidate)
            if after is not None and len(after) <= remaining - 1:
                return self._take(candidate, token, after)
        return self._take(path[0] if path else self.vocab.eos[0], token, path[1:] if path else [])

    def consume(self, token: int) -> bool:
        """Follow the chosen token; False if the grammar refuses it (never, after mask() and fit())."""
        accepted = bool(self.matcher.consume_token(token))
        chosen, self._next = self._next, None
        self.path = chosen[1] if chosen and chosen[0] == token else None
        self.ids.append(token)
        self.scan.feed(self.vocab.bytes[token] if 0 <= token < self.vocab.size else b"")
        self._watch_repetition()
        return accepted

    @property
    def stopped(self) -> bool:
        """The grammar allows nothing more: the reply is complete."""
        return bool(self.matcher.is_stopped())

    @property
    def complete(self) -> bool:
        """What was generated is a whole sentence of the grammar."""
        return bool(self.matcher.is_accepting())

    def _take(self, token: int, wanted: int, after: list[int] | None) -> int:
        if token != wanted:
            self.forced += 1
        self._next = (token, after)
        return token

    def _current_path(self) -> list[int] | None:
        if self.path is None:
            self.path = self.closer.path(self.matcher, self.scan)
            if self.path is None:  # not found from here: the row goes on unguarded (never searched again)
                log.warning("no closing path found mid-reply; this row continues without the guards")
                self.guarded, self.repetition, self.closing = False, False, None
        return self.path

    def _keeps_path(self, token: int, path: list[int]) -> bool:
        """Whether `token` leaves the closing path as it is, without recomputing it: plain characters
        inside a value string that could close now and still can after them (what follows the string
        does not depend on its content). Most tokens of a JSON reply are such; this keeps the guard cheap."""
        data, scan = self.vocab.bytes[token], self.scan
        if scan.state != "string" or scan.key or not data or b'"' in data or b"\\" in data:
            return False
        if not path or not self.vocab.bytes[path[0]].startswith(b'"'):
            return False
        matcher = self.matcher.deep_copy()  # the whole path must still lead to a whole reply: a string's
        if not matcher.consume_token(token):  # content can pick an anyOf branch, and with it what follows
            return False
        return all(matcher.consume_token(t) for t in path) and matcher.is_accepting()

    def _path_after(self, token: int) -> list[int] | None:
        matcher = self.matcher.deep_copy()
        if not matcher.consume_token(token):
            return None
        scan = self.scan.copy()
        scan.feed(self.vocab.bytes[token])
        return self.closer.path(matcher, scan)

    def _candidates(self, token: int, logits: Any) -> list[int]:
        """The picked token, then the likeliest others the grammar allows."""
        import torch

        values, order = torch.topk(logits, min(ALTERNATIVES + 1, logits.shape[-1]))
        others = [int(t) for v, t in zip(values.tolist(), order.tolist(), strict=True) if v != float("-inf")]
        return [token, *[t for t in others if t != token and t not in self.vocab.eos][:ALTERNATIVES]]

    def _watch_repetition(self) -> None:
        scan = self.scan
        if self.closing is not None:
            depth, string = self.closing
            if (scan.string is None and scan.depth <= depth) if string else scan.depth < depth:
                self.closing = None
            return
        if not self.repetition or scan.mode != "json":
            return
        if scan.string is not None:  # inside a string: its own tokens
            times, start = STRING_TIMES, scan.string
        elif scan.stack and scan.stack[-1][0] == b"[" and scan.expect == "value":  # after an item's comma
            times, start = ITEM_TIMES, scan.stack[-1][1]
        else:  # objects (their keys are the schema's) and numbers are never cut
            return
        if repeats(self.ids[start + 1 :], times):
            self.closing, self.repeats = (scan.depth, scan.string is not None), self.repeats + 1
