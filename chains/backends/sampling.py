"""Choosing each row's next token: greedy, or sampled with the row's temperature and top_p.

Sampling is Gumbel-max: the token is the argmax of log p plus Gumbel noise, an exact draw from p. The
noise of a row's n-th reply token comes from (the row's seed, n) alone, so a seeded reply is the same
whatever else shares the batch and whether or not drafts were checked (speculation.py): a draft is kept
exactly when it is the token the row would have sampled.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from chains.backends.logprobs import scored

MIN_TEMPERATURE = 1e-4  # below it, sampling is greedy (and 1/T would overflow)
_MIX = 0x9E3779B97F4A7C15  # spreads (seed, position) over the generator's seeds


class Noise:
    """One row's source of Gumbel noise, by reply position; seeded, or random per row."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = random.getrandbits(63) if seed is None else seed

    def at(self, position: int, size: int) -> Any:
        """Gumbel noise for the row's reply token number `position` (the same every time)."""
        generator = torch.Generator().manual_seed((self.seed * _MIX + position) % 2**63)
        uniform = torch.rand(size, generator=generator, dtype=torch.float64).clamp_(min=1e-300)
        return -torch.log(-torch.log(uniform))


def distribution(logits: Any, temperature: float, top_p: float) -> Any:
    """The probabilities a row samples from (temperature, then nucleus), or None when degenerate."""
    probs = torch.softmax(logits.double() / temperature, -1)
    if top_p < 1:
        ordered, order = probs.sort(descending=True)
        outside = ordered.cumsum(-1) - ordered > top_p  # keep the smallest set reaching top_p
        ordered[outside] = 0
        probs = torch.zeros_like(probs).scatter(0, order, ordered)
    total = float(probs.sum())
    if not bool(torch.isfinite(probs).all()) or total <= 0:
        return None
    return probs / total


def scores(logits: Any, row: Any, position: int) -> Any:
    """Scores whose argmax is the row's token at reply `position`: the logits when greedy, else log p
    plus the row's noise for that position (the logits again when p is degenerate)."""
    if row.temperature < MIN_TEMPERATURE:
        return logits
    probs = distribution(logits, row.temperature, row.top_p)
    if probs is None:  # degenerate logits: one row must not fail the whole batch
        return logits
    noise = getattr(row, "noise", None) or Noise()
    return probs.log() + noise.at(position, probs.shape[-1]).to(probs.device)


def pick(logits: Any, rows: list[Any]) -> Any:
    """The next token per row (row i's logits in logits[i]); a row with a grammar picks among what it
    allows, and only what still lets its structure close in the row's remaining tokens. A row asking for
    log-probabilities gets them in its `scored` list."""
    tokens = torch.zeros(len(rows), dtype=torch.long, device=logits.device)
    for i, row in enumerate(rows):
        constraint = getattr(row, "constraint", None)
        live = constraint is not None and not getattr(row, "done", False)
        if live:
            constraint.mask(logits[i])
        tokens[i] = scores(logits[i], row, getattr(row, "generated", 0)).argmax()
        if live:  # a structure that still closes in time
            tokens[i] = constraint.fit(int(tokens[i]), logits[i], row.remaining)
        if getattr(row, "logprobs", None) is not None:  # read after the grammar's mask
            row.scored.append(scored(logits[i], row, int(tokens[i]), row.logprobs))
    return tokens
