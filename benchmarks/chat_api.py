"""What the chat protocols and sessions cost, side by side on one server (embedded model, greedy).

1. One short chat turn through LangServe `/chat/invoke` (baseline), `/v1/chat/completions`, and the
   same with a new session (history looked up, turn stored). Median latency over interleaved rounds;
   time to first token for `/chat/stream` and `/v1` streaming.
2. The session store alone (SQLite): loading a history and storing a turn, as sessions grow.

Usage: .venv/bin/python benchmarks/chat_api.py [--rounds 7] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import openai
from langchain_core.messages import AIMessage, HumanMessage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.startup import free_port, stop  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def start_server(data_dir: str, max_tokens: int, **settings: str):
    """`python -m server` on a free port with its own sessions database and any other HFCHAIN_ settings
    (`settings`); returns (process, url)."""
    import subprocess

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFCHAIN_")}
    env.update(HFCHAIN_PORT=str(port), HFCHAIN_DATA_DIR=data_dir, HFCHAIN_MAX_NEW_TOKENS=str(max_tokens))
    env.update(settings)
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError("server did not become ready")


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def first_token(stream: Callable[[], object]) -> float:
    """Seconds until the first non-empty content arrives."""
    started = time.perf_counter()
    chunks = stream()
    try:
        for chunk in chunks:
            if chunk:
                return time.perf_counter() - started
        return float("nan")
    finally:
        chunks.close()


def protocol_table(url: str, rounds: int, max_tokens: int) -> list[tuple[str, float]]:
    config = {"configurable": {"max_new_tokens": max_tokens, "temperature": 0}}
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120)
    http = httpx.Client(base_url=url, timeout=120)

    def v1(**extra) -> object:
        return client.chat.completions.create(model="m", messages=QUESTION, max_tokens=max_tokens, **extra)

    def v1_stream():
        with v1(stream=True) as stream:  # leaving the block closes the connection: the server stops
            for chunk in stream:
                yield chunk.choices[0].delta.content if chunk.choices else None

    def chat_stream():
        body = {"input": {"messages": QUESTION}, "config": config}
        with http.stream("POST", "/chat/stream", json=body) as response:
            for line in response.iter_lines():
                data = json.loads(line[5:]) if line.startswith("data:") else None
                if isinstance(data, dict) and data.get("content"):
                    yield data["content"]

    cases: dict[str, Callable[[], float]] = {
        "LangServe /chat/invoke (baseline)": lambda: timed(
            lambda: http.post("/chat/invoke", json={"input": {"messages": QUESTION}, "config": config})
        ),
        "/v1/chat/completions": lambda: timed(v1),
        "/v1/chat/completions + new session": lambda: timed(
            lambda: v1(extra_headers={"x-session-id": uuid.uuid4().hex})
        ),
        "TTFT /chat/stream": lambda: first_token(chat_stream),
        "TTFT /v1 stream": lambda: first_token(v1_stream),
    }
    for case in cases.values():  # warm-up
        case()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            samples[name].append(case())
    return [(name, statistics.median(values)) for name, values in samples.items()]


def store_table(turns_list: list[int], repeats: int = 20) -> list[tuple[int, float, float]]:
    from chains.sessions import SessionStore

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        store = SessionStore(f"sqlite:///{folder}/bench.db")
        for turns in turns_list:
            session = f"s{turns}"
            pair = [
                HumanMessage("a question of a few words " * 3),
                AIMessage("an answer of some length " * 6),
            ]
            for _ in range(turns):
                store.append(session, pair)
            load = statistics.median(timed(partial(store.history, session)) for _ in range(repeats))
            append = statistics.median(timed(partial(store.append, session, pair)) for _ in range(repeats))
            rows.append((turns, load * 1000, append * 1000))
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url = start_server(data_dir, args.max_tokens)
        try:
            rows = protocol_table(url, args.rounds, args.max_tokens)
        finally:
            stop(proc)
    base = rows[0][1]
    print(f"\nOne chat turn, {args.max_tokens} new tokens max, greedy, median of {args.rounds} rounds")
    print(f"| {'path':<36} | {'seconds':>7} | {'x baseline':>10} |")
    print(f"|{'-' * 38}|{'-' * 9}|{'-' * 12}|")
    for name, value in rows:
        ratio = f"{value / base:.2f}" if not name.startswith("TTFT") else ""
        print(f"| {name:<36} | {value:7.3f} | {ratio:>10} |")
    print("\nSession store (SQLite), median of 20")
    print(f"| {'stored turns':>12} | {'load history ms':>15} | {'store a turn ms':>15} |")
    print(f"|{'-' * 14}|{'-' * 17}|{'-' * 17}|")
    for turns, load, append in store_table([10, 100, 1000]):
        print(f"| {turns:>12} | {load:15.2f} | {append:15.2f} |")


if __name__ == "__main__":
    main()
