"""Quotas per key, counted in the shared database so they hold across replicas: requests per calendar
minute (an atomic counter per key and minute, exact over replicas) and tokens per UTC day (checked before
a request, added after it: requests already running when the limit is reached may finish, and a replica
reads the day's total at most once a second, so a day can go over by what the requests in flight use and
by what other replicas added in the last second)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from chains.database import Database
from chains.errors import QuotaExceeded
from chains.tenants.caller import Caller

metadata = MetaData()
minutes = Table(
    "hfchain_rate",
    metadata,
    Column("key_name", String(64), primary_key=True),
    Column("minute", BigInteger, primary_key=True),  # unix time // 60
    Column("requests", Integer, nullable=False),
)
days = Table(
    "hfchain_usage",
    metadata,
    Column("key_name", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),  # UTC, YYYY-MM-DD
    Column("tenant", String(64), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
)


@dataclass
class Allowance:
    """What a key has left, for the x-ratelimit-* headers (None: no such limit)."""

    requests: tuple[int, int, float] | None = None  # (limit, remaining, seconds to reset)
    tokens: tuple[int, int, float] | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for kind, values in (("requests", self.requests), ("tokens", self.tokens)):
            if values is not None:
                limit, remaining, reset = values
                self.headers += [
                    (f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()),
                    (f"x-ratelimit-remaining-{kind}".encode(), str(max(0, remaining)).encode()),
                    (f"x-ratelimit-reset-{kind}".encode(), duration(reset).encode()),
                ]


def duration(seconds: float) -> str:
    """OpenAI's reset format: 1s, 6m0s, 2h3m4s."""
    whole = max(1, int(seconds + 0.999))
    hours, rest = divmod(whole, 3600)
    mins, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{mins}m{secs}s"
    return f"{mins}m{secs}s" if mins else f"{secs}s"


def today(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%d")


def seconds_to_midnight(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - moment).total_seconds()


class Quotas:
    """Admission by quota, and the usage record behind GET /usage."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.create(metadata)
        self._pruned = 0.0
        self._tokens: dict[tuple[str, str], tuple[float, int]] = {}  # (key, day) -> (read at, tokens)
        self.tokens_seconds = 1.0  # how long a day's token total read from the database is reused

    def admit(self, caller: Caller, now: float | None = None) -> Allowance:
        """Count one request against the key's limits; 429 (QuotaExceeded) when over one."""
        now = time.time() if now is None else now
        requests = tokens = None
        with self.database.connect() as conn, conn.begin():  # one round trip per statement, one connection
            if caller.requests_per_minute:
                used = self._count_request(conn, caller.name, int(now // 60))
                limit, reset = caller.requests_per_minute, 60 - now % 60
                requests = (limit, limit - used, reset)
                if used > limit:
                    why = f"key {caller.name!r} used its {limit} requests per minute: retry in "
                    why += duration(reset)
                    raise _exceeded(why, reset, Allowance(requests=requests))
            if caller.tokens_per_day:
                used = self._tokens_used(conn, caller.name, today(now))
                limit, reset = caller.tokens_per_day, seconds_to_midnight(now)
                tokens = (limit, limit - used, reset)
                if used >= limit:
                    why = (
                        f"key {caller.name!r} used its {limit} tokens today ({used} counted): retry after "
                        f"midnight UTC, in {duration(reset)}, or ask an admin to raise tokens_per_day"
                    )
                    raise _exceeded(why, reset, Allowance(requests=requests, tokens=tokens))
        return Allowance(requests=requests, tokens=tokens)

    def record(self, caller: Caller, prompt_tokens: int, completion_tokens: int, now: float | None = None):
        """Add one request and its tokens to the key's day."""
        values = {"requests": 1, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        row = {"key_name": caller.name, "day": today(now), "tenant": caller.tenant, **values}
        with self.database.connect() as conn, conn.begin():
            _add(conn, self.database.dialect, days, row, ("key_name", "day"), values)
        read = self._tokens.get((caller.name, row["day"]))
        if read is not None:  # this replica's own use counts at once
            self._tokens[(caller.name, row["day"])] = (read[0], read[1] + prompt_tokens + completion_tokens)

    def usage(self, key_name: str | None = None, since_days: int = 30) -> list[dict[str, Any]]:
        """Use by key and day, newest day first (every key's when `key_name` is None)."""
        first = today(time.time() - since_days * 86400)
        query = select(days).where(days.c.day > first).order_by(days.c.day.desc(), days.c.key_name)
        if key_name is not None:
            query = query.where(days.c.key_name == key_name)
        with self.database.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "key": row.key_name,
                "tenant": row.tenant,
                "date": row.day,
                "requests": row.requests,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "total_tokens": row.prompt_tokens + row.completion_tokens,
            }
            for row in rows
        ]

    def _count_request(self, conn: Any, name: str, minute: int) -> int:
        """Add one to the key's count for `minute` and return the new count, in one statement."""
        row = {"key_name": name, "minute": minute, "requests": 1}
        used = _add(conn, self.database.dialect, minutes, row, ("key_name", "minute"), {"requests": 1})
        if time.monotonic() - self._pruned > 60:
            self._pruned = time.monotonic()
            conn.execute(delete(minutes).where(minutes.c.minute < minute - 1))
        return used

    def _tokens_used(self, conn: Any, name: str, day: str) -> int:
        """The key's tokens on `day`, read from the database at most once every tokens_seconds."""
        read = self._tokens.get((name, day))
        if read is not None and time.monotonic() - read[0] < self.tokens_seconds:
            return read[1]
        total = days.c.prompt_tokens + days.c.completion_tokens
        used = conn.execute(select(total).where(days.c.key_name == name, days.c.day == day)).scalar()
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[(name, day)] = (time.monotonic(), int(used or 0))
        return int(used or 0)


def _exceeded(message: str, reset: float, allowance: Allowance) -> QuotaExceeded:
    error = QuotaExceeded(message, retry_after=max(1, int(reset + 0.999)))
    error.headers = allowance.headers
    return error


def _add(conn: Any, dialect: str, table: Table, row: dict, keys: tuple[str, ...], added: dict) -> int:
    """Insert `row`, or add `added` to the existing row's columns; the first added column's new value."""
    first = next(iter(added))
    if dialect in ("sqlite", "postgresql"):
        insert = (sqlite if dialect == "sqlite" else postgresql).insert(table).values(**row)
        changes = {column: table.c[column] + insert.excluded[column] for column in added}
        upsert = insert.on_conflict_do_update(index_elements=list(keys), set_=changes)
        return int(conn.execute(upsert.returning(table.c[first])).scalar_one())
    match = [table.c[k] == row[k] for k in keys]  # other databases: update, else insert
    changed = conn.execute(update(table).where(*match).values({c: table.c[c] + v for c, v in added.items()}))
    if not changed.rowcount:
        conn.execute(table.insert().values(**row))
    return int(conn.execute(select(table.c[first]).where(*match)).scalar_one())
