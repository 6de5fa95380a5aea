"""Embeddings throughput: the served encoder over HTTP against sentence-transformers' own batch encode of
the same texts, side by side in one run (texts/s and the ratio).

- raw: `SentenceTransformer.encode(texts, batch_size=64)` in this process (the ceiling), and the same in
  calls of 8 texts in arrival order (the most 8 single-text clients can give a server to batch);
- /v1/embeddings with 1 client and with 8 clients, each request one text (what retrieval queries do), and
  1 client sending lists of 32 (what ingestion does); the server batches concurrent requests together.

Texts: sentences of the Hamlet excerpt in tests/fixtures (real prose, 5-60 tokens each).
Usage: .venv/bin/python benchmarks/knowledge.py [--texts 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_api import start_server  # noqa: E402
from benchmarks.startup import stop  # noqa: E402
from chains.backends.encoder import Encoder  # noqa: E402


def sentences(count: int) -> list[str]:
    text = (ROOT / "tests" / "fixtures" / "hamlet_excerpt.txt").read_text()
    pieces = [p.strip() for p in re.split(r"(?<=[.!?;])\s+", text) if len(p.strip()) > 20]
    return [pieces[i % len(pieces)] + f" ({i})" for i in range(count)]  # distinct texts


def raw(texts: list[str], per_call: int | None = None) -> float:
    """texts/s of sentence-transformers' encode: one call for all (it sorts them by length first), or
    calls of `per_call` texts in arrival order (what a server batching concurrent requests can do)."""
    model = Encoder().embeddings._client
    model.encode(texts[:64], batch_size=64)  # warm
    calls = [texts[i : i + per_call] for i in range(0, len(texts), per_call)] if per_call else [texts]
    start = time.perf_counter()
    for call in calls:
        model.encode(call, batch_size=64, normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - start)


def served(url: str, texts: list[str], clients: int, per_request: int) -> float:
    batches = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/v1/embeddings", json={"input": texts[:8]})  # warm

        def send(batch: list[str]) -> None:
            answer = client.post("/v1/embeddings", json={"input": batch, "model": "m"})
            assert answer.status_code == 200 and len(answer.json()["data"]) == len(batch), answer.text

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, batches))
        return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = sentences(args.texts)
    proc, url = start_server(tempfile.mkdtemp(), 8)
    time.sleep(10)  # the server's background warm-up (the tool router's encoder)
    cases = {
        "raw encode (batch 64)": lambda: raw(texts),
        "raw encode, calls of 8 in arrival order": lambda: raw(texts, 8),
        "/v1/embeddings, 1 client, 1 text each": lambda: served(url, texts, 1, 1),
        "/v1/embeddings, 8 clients, 1 text each": lambda: served(url, texts, 8, 1),
        "/v1/embeddings, 1 client, 32 texts each": lambda: served(url, texts, 1, 32),
    }
    try:
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):  # interleaved rounds: each case sees the same machine
            for name, run in cases.items():
                rates[name].append(run())
    finally:
        stop(proc)
    base = statistics.median(rates["raw encode (batch 64)"])
    print(f"\n{args.texts} texts, {args.rounds} rounds, median texts/s (ratio to raw encode)")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:<42}{median:>9.0f}{median / base:>8.2f}x")


if __name__ == "__main__":
    main()
