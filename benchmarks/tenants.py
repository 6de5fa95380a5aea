"""What keys, ownership and quotas add to a short request, on SQLite and PostgreSQL, side by side.

1. The key guard alone (in-process, no HTTP): one POST through the guard in front of an empty ASGI app,
   for each mode (no keys; an env key; a database key, looked up from the cache; the same with
   requests-per-minute and tokens-per-day quotas, which count and record in the database; the quota key with
   the cache off, so every request reads the keys table). Modes interleaved; p50/p95 of what each adds over
   "no keys".
2. Over HTTP: two real servers per database (no keys / a quota key), the same short requests interleaved:
   GET /sessions/{id} (an ownership lookup, 404) and POST /generate/invoke (1 token); p50/p95 of each and
   the difference.

PostgreSQL: a throwaway server (tests/postgres.py: Debian's postgresql package), or `--url` for your own.
Usage: .venv/bin/python benchmarks/tenants.py [--requests 400] [--http-requests 60] [--url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_api import start_server  # noqa: E402
from benchmarks.startup import free_port, stop  # noqa: E402
from chains.database import Database  # noqa: E402
from chains.tenants.keys import KeyStore  # noqa: E402
from chains.tenants.quotas import Quotas  # noqa: E402
from server.auth import ApiKeyGuard  # noqa: E402

ENV_KEY = "bench-env-key"


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def empty_app(scope: dict, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def guards(url: str) -> dict[str, tuple[ApiKeyGuard, bytes]]:
    """One guard per mode over the database at `url`, and the key each mode presents."""
    database = Database(url)
    cached, uncached = KeyStore(database, cache_seconds=2.0), KeyStore(database, cache_seconds=0.0)
    quotas = Quotas(database)
    plain, _ = cached.create(f"plain-{time.monotonic_ns()}")
    limited, _ = cached.create(
        f"quota-{time.monotonic_ns()}", requests_per_minute=10**9, tokens_per_day=10**12
    )
    empty = Database(f"sqlite:///{tempfile.mkdtemp()}/empty.db")  # no keys at all
    return {
        "no keys": (ApiKeyGuard(empty_app, KeyStore(empty), Quotas(empty)), b""),
        "env key": (ApiKeyGuard(empty_app, KeyStore(empty, [ENV_KEY]), Quotas(empty)), ENV_KEY.encode()),
        "database key": (ApiKeyGuard(empty_app, cached, quotas), plain.encode()),
        "+ quotas": (ApiKeyGuard(empty_app, cached, quotas), limited.encode()),
        "+ quotas, no cache": (ApiKeyGuard(empty_app, uncached, quotas), limited.encode()),
    }


async def one(guard: ApiKeyGuard, key: bytes) -> tuple[float, float]:
    """Seconds for one POST through `guard`: until the answer is sent, and in all (usage recorded after)."""
    headers = [(b"authorization", b"Bearer " + key)] if key else []
    scope = {"type": "http", "method": "POST", "path": "/generate/invoke", "headers": headers}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append((message, time.perf_counter()))

    start = time.perf_counter()
    await guard(scope, receive, send)
    elapsed = time.perf_counter() - start
    assert sent[0][0]["status"] == 200, sent
    return sent[-1][1] - start, elapsed


async def guard_table(name: str, url: str, requests: int) -> None:
    modes = guards(url)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    totals: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(20):  # warm: connections, caches
        for guard, key in modes.values():
            await one(guard, key)
    for _ in range(requests):
        for mode, (guard, key) in modes.items():
            answered, total = await one(guard, key)
            times[mode].append(answered)
            totals[mode].append(total)
    base50, base95 = pct(times["no keys"], 50) * 1000, pct(times["no keys"], 95) * 1000
    print(f"\n{name}: the key guard alone, {requests} POSTs per mode, interleaved (ms)")
    print("  adds: before the answer is sent, over no keys; in all: with the usage recorded after it")
    heads = ("adds p50", "adds p95", "in all p50", "in all p95")
    print(f"{'mode':<22}" + "".join(f"{h:>11}" for h in heads))
    for mode, values in times.items():
        cells = (
            pct(values, 50) * 1000 - base50,
            pct(values, 95) * 1000 - base95,
            pct(totals[mode], 50) * 1000,
            pct(totals[mode], 95) * 1000,
        )
        print(f"{mode:<22}" + "".join(f"{c:>11.3f}" for c in cells))


def http_table(name: str, url: str | None, requests: int, open_db: str | None = None) -> None:
    """Two servers, each on its own database (`open_db` and `url`; SQLite files when None): no keys, and
    keyed (the requests use a quota key). One kept-alive client per server, as real clients do."""
    data = tempfile.mkdtemp()
    database = Database(url or f"sqlite:///{data}/sessions.db")
    secret, _ = KeyStore(database).create(
        f"http-{time.monotonic_ns()}", requests_per_minute=10**9, tokens_per_day=10**12
    )
    open_extra = {"HFCHAIN_SESSIONS_URL": open_db} if open_db else {}
    open_server, open_url = start_server(tempfile.mkdtemp(), 1, **open_extra)
    keyed_server, keyed_url = start_server(data, 1, **({"HFCHAIN_SESSIONS_URL": url} if url else {}))
    clients = {
        "open": httpx.Client(base_url=open_url, timeout=60),
        "keyed": httpx.Client(base_url=keyed_url, timeout=60, headers={"Authorization": f"Bearer {secret}"}),
    }
    time.sleep(10)  # both servers finish their background warm-up (the tool router's encoder)
    try:
        cases = {
            "GET /sessions/x (404)": lambda c: c.get("/sessions/none"),
            "POST /generate (1 token)": lambda c: c.post(
                "/generate/invoke", json={"input": {"prompt": "Hi"}}
            ),
        }
        print(f"\n{name}: over HTTP, {requests} requests per server, interleaved (ms)")
        heads = ("open p50", "keyed p50", "open p95", "keyed p95", "adds p50")
        print(f"{'request':<26}" + "".join(f"{h:>10}" for h in heads))
        for label, call in cases.items():
            timed: dict[str, list[float]] = {"open": [], "keyed": []}
            for i in range(requests + 30):
                for mode, client in clients.items():
                    start = time.perf_counter()
                    answer = call(client)
                    if i >= 30:  # the first ones warm the servers
                        timed[mode].append(time.perf_counter() - start)
                    assert answer.status_code in (200, 404), answer.text
            o50, k50 = pct(timed["open"], 50) * 1000, pct(timed["keyed"], 50) * 1000
            o95, k95 = pct(timed["open"], 95) * 1000, pct(timed["keyed"], 95) * 1000
            print(f"{label:<26}{o50:>10.2f}{k50:>10.2f}{o95:>10.2f}{k95:>10.2f}{k50 - o50:>10.2f}")
    finally:
        for client in clients.values():
            client.close()
        stop(open_server)
        stop(keyed_server)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="POSTs per mode through the guard alone")
    parser.add_argument("--http-requests", type=int, default=60, help="requests per server over HTTP")
    parser.add_argument("--url", help="a PostgreSQL URL to use instead of a throwaway server")
    parser.add_argument("--no-http", action="store_true", help="only the in-process table")
    args = parser.parse_args()
    sqlite_url = f"sqlite:///{tempfile.mkdtemp()}/hfchain.db"
    asyncio.run(guard_table("SQLite", sqlite_url, args.requests))
    if not args.no_http:
        http_table("SQLite", None, args.http_requests)
    if args.url:  # the keyed server uses it; the open one, SQLite
        asyncio.run(guard_table("PostgreSQL", args.url, args.requests))
        if not args.no_http:
            http_table("PostgreSQL (open server on SQLite)", args.url, args.http_requests)
        return
    from tests.postgres import running

    with running(free_port()) as server:
        url = server.new_database()
        asyncio.run(guard_table("PostgreSQL", url, args.requests))
        if not args.no_http:
            http_table("PostgreSQL", server.new_database(), args.http_requests, server.new_database())


if __name__ == "__main__":
    main()
