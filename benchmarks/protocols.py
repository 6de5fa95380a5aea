"""What each protocol layer adds over the chains it serves: one short request (one new token, greedy), p50
over interleaved rounds against one server, and `n` = 4 samples in one completions request against four
separate requests (tokens/s).

Chat-template routes are compared with LangServe's /chat/invoke, raw-prompt routes with /generate/invoke.

Usage: .venv/bin/python benchmarks/protocols.py [--requests 30] [--tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_api import start_server  # noqa: E402
from benchmarks.startup import stop  # noqa: E402

QUESTION = "What is the capital of France?"
PROMPT = "The capital of France is"


def calls(client: httpx.Client) -> dict[str, tuple[str, Callable[[], object]]]:
    """name -> (baseline name, one request)."""
    message = [{"role": "user", "content": QUESTION}]
    knobs = {"configurable": {"max_new_tokens": 1, "temperature": 0}}

    def post(path: str, body: dict) -> Callable[[], object]:
        def send() -> object:
            answer = client.post(path, json=body)
            assert answer.status_code == 200, answer.text
            return answer

        return send

    return {
        "/chat/invoke (LangServe)": (
            "",
            post("/chat/invoke", {"input": {"messages": message}, "config": knobs}),
        ),
        "/v1/chat/completions": (
            "/chat/invoke (LangServe)",
            post("/v1/chat/completions", {"messages": message, "max_tokens": 1, "temperature": 0}),
        ),
        "/v1/messages": (
            "/chat/invoke (LangServe)",
            post("/v1/messages", {"messages": message, "max_tokens": 1, "temperature": 0}),
        ),
        "/generate/invoke (LangServe)": (
            "",
            post("/generate/invoke", {"input": {"prompt": PROMPT}, "config": knobs}),
        ),
        "/v1/completions": (
            "/generate/invoke (LangServe)",
            post("/v1/completions", {"prompt": PROMPT, "max_tokens": 1, "temperature": 0}),
        ),
        "POST / (TGI)": (
            "/generate/invoke (LangServe)",
            post("/", {"inputs": PROMPT, "parameters": {"max_new_tokens": 1}}),
        ),
    }


def latency(client: httpx.Client, requests: int) -> None:
    cases = calls(client)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(3):
        for _, send in cases.values():
            send()  # warm
    for _ in range(requests):  # interleaved: every route sees the same machine load
        for name, (_, send) in cases.items():
            started = time.perf_counter()
            send()
            times[name].append((time.perf_counter() - started) * 1000)
    print(f"\nOne short request (1 new token, greedy), {requests} rounds, p50 ms")
    print("| route | p50 ms | vs its chain | added ms |\n|---|---|---|---|")
    for name, (base, _) in cases.items():
        p50 = statistics.median(times[name])
        if base:
            b = statistics.median(times[base])
            print(f"| {name} | {p50:.1f} | {p50 / b:.2f}x | {p50 - b:+.1f} |")
        else:
            print(f"| {name} | {p50:.1f} | 1.00x | 0 |")


def samples(client: httpx.Client, tokens: int, rounds: int = 3) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": tokens, "temperature": 1.0, "seed": 1}

    def one_request() -> int:
        reply = client.post("/v1/completions", json={**body, "n": 4}).json()
        return reply["usage"]["completion_tokens"]

    def four_requests() -> int:
        with ThreadPoolExecutor(4) as pool:
            replies = list(
                pool.map(lambda s: client.post("/v1/completions", json={**body, "seed": s}).json(), range(4))
            )
        return sum(r["usage"]["completion_tokens"] for r in replies)

    rates: dict[str, list[float]] = {"n=4 in one request": [], "4 requests at once": []}
    for _ in range(rounds):
        for name, run in (("n=4 in one request", one_request), ("4 requests at once", four_requests)):
            started = time.perf_counter()
            count = run()
            rates[name].append(count / (time.perf_counter() - started))
    print(f"\nn = 4 samples of {tokens} tokens, {rounds} rounds, median tokens/s")
    base = statistics.median(rates["4 requests at once"])
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.1f} | {statistics.median(values) / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    proc, url = start_server(tempfile.mkdtemp(), 256)
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            latency(client, args.requests)
            samples(client, args.tokens)
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
