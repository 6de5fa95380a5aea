"""Scores to probabilities: softmax across labels, independent sigmoids, token-weighted chunk means."""

from __future__ import annotations

import math
from collections.abc import Sequence


def softmax(scores: Sequence[float], temperature: float = 1.0) -> list[float]:
    """Probabilities that sum to 1 (numerically stable)."""
    scaled = [s / temperature for s in scores]
    top = max(scaled)
    exps = [math.exp(s - top) for s in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def sigmoid(score: float, center: float = 0.0, temperature: float = 1.0) -> float:
    """An independent probability for one label."""
    z = (score - center) / temperature
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def weighted_mean(distributions: Sequence[dict[str, float]], weights: Sequence[int]) -> dict[str, float]:
    """Combine per-chunk distributions, each weighted by its tokens."""
    total = sum(weights) or 1
    labels = distributions[0].keys()
    return {
        label: sum(d[label] * w for d, w in zip(distributions, weights, strict=True)) / total
        for label in labels
    }
