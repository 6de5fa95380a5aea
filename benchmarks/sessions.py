"""Session storage on SQLite vs PostgreSQL, side by side in one run.

1. The store alone: W concurrent writers (1, 2, 4), each running session turns (load the history, store
   the turn) on its own session as it grows: turns/s over all writers and p95 latency of one turn.
2. What a session adds to a chat turn: one hfchain server per database, the same short /v1 turn without
   and with `x-session-id` (a new session each time, so the prompt is the same and only the history lookup
   and the stored turn differ), interleaved; median latency and the difference.

PostgreSQL: a throwaway server (tests/postgres.py: Debian's postgresql package), or `--url` for your own.
Usage: .venv/bin/python benchmarks/sessions.py [--turns 40] [--chat-rounds 8] [--url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import openai
from langchain_core.messages import AIMessage, HumanMessage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_api import start_server  # noqa: E402
from benchmarks.startup import free_port, stop  # noqa: E402
from chains.sessions import SessionStore  # noqa: E402

TURN = [
    HumanMessage("What is the capital of France? " * 4),
    AIMessage("Paris is the capital of France. " * 4),
]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def store_run(url: str, writers: int, turns: int) -> tuple[float, float]:
    """(turns/s over all writers, p95 seconds of one turn) with `writers` threads of `turns` turns each."""
    store, latencies, lock = SessionStore(url), [], threading.Lock()

    def writer() -> None:
        session, mine = f"bench-{uuid.uuid4().hex}", []
        for _ in range(turns):
            started = time.perf_counter()
            store.history(session)
            store.append(session, TURN)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    store.close()
    return writers * turns / elapsed, p95(latencies)


def chat_cost(sessions_url: str, rounds: int) -> tuple[float, float]:
    """Median seconds of a short /v1 turn without and with a session, on a server using `sessions_url`."""
    with tempfile.TemporaryDirectory(prefix="hfchain-bench-") as data:
        proc, url = start_server(data, 8, HFCHAIN_SESSIONS_URL=sessions_url)
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)

            def turn(headers: dict | None) -> float:
                started = time.perf_counter()
                client.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": "Name a colour."}],
                    max_tokens=8,
                    extra_headers=headers,
                )
                return time.perf_counter() - started

            turn(None)  # warm-up
            plain, with_session = [], []
            for _ in range(rounds):  # interleaved: both see the same machine load
                plain.append(turn(None))
                # a new session each time: the same prompt as without one, so only the storage differs
                with_session.append(turn({"x-session-id": f"chat-{uuid.uuid4().hex}"}))
            return statistics.median(plain), statistics.median(with_session)
        finally:
            stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40, help="turns per writer (default 40)")
    parser.add_argument("--chat-rounds", type=int, default=8, help="chat turns per mode (default 8; 0 skips)")
    parser.add_argument("--url", help="an existing PostgreSQL (SQLAlchemy URL); default: a throwaway server")
    args = parser.parse_args()
    postgres = None
    if args.url:
        pg_url = args.url
    else:
        from tests.postgres import Postgres

        postgres = Postgres(free_port()).start()
        pg_url = postgres.new_database()
        print(f"throwaway PostgreSQL on port {postgres.port} (fsync off, as in the tests)")
    try:
        with tempfile.TemporaryDirectory(prefix="hfchain-bench-") as folder:
            databases = {"SQLite": f"sqlite:///{folder}/sessions.db", "PostgreSQL": pg_url}
            print("\n| writers | SQLite turns/s | SQLite p95 ms | PostgreSQL turns/s | PostgreSQL p95 ms |")
            print("|---|---|---|---|---|")
            for writers in (1, 2, 4):
                cells = []
                for name, url in databases.items():
                    rate, slow = store_run(url, writers, args.turns)
                    cells += [f"{rate:.0f}", f"{slow * 1000:.1f}"]
                    print(
                        f"  {name}, {writers} writers: {rate:.0f} turns/s, p95 {slow * 1000:.1f} ms",
                        file=sys.stderr,
                    )
                print(f"| {writers} | " + " | ".join(cells) + " |")
            if args.chat_rounds:
                print("\n| database | chat turn, no session (s) | with a session (s) | added (ms) |")
                print("|---|---|---|---|")
                for name, url in databases.items():
                    plain, session = chat_cost(url, args.chat_rounds)
                    print(f"| {name} | {plain:.3f} | {session:.3f} | {(session - plain) * 1000:+.0f} |")
    finally:
        if postgres is not None:
            postgres.close()


if __name__ == "__main__":
    main()
