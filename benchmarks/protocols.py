"""What each protocol layer adds over the chains it serves: one short request (one new token, greedy), p50
over interleaved rounds against one server; `n` = 4 samples in one completions request against four
separate requests (tokens/s), on a short and a long prompt; and what logprobs cost a chat reply.

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
LONG_PROMPT = (ROOT / "tests/fixtures/hamlet_excerpt.txt").read_text()[:3000] + "\n\nWhat happens next?"


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


def samples(client: httpx.Client, tokens: int, prompt: str, rounds: int = 3) -> None:
    """n=4 in one request against four requests; each round's prompts start with a fresh tag (no cache)."""
    body = {"max_tokens": tokens, "temperature": 1.0, "seed": 1}

    def one_request(tag: str) -> int:
        reply = client.post("/v1/completions", json={**body, "prompt": tag + prompt, "n": 4}).json()
        return reply["usage"]["completion_tokens"]

    def four_requests(tags: list[str]) -> int:
        def send(seed: int) -> dict:
            return client.post(
                "/v1/completions", json={**body, "prompt": tags[seed] + prompt, "seed": seed}
            ).json()

        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(send, range(4)))
        return sum(r["usage"]["completion_tokens"] for r in replies)

    paths = {
        "n=4 in one request": lambda r: one_request(f"[{r}a] "),
        "4 requests, one prompt, at once": lambda r: four_requests([f"[{r}b] "] * 4),
        "4 requests, 4 prompts, at once": lambda r: four_requests([f"[{r}c{i}] " for i in range(4)]),
    }
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(rounds):
        for name, run in paths.items():
            started = time.perf_counter()
            count = run(round_)
            rates[name].append(count / (time.perf_counter() - started))
    length = len(client.post("/tokenize", json={"prompt": prompt}).json()["tokens"])
    print(f"\nn = 4 samples of {tokens} tokens, prompt of {length} tokens, {rounds} rounds, median tokens/s")
    base = statistics.median(rates["4 requests, 4 prompts, at once"])
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.1f} | {statistics.median(values) / base:.2f}x |")


def logprob_cost(client: httpx.Client, tokens: int, rounds: int = 5) -> None:
    """One chat reply with and without logprobs (top 5), interleaved: seconds, median."""
    body = {
        "messages": [{"role": "user", "content": "Tell me a story about a dragon."}],
        "max_tokens": tokens,
    }
    variants = {"no logprobs": {}, "logprobs, top 5": {"logprobs": True, "top_logprobs": 5}}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, extra in variants.items():
            started = time.perf_counter()
            client.post("/v1/chat/completions", json={**body, **extra}).raise_for_status()
            times[name].append(time.perf_counter() - started)
    print(f"\nOne chat reply of {tokens} tokens (greedy), {rounds} rounds, median seconds")
    base = statistics.median(times["no logprobs"])
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {statistics.median(values) / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    proc, url = start_server(tempfile.mkdtemp(), 256)
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            latency(client, args.requests)
            samples(client, args.tokens, "Once upon a time")
            samples(client, args.tokens, LONG_PROMPT)
            logprob_cost(client, args.tokens)
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
