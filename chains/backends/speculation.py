"""Speculative decoding with prompt lookup: drafts copied from the row's own context, checked by the model.

A row whose last few tokens occurred earlier in its prompt or reply proposes the tokens that followed
them there (n-gram prompt lookup: no draft model). The decoder feeds the row's last token and its drafts
in one forward pass; `accept` keeps the drafts the model agrees with and adds the model's own next token,
so a step yields 1 to 1 + len(drafts) tokens.

A row keeps a draft while it is the token the row would have chosen: the argmax when greedy, its
Gumbel-max sample when sampling (sampling.py: the noise depends only on the row's seed and the reply
position). The reply is then token for token the one decoding without drafts gives, greedy or seeded,
and every sampled token still follows the row's distribution.

A row drafts only while it pays: its draft length grows while drafts are accepted and shrinks when they
fail, and a row whose drafts keep failing pauses drafting for a while (longer each time). What pays
depends on the runtime: where checking drafts costs little (ONNX Runtime: 1.2x a one-token step for 4
drafts) rows also draft from one-token matches and never pause; on torch (about 1.4x) they do not.
"""

from __future__ import annotations

from typing import Any

from chains.backends.sampling import scores

MIN_NGRAM, MAX_NGRAM = 2, 4  # suffix lengths looked up, longest first
MIN_DRAFT, MAX_DRAFT = 4, 12  # tokens drafted at once (the length adapts within these)
PAUSE_AFTER = 3  # drafts rejected outright in a row before a row pauses drafting
FIRST_PAUSE, LONGEST_PAUSE = 4, 64  # steps a row pauses (doubling each time, up to the longest)


class Drafter:
    """One row's prompt-lookup index and its drafting state."""

    def __init__(
        self, context: list[int], min_ngram: int = MIN_NGRAM, pause_after: int = PAUSE_AFTER
    ) -> None:
        self.min_ngram, self.pause_after = min_ngram, pause_after  # a runtime's own (Decoder.drafting)
        self.ids: list[int] = []
        self.index: dict[tuple[int, ...], int] = {}  # n-gram -> start of what followed it last time
        self.length = MIN_DRAFT
        self.misses = self.paused = 0
        self.pause = FIRST_PAUSE
        self.drafted = self.accepted = 0  # totals, for metrics and tests
        self.extend(context)

    def extend(self, tokens: list[int]) -> None:
        """Add tokens to the context (the index learns each n-gram once the token after it is known)."""
        for token in tokens:
            end = len(self.ids)
            for n in range(self.min_ngram, MAX_NGRAM + 1):
                if end >= n:
                    self.index[tuple(self.ids[end - n : end])] = end
            self.ids.append(token)

    def propose(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the longest earlier occurrence of the context's end."""
        if self.paused:
            self.paused -= 1
            return []
        limit = min(limit, self.length)
        if limit <= 0:
            return []
        for n in range(MAX_NGRAM, self.min_ngram - 1, -1):
            start = self.index.get(tuple(self.ids[-n:])) if len(self.ids) >= n else None
            if start is not None:
                return self.ids[start : start + limit]
        return []

    def record(self, drafted: int, accepted: int) -> None:
        """Adapt to how a draft fared: longer after full acceptance, paused after repeated misses."""
        self.drafted, self.accepted = self.drafted + drafted, self.accepted + accepted
        if accepted == drafted:
            self.length = min(MAX_DRAFT, self.length * 2)
            self.misses, self.pause = 0, FIRST_PAUSE
            return
        self.length = max(MIN_DRAFT, accepted + 1)
        self.misses = self.misses + 1 if accepted == 0 else 0
        if self.misses >= self.pause_after:
            self.paused, self.misses = self.pause, 0
            self.pause = min(LONGEST_PAUSE, self.pause * 2)


def accept(logits: Any, drafts: list[int], row: Any) -> list[int]:
    """The tokens a row keeps from one verifying pass: the drafts it would have chosen itself, then its
    own next token.

    `logits` (1 + len(drafts), vocab) are the model's scores after the row's last token and after each
    draft. Greedy rows compare with the argmax, sampled rows with their sample (sampling.py), so a
    reply is token for token what decoding without drafts gives.
    """
    kept = []
    for position in range(len(drafts) + 1):
        token = int(scores(logits[position], row, row.generated + position).argmax())
        kept.append(token)
        if position == len(drafts) or token != drafts[position]:
            return kept
    return kept
