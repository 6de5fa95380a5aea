"""Responses kept for GET /v1/responses/{id} and previous_response_id: the response object and the
conversation it ended (OpenAI-style messages, instructions left out as the Responses API does), one row
per response, owned by the caller's tenant, in the sessions database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, insert, select
from sqlalchemy import delete as sql_delete

from chains.database import Database
from chains.tenants.caller import DEFAULT_TENANT

metadata = MetaData()
responses = Table(
    "hfchain_responses",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("response", Text, nullable=False),  # JSON: the response object as it was returned
    Column("conversation", Text, nullable=False),  # JSON: messages up to and including the reply
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class ResponseStore:
    """Stored responses in `database` (the table is created if missing)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.create(metadata)

    def put(self, response: dict[str, Any], conversation: list[dict], tenant: str = DEFAULT_TENANT) -> None:
        row = {
            "id": response["id"],
            "tenant": tenant,
            "response": json.dumps(response),
            "conversation": json.dumps(conversation),
            "created_at": datetime.now(UTC),
        }
        with self.database.connect() as conn, conn.begin():
            conn.execute(insert(responses).values(**row))

    def get(self, response_id: str, tenant: str = DEFAULT_TENANT) -> tuple[dict, list[dict]] | None:
        """(the response object, its conversation), or None when the tenant has no such response."""
        query = select(responses.c.response, responses.c.conversation).where(_owned(response_id, tenant))
        with self.database.connect() as conn:
            row = conn.execute(query).first()
        return (json.loads(row.response), json.loads(row.conversation)) if row else None

    def delete(self, response_id: str, tenant: str = DEFAULT_TENANT) -> bool:
        """Forget the tenant's response; whether there was one."""
        with self.database.connect() as conn, conn.begin():
            return conn.execute(sql_delete(responses).where(_owned(response_id, tenant))).rowcount > 0


def _owned(response_id: str, tenant: str) -> Any:
    """Another tenant's response of the same id is not found."""
    return (responses.c.id == response_id) & (responses.c.tenant == tenant)
