"""What the protocol sends: JSON of LangGraph values (messages as their model_dump, interrupts as
{"value", "id"}), thread states in the shape RemoteGraph reads, and SSE events."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel

CHECKPOINT_KEYS = ("thread_id", "checkpoint_ns", "checkpoint_id")


def plain(value: Any) -> Any:
    """`value` as JSON-ready data (what json.dumps cannot write becomes its string)."""
    return json.loads(dumps(value))


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if type(value).__name__ == "Interrupt":
        return {"value": value.value, "id": value.id}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return value._asdict()
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    if isinstance(value, set | frozenset):
        return list(value)
    return str(value)


def sse(event: str, data: Any) -> dict[str, str]:
    """One server-sent event (sse-starlette's dict form)."""
    return {"event": event, "data": dumps(data)}


def checkpoint(config: dict | None, thread_id: str) -> dict | None:
    """A checkpoint's public reference: the client's thread id (not the tenant-qualified one)."""
    if not config:
        return None
    configurable = config.get("configurable") or {}
    found = {key: configurable.get(key) for key in CHECKPOINT_KEYS}
    return {**found, "thread_id": thread_id, "checkpoint_ns": found["checkpoint_ns"] or ""}


def state_view(snapshot: Any, thread_id: str) -> dict[str, Any]:
    """A StateSnapshot as the protocol's ThreadState."""
    if snapshot is None or not snapshot.config:
        empty = {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None}
        return {
            "values": {},
            "next": [],
            "tasks": [],
            "checkpoint": empty,
            "parent_checkpoint": None,
            "metadata": {},
            "created_at": None,
            "interrupts": [],
        }
    tasks = [
        {
            "id": task.id,
            "name": task.name,
            "path": list(task.path),
            "error": str(task.error) if task.error else None,
            "interrupts": plain(list(task.interrupts)),
            "checkpoint": None,
            "state": None,
            "result": plain(task.result) if task.result is not None else None,
        }
        for task in snapshot.tasks
    ]
    return {
        "values": plain(snapshot.values),
        "next": list(snapshot.next),
        "tasks": tasks,
        "checkpoint": checkpoint(snapshot.config, thread_id),
        "parent_checkpoint": checkpoint(snapshot.parent_config, thread_id),
        "metadata": plain(dict(snapshot.metadata or {})),
        "created_at": snapshot.created_at,
        "interrupts": plain(list(snapshot.interrupts)),
    }
