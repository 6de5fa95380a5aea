"""Chat sessions kept server-side: one row per completed turn, in any SQLAlchemy database.

A turn (the new messages and the reply) is written in one INSERT, so turns never interleave and
concurrent turns on one session each add their own row: none is lost. SQLite by default.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage, messages_from_dict, messages_to_dict
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy import delete as sql_delete

from chains.database import Database, safe_url
from chains.messages import role_of, text_of
from chains.tenants.caller import DEFAULT_TENANT

log = logging.getLogger(__name__)

SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
SESSION_ID_HELP = "1-128 characters: letters, digits and . _ : @ - (starting with a letter or digit)"

metadata = MetaData()
TABLE = "hfchain_session_turns"
HISTORY_TURNS = 256  # turns read back per request: more never fit a prompt (the oldest are left out first)
turns = Table(
    TABLE,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(128), nullable=False, index=True),
    Column("tenant", String(64), nullable=False, server_default=DEFAULT_TENANT),
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
        self.database = Database(url, pool_size, connect_timeout)
        tenant_column = f"VARCHAR(64) NOT NULL DEFAULT '{DEFAULT_TENANT}'"  # sessions made before tenants
        self.database.create(metadata, {TABLE: {"tenant": tenant_column}})
        log.info("sessions stored in %s", safe_url(url))

    def history(self, session_id: str, tenant: str = DEFAULT_TENANT) -> list[BaseMessage]:
        """The messages of the tenant's session's last HISTORY_TURNS turns, oldest first ([] for a new
        session): no prompt holds more, and a long session must not cost memory per request."""
        query = (
            select(turns.c.messages)
            .where(_owned(session_id, tenant))
            .order_by(turns.c.id.desc())
            .limit(HISTORY_TURNS)
        )
        with self._connect() as conn:
            rows = conn.execute(query).scalars().all()
        return [message for row in reversed(rows) for message in messages_from_dict(json.loads(row))]

    def append(self, session_id: str, messages: list[BaseMessage], tenant: str = DEFAULT_TENANT) -> None:
        """Store one turn's messages, atomically."""
        row = {
            "session_id": session_id,
            "tenant": tenant,
            "messages": json.dumps(messages_to_dict(messages)),
            "created_at": datetime.now(UTC),
        }
        with self._connect() as conn, conn.begin():
            conn.execute(insert(turns).values(**row))

    def export(self, session_id: str, tenant: str = DEFAULT_TENANT) -> dict[str, Any] | None:
        """The session's messages ({"role", "content"}, with "tool_calls" or "tool_call_id" for tool steps;
        oldest first) and times, or None if the tenant has no such session."""
        query = select(turns).where(_owned(session_id, tenant)).order_by(turns.c.id)
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

    def delete(self, session_id: str, tenant: str = DEFAULT_TENANT) -> int:
        """Forget the tenant's session; the number of messages removed (0 if there was none)."""
        with self._connect() as conn, conn.begin():
            rows = conn.execute(select(turns.c.messages).where(_owned(session_id, tenant))).scalars()
            removed = sum(len(json.loads(row)) for row in rows)
            conn.execute(sql_delete(turns).where(_owned(session_id, tenant)))
        return removed

    def close(self) -> None:
        """Release the database connections."""
        self.database.close()

    def _connect(self) -> Any:
        return self.database.connect()


def _owned(session_id: str, tenant: str) -> Any:
    """The rows of `tenant`'s session `session_id` (the same id in another tenant is another session)."""
    return (turns.c.session_id == session_id) & (turns.c.tenant == tenant)
