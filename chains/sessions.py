"""Chat sessions kept server-side: one row per completed turn, in any SQLAlchemy database.

A turn (the new messages and the reply) is written in one INSERT, so turns never interleave and
concurrent turns on one session each add their own row: none is lost. SQLite by default.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage, messages_from_dict, messages_to_dict
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    text,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from chains.errors import SessionsUnavailable
from chains.messages import role_of, text_of

log = logging.getLogger(__name__)

SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
SESSION_ID_HELP = "1-128 characters: letters, digits and . _ : @ - (starting with a letter or digit)"

metadata = MetaData()
turns = Table(
    "hfchain_session_turns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(128), nullable=False, index=True),
    Column("messages", Text, nullable=False),  # JSON: langchain-core's messages_to_dict
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def exported(message: BaseMessage) -> dict[str, Any]:
    """One stored message as GET /sessions/{id} shows it."""
    entry: dict[str, Any] = {"role": role_of(message), "content": text_of(message)}
    if calls := getattr(message, "tool_calls", None):
        entry["tool_calls"] = [{"id": c.get("id"), "name": c["name"], "args": c["args"]} for c in calls]
    if isinstance(message, ToolMessage):
        entry["tool_call_id"] = message.tool_call_id
    return entry


class SessionStore:
    """Session histories in the database at `url` (tables are created if missing)."""

    def __init__(self, url: str, pool_size: int = 5, connect_timeout: float = 5.0) -> None:
        self.url = url
        try:
            self.engine = create_engine(url, **_engine_options(url, pool_size, connect_timeout))
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            _create_tables(self.engine)
        except ImportError as error:  # the driver, or a library it needs (e.g. libpq)
            raise SessionsUnavailable(
                f"the sessions database {_safe(url)} needs the Python package {_package_for(error.name)}, "
                f"which cannot be imported ({error}): pip install {_package_for(error.name)}, or use "
                "postgresql+psycopg://... (installed with hfchain) or sqlite:///..."
            ) from error
        except (ArgumentError, NoSuchModuleError, OSError, SQLAlchemyError, TypeError) as error:
            raise SessionsUnavailable(
                f"cannot open the sessions database {_safe(url)} ({error.__class__.__name__}: {error}); "
                "check HFCHAIN_SESSIONS_URL (a SQLAlchemy URL, e.g. sqlite:///path/sessions.db or "
                "postgresql+psycopg://user:password@host/db)"
            ) from error
        log.info("sessions stored in %s", _safe(url))

    def history(self, session_id: str) -> list[BaseMessage]:
        """Every stored message of the session, oldest first ([] for a new session)."""
        query = select(turns.c.messages).where(turns.c.session_id == session_id).order_by(turns.c.id)
        with self._connect() as conn:
            rows = conn.execute(query).scalars().all()
        return [message for row in rows for message in messages_from_dict(json.loads(row))]

    def append(self, session_id: str, messages: list[BaseMessage]) -> None:
        """Store one turn's messages, atomically."""
        row = {
            "session_id": session_id,
            "messages": json.dumps(messages_to_dict(messages)),
            "created_at": datetime.now(UTC),
        }
        with self._connect() as conn, conn.begin():
            conn.execute(insert(turns).values(**row))

    def export(self, session_id: str) -> dict[str, Any] | None:
        """The session's messages ({"role", "content"}, with "tool_calls" or "tool_call_id" for tool steps;
        oldest first) and times, or None if it has none."""
        query = select(turns).where(turns.c.session_id == session_id).order_by(turns.c.id)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return None
        stored = messages_from_dict([m for row in rows for m in json.loads(row.messages)])
        messages = [exported(m) for m in stored]
        return {
            "session_id": session_id,
            "turns": len(rows),
            "messages": messages,
            "created_at": rows[0].created_at.isoformat(),
            "updated_at": rows[-1].created_at.isoformat(),
        }

    def delete(self, session_id: str) -> int:
        """Forget the session; the number of messages removed (0 if there was none)."""
        with self._connect() as conn, conn.begin():
            rows = conn.execute(select(turns.c.messages).where(turns.c.session_id == session_id)).scalars()
            removed = sum(len(json.loads(row)) for row in rows)
            conn.execute(sql_delete(turns).where(turns.c.session_id == session_id))
        return removed

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def _connect(self) -> _Connection:
        return _Connection(self.engine)


class _Connection:
    """engine.connect() whose database errors become SessionsUnavailable (503)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.conn = engine, None

    def __enter__(self) -> Any:
        try:
            self.conn = self.engine.connect()
        except SQLAlchemyError as error:
            raise _unavailable(str(self.engine.url), error) from error
        return self.conn

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        self.conn.close()
        if isinstance(error, SQLAlchemyError):
            raise _unavailable(str(self.engine.url), error) from error


def _unavailable(url: str, error: Exception) -> SessionsUnavailable:
    log.error("sessions database error: %s", error)
    return SessionsUnavailable(
        f"the sessions database {_safe(url)} failed ({error.__class__.__name__}); retry shortly",
        retry_after=1,
    )


# DBAPI modules SQLAlchemy imports for a URL's driver -> the package that provides them
PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mariadb": "mariadb",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}
SCHEMA_LOCK = 0x68666368  # a PostgreSQL advisory lock key: replicas create the tables one at a time


def _package_for(module: str | None) -> str:
    top = (module or "").split(".")[0]
    return PACKAGES.get(top, top or "(the URL's driver)")


def _create_tables(engine: Any) -> None:
    """Create the tables if missing; on PostgreSQL under a lock, so replicas starting at once do not race."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL lock_timeout = '60s'"))  # a stuck replica fails this one's start
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        metadata.create_all(conn)


def _engine_options(url: str, pool_size: int, connect_timeout: float) -> dict[str, Any]:
    """A server database: checked, bounded connections that never wait forever. SQLite: create its folder,
    wait for locks instead of failing, and allow readers during writes."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        options: dict[str, Any] = {"pool_pre_ping": True, "pool_size": pool_size, "max_overflow": pool_size}
        options["pool_timeout"] = connect_timeout  # all connections busy that long: 503, not a queue
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
            options["connect_args"] = {"connect_timeout": max(1, round(connect_timeout))}
        return options
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return {"connect_args": {"timeout": 30}}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers go on while a turn is written; busy_timeout waits for the write lock."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _safe(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"
