"""API keys kept by the service: only a SHA-256 of each key is stored; lookups cached for a few seconds,
so a key revoked on one replica is refused by every replica within `cache_seconds`."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from chains.database import Database
from chains.errors import HfchainError, InvalidInput, NotFound
from chains.tenants.caller import DEFAULT_TENANT, SCOPES, Caller, Scope, check_name

log = logging.getLogger(__name__)
MOST = {"requests_per_minute": 10**9, "tokens_per_day": 10**15}  # bounds a database column can hold
PREFIX = "hfc_"  # new keys look like hfc_<43 url-safe characters>: easy to spot in a leaked file
metadata = MetaData()
keys = Table(
    "hfchain_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),  # sha256 hex of the key
    Column("hint", String(16), nullable=False),  # the key's first characters, to tell keys apart
    Column("tenant", String(64), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("requests_per_minute", Integer),
    Column("tokens_per_day", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)


def digest(key: str | bytes) -> str:
    """The stored form of a key. Keys are 256 random bits, so a fast hash cannot be searched backwards."""
    return hashlib.sha256(key if isinstance(key, bytes) else key.encode()).hexdigest()


def env_callers(env_keys: list[str]) -> list[tuple[bytes, Caller]]:
    """Keys from HFCHAIN_API_KEYS(_FILE): admin keys of the default tenant, named by their digest."""
    return [
        (key.encode(), Caller(f"env-{digest(key)[:8]}", DEFAULT_TENANT, "admin", source="env"))
        for key in env_keys
    ]


class KeyStore:
    """Keys in the service's database, plus the operator's keys from the environment."""

    def __init__(self, database: Database, env_keys: list[str] | None = None, cache_seconds: float = 2.0):
        self.database, self.cache_seconds = database, cache_seconds
        self.env = env_callers(env_keys or [])
        database.create(metadata)
        self._cache: dict[str, tuple[float, Caller]] = {}
        self._any: tuple[float, bool] = (0.0, False)
        self._lock = threading.Lock()

    def known_required(self) -> bool | None:
        """required() when it is known without the database (None: ask required())."""
        if self.env or self._any[1]:
            return True
        return False if time.monotonic() - self._any[0] < self.cache_seconds else None

    def cached(self, key: bytes) -> Caller | None:
        """The caller for an env key or a recently looked-up key, without the database (None: look it up)."""
        # every env key is compared, so the time taken does not say which one matched
        matched = [caller for value, caller in self.env if hmac.compare_digest(key, value)]
        if matched:
            return matched[0]
        cached = self._cache.get(digest(key))
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        return None

    def required(self) -> bool:
        """Whether requests need a key: env keys are set, or any key was ever made (revoked ones count, so
        revoking the last key does not open the service)."""
        if self.env:
            return True
        checked, found = self._any
        if found or time.monotonic() - checked < self.cache_seconds:
            return found
        try:
            with self.database.connect() as conn:
                found = conn.execute(select(keys.c.name).limit(1)).first() is not None
        except HfchainError:
            if checked == 0.0:
                raise
            # no key was ever seen and none can be made while the database is down: go on as before
            log.warning("keys database unreachable: still serving without keys")
            found = False
        self._any = (time.monotonic(), found)
        return found

    def lookup(self, key: bytes) -> Caller | None:
        """The caller a presented key stands for, or None (unknown or revoked)."""
        if (known := self.cached(key)) is not None:
            return known
        hashed, now = digest(key), time.monotonic()
        query = select(keys).where(keys.c.digest == hashed, keys.c.revoked_at.is_(None))
        with self.database.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            self._cache.pop(hashed, None)
            return None
        caller = _caller(row)
        with self._lock:
            if len(self._cache) > 10_000:  # many keys in use: start over rather than grow without bound
                self._cache.clear()
            self._cache[hashed] = (now, caller)
        return caller

    def create(
        self,
        name: str,
        scope: Scope = "user",
        tenant: str | None = None,
        requests_per_minute: int | None = None,
        tokens_per_day: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A new key (the secret, shown once) and its record; its tenant is its name unless given."""
        check_name(name)
        check_name(tenant or name, "tenant")
        if scope not in SCOPES:
            raise InvalidInput(f"scope {scope!r}: use one of {list(SCOPES)}")
        for what, value in (("requests_per_minute", requests_per_minute), ("tokens_per_day", tokens_per_day)):
            if value is not None and (not isinstance(value, int) or not 1 <= value <= MOST[what]):
                raise InvalidInput(
                    f"{what} must be a whole number from 1 to {MOST[what]} (or left out: no limit)"
                )
        secret = PREFIX + secrets.token_urlsafe(32)
        row = {
            "name": name,
            "digest": digest(secret),
            "hint": secret[: len(PREFIX) + 4],
            "tenant": tenant or name,
            "scope": scope,
            "requests_per_minute": requests_per_minute,
            "tokens_per_day": tokens_per_day,
            "created_at": datetime.now(UTC),
        }
        with self.database.connect() as conn:
            try:
                with conn.begin():
                    conn.execute(insert(keys).values(**row))
            except IntegrityError:  # the name is taken (a digest collision cannot happen in practice)
                raise InvalidInput(
                    f"a key named {name!r} exists (names stay taken after revocation): pick another name"
                ) from None
        self._any = (time.monotonic(), True)
        return secret, _record(row)

    def list(self) -> list[dict[str, Any]]:
        """Every key made here, revoked ones too, oldest first (never a secret)."""
        with self.database.connect() as conn:
            rows = conn.execute(select(keys).order_by(keys.c.created_at, keys.c.name)).all()
        return [_record(row._mapping) for row in rows]

    def get(self, name: str) -> dict[str, Any] | None:
        """One key's record, or None."""
        with self.database.connect() as conn:
            row = conn.execute(select(keys).where(keys.c.name == name)).first()
        return _record(row._mapping) if row is not None else None

    def revoke(self, name: str) -> dict[str, Any]:
        """Refuse the key from now on (this process at once, other replicas within cache_seconds)."""
        change = (
            update(keys)
            .where(keys.c.name == name, keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        with self.database.connect() as conn, conn.begin():
            changed = conn.execute(change).rowcount
        record = self.get(name)
        if record is None:
            raise NotFound(f"no key named {name!r}: GET /admin/keys (or hfchain keys list) lists them")
        if not changed:
            raise NotFound(f"the key {name!r} was already revoked at {record['revoked_at']}")
        with self._lock:
            self._cache = {h: entry for h, entry in self._cache.items() if entry[1].name != name}
        return record

    def count(self) -> int:
        """How many keys were made (revoked ones too)."""
        with self.database.connect() as conn:
            return conn.execute(select(func.count()).select_from(keys)).scalar_one()


def _caller(row: Any) -> Caller:
    return Caller(
        row.name, row.tenant, row.scope, row.requests_per_minute, row.tokens_per_day, source="database"
    )


def _record(row: Any) -> dict[str, Any]:
    record = {k: row[k] for k in ("name", "tenant", "scope", "requests_per_minute", "tokens_per_day")}
    record["hint"] = row["hint"] + "..."
    record["created_at"] = _iso(row["created_at"])
    record["revoked_at"] = _iso(row.get("revoked_at"))
    return record


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat(timespec="seconds")
