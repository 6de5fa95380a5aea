"""Encoder requests per second, batched vs not, with 1 and 8 concurrent clients (in-process, the packaged
MiniLM encoder on CPU, on torch and on the default runtime, ONNX fp32): zero-shot classification
(`/classify`'s embedding method, one short text per request) and embeddings (`/v1/embeddings`' service,
one short text per request). Rounds interleave the two modes so both see the same machine load; the
table has the median of the rounds.

Usage: .venv/bin/python benchmarks/encoders.py [--requests 160] [--rounds 3] [--runtimes torch,auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chains.backends.batching import BatchedEncoder  # noqa: E402
from chains.backends.encoder import Encoder  # noqa: E402
from chains.classify.chain import ClassifyInput  # noqa: E402
from chains.classify.methods import EmbeddingMethod  # noqa: E402
from chains.knowledge.embeddings import EmbeddingService  # noqa: E402

LABELS = ["sports", "politics", "technology", "cooking"]


def texts(n: int) -> list[str]:
    return [
        f"Story {i}: the team won the match after a late goal, and the coach praised them." for i in range(n)
    ]


def rate(call, items: list[str], clients: int) -> float:
    """Requests per second: `clients` threads, one item per request."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(call, items))
    return len(items) / (time.perf_counter() - started)


def cases(encoder: Encoder) -> dict:
    """(not batched, batched) request functions for zero-shot classification and embeddings."""
    value = ClassifyInput(text="x", labels=LABELS)
    plain, batched = EmbeddingMethod(encoder), EmbeddingMethod(BatchedEncoder(encoder))
    plain.anchors(value), batched.anchors(value)
    single, pooled = EmbeddingService(encoder, max_batch=1), EmbeddingService(encoder, max_batch=64)
    return {
        "classify (zero-shot)": (lambda t: plain.scores([t], value), lambda t: batched.scores([t], value)),
        "embeddings": (lambda t: single.embed([t]), lambda t: pooled.embed([t])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtimes", default="torch,auto", help="encoder runtimes (HFCHAIN_ENCODER_RUNTIME)")
    args = parser.parse_args()
    items = texts(args.requests)
    print(
        "| runtime | requests | clients | not batched, req/s | batched, req/s | batched / not |\n"
        "|---|---|---|---|---|---|"
    )
    for runtime in args.runtimes.split(","):
        encoder = Encoder(runtime=runtime)
        encoder.embed(["warm up"])
        for name, (off, on) in cases(encoder).items():
            for clients in (1, 8):
                rates = {"off": [], "on": []}
                for _ in range(args.rounds):
                    rates["off"].append(rate(off, items, clients))
                    rates["on"].append(rate(on, items, clients))
                a, b = statistics.median(rates["off"]), statistics.median(rates["on"])
                label = encoder.runtime_label
                print(f"| {label} | {name} | {clients} | {a:.1f} | {b:.1f} | {b / a:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
