"""The service's database (SQLite by default, PostgreSQL with replicas): one engine shared by the stores
that keep sessions, keys and usage. Connection failures become 503s that name the database."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from chains.errors import SessionsUnavailable

log = logging.getLogger(__name__)

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


class Database:
    """An engine on `url` whose errors are typed: opening fails with a message naming the fix."""

    def __init__(self, url: str, pool_size: int = 5, connect_timeout: float = 5.0) -> None:
        self.url = url
        try:
            self.engine = create_engine(url, **_engine_options(url, pool_size, connect_timeout))
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
        except ImportError as error:  # the driver, or a library it needs (e.g. libpq)
            raise SessionsUnavailable(
                f"the sessions database {safe_url(url)} needs the Python package {_package_for(error.name)}, "
                f"which cannot be imported ({error}): pip install {_package_for(error.name)}, or use "
                "postgresql+psycopg://... (installed with hfchain) or sqlite:///..."
            ) from error
        except (ArgumentError, NoSuchModuleError, OSError, SQLAlchemyError, TypeError) as error:
            raise _unopenable(url, error) from error

    @property
    def dialect(self) -> str:
        """'sqlite', 'postgresql', ..."""
        return self.engine.dialect.name

    def create(self, metadata: MetaData, columns: dict[str, dict[str, str]] | None = None) -> None:
        """Create `metadata`'s tables if missing, and add `columns` ({table: {column: DDL}}) to tables made
        before those columns existed; on PostgreSQL under a lock, so replicas starting at once do not race."""
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SET LOCAL lock_timeout = '60s'"))  # a stuck replica fails this start
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
                metadata.create_all(conn)
                for table, added in (columns or {}).items():
                    have = {column["name"] for column in inspect(conn).get_columns(table)}
                    for name, ddl in added.items():
                        if name not in have:
                            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
                            log.info("database: added column %s.%s", table, name)
        except (OSError, SQLAlchemyError, TypeError) as error:
            raise _unopenable(self.url, error) from error

    def connect(self) -> _Connection:
        """A connection (a context manager) whose database errors become SessionsUnavailable (503)."""
        return _Connection(self.engine)

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()


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


def _unopenable(url: str, error: Exception) -> SessionsUnavailable:
    return SessionsUnavailable(
        f"cannot open the sessions database {safe_url(url)} ({error.__class__.__name__}: {error}); "
        "check HFCHAIN_SESSIONS_URL (a SQLAlchemy URL, e.g. sqlite:///path/sessions.db or "
        "postgresql+psycopg://user:password@host/db)"
    )


def _unavailable(url: str, error: Exception) -> SessionsUnavailable:
    log.error("database error: %s", error)
    return SessionsUnavailable(
        f"the sessions database {safe_url(url)} failed ({error.__class__.__name__}); retry shortly",
        retry_after=1,
    )


def _package_for(module: str | None) -> str:
    top = (module or "").split(".")[0]
    return PACKAGES.get(top, top or "(the URL's driver)")


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
    """WAL lets readers go on while a turn is written; busy_timeout waits for the write lock; NORMAL
    syncs at checkpoints, not on every commit (WAL keeps the database consistent either way)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"
