"""What the Agent Protocol and the checkpointer add to an agent turn: the same question (one model call,
greedy) through LangServe's /agent/invoke, a stateless /runs/wait, and /threads/{id}/runs/wait on a thread
(checkpointed), interleaved, p50 ms; then the checkpoint bytes a thread stores per step as it grows.

Usage: .venv/bin/python benchmarks/agent_protocol.py [--rounds 20] [--turns 8]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_api import start_server  # noqa: E402
from benchmarks.startup import stop  # noqa: E402

KNOBS = {"max_steps": 1, "max_new_tokens": 8}
ASK = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}


def latency(client: httpx.Client, rounds: int) -> None:
    """Each path once per round, in turn; p50 ms against /agent/invoke."""

    def langserve() -> None:
        client.post(
            "/agent/invoke", json={"input": ASK, "config": {"configurable": KNOBS}}
        ).raise_for_status()

    def stateless() -> None:
        body = {"assistant_id": "agent", "input": ASK, "config": {"configurable": KNOBS}}
        client.post("/runs/wait", json=body).raise_for_status()

    def on_thread() -> None:
        thread = client.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": "agent", "input": ASK, "config": {"configurable": KNOBS}}
        client.post(f"/threads/{thread}/runs/wait", json=body).raise_for_status()

    paths = {
        "/agent/invoke (LangServe)": langserve,
        "/runs/wait (stateless)": stateless,
        "/threads: create + runs/wait": on_thread,
    }
    for run in paths.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, run in paths.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) * 1000)
    print(f"\nOne agent turn (one model call, {KNOBS['max_new_tokens']} new tokens), {rounds} rounds, p50 ms")
    print("| path | p50 ms | vs /agent | added ms |\n|---|---|---|---|")
    base = statistics.median(times["/agent/invoke (LangServe)"])
    for name, values in times.items():
        p50 = statistics.median(values)
        print(f"| {name} | {p50:.1f} | {p50 / base:.2f}x | {p50 - base:+.1f} |")


def checkpoint_sizes(client: httpx.Client, database: Path, turns: int) -> None:
    """A thread of `turns` turns: the bytes its newest checkpoint and all its rows take after each turn."""
    thread = client.post("/threads", json={}).json()["thread_id"]
    print(f"\nCheckpoint size of one thread, turn by turn (SQLite, {database.name})")
    print(
        "| turn | messages | checkpoints | newest checkpoint bytes | all rows bytes | bytes per checkpoint |"
    )
    print("|---|---|---|---|---|---|")
    for turn in range(1, turns + 1):
        body = {
            "assistant_id": "agent",
            "input": {"messages": [{"role": "user", "content": f"Tell me fact number {turn} about Paris."}]},
            "config": {"configurable": {"max_steps": 1, "max_new_tokens": 32}},
        }
        values = client.post(f"/threads/{thread}/runs/wait", json=body).json()
        with sqlite3.connect(database) as db:
            rows = db.execute(
                "SELECT length(checkpoint) + length(metadata) FROM checkpoints WHERE thread_id LIKE ? "
                "ORDER BY checkpoint_id",
                (f"%/{thread}",),
            ).fetchall()
            writes = db.execute(
                "SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id LIKE ?", (f"%/{thread}",)
            ).fetchone()[0]
        total = sum(r[0] for r in rows) + writes
        cells = [turn, len(values["messages"]), len(rows), rows[-1][0], total, total // len(rows)]
        print("| " + " | ".join(map(str, cells)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--turns", type=int, default=8)
    args = parser.parse_args()
    data = tempfile.mkdtemp()
    proc, url = start_server(data, 8, HFCHAIN_AGENT_TOOLS="calculator")
    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            latency(client, args.rounds)
            checkpoint_sizes(client, Path(data) / "sessions.db", args.turns)
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
