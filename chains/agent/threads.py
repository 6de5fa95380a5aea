"""Agent threads and their runs, per tenant, in the service's database (SQLite by default, PostgreSQL with
replicas); the thread's messages live in LangGraph's checkpointer (`open_checkpointer`), in the same database.

A thread's checkpoints are kept under "<tenant>/<thread id>", so two tenants may use the same thread id and
never see each other's state.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.engine import make_url

from chains.database import Database

metadata = MetaData()
threads = Table(
    "hfchain_agent_threads",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("thread_id", String(128), primary_key=True),
    Column("metadata", Text, nullable=False),  # JSON object
    Column("status", String(16), nullable=False),  # idle, busy, interrupted, error
    Column("approvals", Text, nullable=False),  # JSON list: the tools its runs pause for
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
runs = Table(
    "hfchain_agent_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("thread_id", String(128), nullable=False, index=True),
    Column("assistant_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # pending, running, success, error, interrupted
    Column("metadata", Text, nullable=False),
    Column("multitask_strategy", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def checkpoint_key(tenant: str, thread_id: str) -> str:
    """The thread's id in the checkpointer."""
    return f"{tenant}/{thread_id}"


class ThreadStore:
    """Threads and runs of every tenant (tables created if missing)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.create(metadata)

    # --- threads ------------------------------------------------------------------------------------

    def create(self, tenant: str, thread_id: str | None, meta: dict) -> dict | None:
        """A new thread (a fresh id when none is given); None when the tenant has one with that id."""
        now, thread_id = datetime.now(UTC), thread_id or str(uuid.uuid4())
        if self.get(tenant, thread_id) is not None:
            return None
        row = {"tenant": tenant, "thread_id": thread_id, "metadata": json.dumps(meta), "status": "idle"}
        with self.database.connect() as conn, conn.begin():
            conn.execute(insert(threads).values(**row, approvals="[]", created_at=now, updated_at=now))
        return self.get(tenant, thread_id)

    def get(self, tenant: str, thread_id: str) -> dict | None:
        """The thread as the protocol shows it, or None."""
        with self.database.connect() as conn:
            row = conn.execute(select(threads).where(_thread(tenant, thread_id))).first()
        return _thread_view(row) if row is not None else None

    def approvals(self, tenant: str, thread_id: str) -> list[str]:
        """The tools the thread's runs pause for (kept from the run that named them)."""
        with self.database.connect() as conn:
            value = conn.execute(select(threads.c.approvals).where(_thread(tenant, thread_id))).scalar()
        return json.loads(value or "[]")

    def search(
        self,
        tenant: str,
        meta: dict | None,
        status: str | None,
        ids: list[str] | None,
        limit: int,
        offset: int,
    ) -> list[dict]:
        """The tenant's threads, newest first, filtered by metadata (all keys equal), status and ids."""
        query = select(threads).where(threads.c.tenant == tenant).order_by(threads.c.created_at.desc())
        if status:
            query = query.where(threads.c.status == status)
        if ids:
            query = query.where(threads.c.thread_id.in_(ids))
        with self.database.connect() as conn:
            rows = conn.execute(query).all()
        found = [_thread_view(r) for r in rows]
        found = [t for t in found if all(t["metadata"].get(k) == v for k, v in (meta or {}).items())]
        return found[offset : offset + limit]

    def set(self, tenant: str, thread_id: str, **values: Any) -> None:
        """Change a thread's status, approvals (a list) or metadata (a dict)."""
        encoded = {k: json.dumps(v) if k in ("approvals", "metadata") else v for k, v in values.items()}
        with self.database.connect() as conn, conn.begin():
            statement = update(threads).where(_thread(tenant, thread_id))
            conn.execute(statement.values(**encoded, updated_at=datetime.now(UTC)))

    def delete(self, tenant: str, thread_id: str) -> bool:
        """Forget a thread and its runs; False if the tenant has none with that id."""
        with self.database.connect() as conn, conn.begin():
            gone = conn.execute(delete(threads).where(_thread(tenant, thread_id))).rowcount
            conn.execute(delete(runs).where((runs.c.tenant == tenant) & (runs.c.thread_id == thread_id)))
        return bool(gone)

    # --- runs ---------------------------------------------------------------------------------------

    def add_run(self, tenant: str, thread_id: str, assistant_id: str, meta: dict, strategy: str) -> dict:
        """A new pending run on the thread."""
        now, run_id = datetime.now(UTC), str(uuid.uuid4())
        row = {
            "run_id": run_id,
            "tenant": tenant,
            "thread_id": thread_id,
            "assistant_id": assistant_id,
            "status": "pending",
            "metadata": json.dumps(meta),
            "multitask_strategy": strategy,
            "created_at": now,
            "updated_at": now,
        }
        with self.database.connect() as conn, conn.begin():
            conn.execute(insert(runs).values(**row))
        return _run_view(row)

    def set_run(self, run_id: str, status: str) -> None:
        """A run's new status."""
        with self.database.connect() as conn, conn.begin():
            statement = update(runs).where(runs.c.run_id == run_id)
            conn.execute(statement.values(status=status, updated_at=datetime.now(UTC)))

    def run(self, tenant: str, thread_id: str, run_id: str) -> dict | None:
        """One run of the tenant's thread, or None."""
        owned = (runs.c.tenant == tenant) & (runs.c.thread_id == thread_id) & (runs.c.run_id == run_id)
        with self.database.connect() as conn:
            row = conn.execute(select(runs).where(owned)).first()
        return _run_view(row._mapping) if row is not None else None

    def runs(self, tenant: str, thread_id: str, status: str | None, limit: int, offset: int) -> list[dict]:
        """The thread's runs, newest first."""
        owned = (runs.c.tenant == tenant) & (runs.c.thread_id == thread_id)
        query = select(runs).where(owned).order_by(runs.c.created_at.desc())
        if status:
            query = query.where(runs.c.status == status)
        with self.database.connect() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        return [_run_view(r._mapping) for r in rows]


def _thread(tenant: str, thread_id: str) -> Any:
    return (threads.c.tenant == tenant) & (threads.c.thread_id == thread_id)


def _thread_view(row: Any) -> dict:
    return {
        "thread_id": row.thread_id,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "metadata": json.loads(row.metadata),
        "status": row.status,
        "values": None,
        "interrupts": {},
        "config": {},
    }


def _run_view(row: Any) -> dict:
    created, updated = row["created_at"], row["updated_at"]
    return {
        "run_id": row["run_id"],
        "thread_id": row["thread_id"],
        "assistant_id": row["assistant_id"],
        "status": row["status"],
        "metadata": json.loads(row["metadata"]),
        "multitask_strategy": row["multitask_strategy"],
        "created_at": created.isoformat() if hasattr(created, "isoformat") else created,
        "updated_at": updated.isoformat() if hasattr(updated, "isoformat") else updated,
        "kwargs": {},
    }


@contextlib.asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[Any]:
    """LangGraph's async checkpointer on the database at `url` (a SQLAlchemy URL: SQLite or PostgreSQL)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        # A pool that checks each connection it lends: one connection (from_conn_string) dies for good when
        # the database restarts, and every thread would fail until the replica is restarted too.
        kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=4,
            kwargs=kwargs,
            check=AsyncConnectionPool.check_connection,
            open=False,
        )
        async with pool:
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(parsed.database or ":memory:") as saver:
        await saver.setup()
        yield saver
