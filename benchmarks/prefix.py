"""The prefix cache, on vs off, in one run: two servers started one after the other on the same machine,
the same requests sent to each (embedded model, greedy).

1. A 10-turn session (`/v1/chat/completions` with `x-session-id`, each turn a ~180-token message, 32-token
   replies, the history growing to about 2,000 tokens): time to first token of every turn.
2. A 5-step agent-style loop: each call resends the conversation plus a ~150-token tool result.
3. N = 8 concurrent chats sharing a ~500-token system prompt, 3 waves: aggregate tokens/s.
4. No shared prefix (random distinct prompts through `/generate`): tokens/s at N = 1 and N = 8.
5. Memory: the cache's tokens (from /metrics) and the server's resident memory.

Usage: .venv/bin/python benchmarks/prefix.py [--turns 10] [--kv-bytes 1GiB] [--runtime auto|torch|onnx]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_api import start_server  # noqa: E402
from benchmarks.startup import stop  # noqa: E402

WORDS = ["river", "stone", "lantern", "harbour", "meadow", "engine", "signal", "copper", "violet",
         "orchard", "thunder", "quiet", "ledger", "compass", "summer", "glacier", "market"]  # fmt: skip


def words(count: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(count))


def ttft(client: httpx.Client, url: str, messages: list, headers: dict, max_tokens: int) -> tuple[float, str]:
    """Seconds to the first content chunk of a streamed chat, and the whole reply."""
    body = {"model": "any", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    started, first, text = time.perf_counter(), None, []
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"]
            content = delta[0]["delta"].get("content") if delta else None
            if content:
                first = first or time.perf_counter() - started
                text.append(content)
    return first or time.perf_counter() - started, "".join(text)


def session_turns(url: str, turns: int) -> list[float]:
    headers = {"x-session-id": f"bench-{uuid.uuid4().hex[:8]}"}
    with httpx.Client(timeout=600) as client:
        return [
            ttft(client, url, [{"role": "user", "content": f"Note {k}: {words(120, k)}. Repeat one word."}],
                 headers, 32)[0]
            for k in range(turns)
        ]  # fmt: skip


def agent_loop(url: str, steps: int = 5) -> float:
    messages = [{"role": "user", "content": "Plan a walk using the tool results that follow."}]
    started = time.perf_counter()
    with httpx.Client(timeout=600) as client:
        for step in range(steps):
            _, reply = ttft(client, url, messages, {}, 32)
            result = f"Tool result {step}: {words(100, 100 + step)}"
            messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": result}]
    return time.perf_counter() - started


def completion_tokens(url: str, messages: list) -> int:
    body = {"model": "any", "max_tokens": 48, "temperature": 0, "messages": messages}
    answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600)
    return answer.json()["usage"]["completion_tokens"]


def shared_system(url: str, clients: int = 8, waves: int = 3) -> float:
    """Aggregate completion tokens/s of `waves` waves of `clients` chats sharing a system prompt."""
    system = {"role": "system", "content": "Reference notes: " + words(330, 7)}

    def one(i: int) -> int:
        return completion_tokens(url, [system, {"role": "user", "content": f"Question {i}: name a colour."}])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(sum(pool.map(one, range(w * clients, (w + 1) * clients))) for w in range(waves))
    return tokens / (time.perf_counter() - started)


def distinct(url: str, clients: int, seed: int) -> float:
    """Completion tokens/s of 2 x `clients` /v1 chats with nothing in common but the template head."""

    def one(i: int) -> int:
        return completion_tokens(url, [{"role": "user", "content": f"{words(60, seed * 1000 + i)}. Go on."}])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(one, range(2 * clients)))
    return tokens / (time.perf_counter() - started)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(kv_bytes: str, turns: int, runtime: str) -> dict:
    folder = tempfile.mkdtemp(prefix="hfchain-bench-prefix-")
    proc, url = start_server(folder, 256, HFCHAIN_KV_CACHE_BYTES=kv_bytes, HFCHAIN_RUNTIME=runtime)
    try:
        result = {"turns": session_turns(url, turns), "agent": agent_loop(url)}
        result["shared"] = shared_system(url)
        result["n1"] = statistics.median(distinct(url, 1, s) for s in (1, 2, 3))
        result["n8"] = distinct(url, 8, 4)
        metrics = httpx.get(f"{url}/metrics").text
        held = [line for line in metrics.splitlines() if line.startswith("hfchain_prefix_cache_tokens ")]
        result["cache_tokens"] = float(held[0].split()[1]) if held else 0.0
        result["rss"] = resident_mb(proc.pid)
        return result
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--kv-bytes", default="1GiB", help="HFCHAIN_KV_CACHE_BYTES with the cache on")
    parser.add_argument("--runtime", default="auto", help="HFCHAIN_RUNTIME of both servers")
    args = parser.parse_args()
    off = measure("0", args.turns, args.runtime)
    on = measure(args.kv_bytes, args.turns, args.runtime)
    print("| turn | TTFT off (s) | TTFT on (s) | on / off |\n|---|---|---|---|")
    for k, (a, b) in enumerate(zip(off["turns"], on["turns"], strict=True), 1):
        print(f"| {k} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    print("\n| measure | cache off | cache on | on / off |\n|---|---|---|---|")
    rows = [("5-step agent loop, total s", "agent"),
            ("N=8, shared 500-token system prompt, tokens/s", "shared"),
            ("N=1, no shared prefix, tokens/s", "n1"), ("N=8, no shared prefix, tokens/s", "n8"),
            ("tokens held by the cache", "cache_tokens"), ("server RSS, MB", "rss")]  # fmt: skip
    for label, key in rows:
        ratio = f"{on[key] / off[key]:.2f}" if off[key] else "-"
        print(f"| {label} | {off[key]:.2f} | {on[key]:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
