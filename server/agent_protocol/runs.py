"""Runs of the agent graph on threads: each run is a task on this replica whose events (in stream order) any
number of readers follow: its own stream, /join, /runs/{id}/stream; cancelling the task stops its rows.

The graph always streams "values" and "updates" (the final state and interrupts come from them) and adds
"messages" for messages-tuple; only the modes the client asked for are sent. With "events", the run goes
through astream_events and the root's stream chunks give the modes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from chains.errors import HfchainError

log = logging.getLogger("hfchain.server")

STREAM_MODES = ("values", "updates", "messages-tuple", "events")
KEEP_FINISHED = 256  # finished runs kept in memory for /join and /stream after the fact


@dataclass
class LiveRun:
    """One run's events and outcome, followed by its readers."""

    run: dict
    tenant: str
    modes: tuple[str, ...]
    events: list[tuple[str, Any]] = field(default_factory=list)
    values: Any = None
    interrupts: list = field(default_factory=list)
    error: dict | None = None
    done: bool = False
    task: asyncio.Task | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    finished_at: float = 0.0

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    async def emit(self, event: str, data: Any) -> None:
        async with self.changed:
            self.events.append((event, data))
            self.changed.notify_all()

    async def finish(self) -> None:
        async with self.changed:
            self.done, self.finished_at = True, time.monotonic()
            self.changed.notify_all()

    async def follow(self, modes: tuple[str, ...] | None = None) -> AsyncIterator[tuple[str, Any]]:
        """The run's events from its first, then as they come, until it ends (`modes`: only these)."""
        seen = 0
        while True:
            async with self.changed:
                await self.changed.wait_for(lambda seen=seen: len(self.events) > seen or self.done)
                batch, seen = self.events[seen:], len(self.events)
                ended = self.done
            for event, data in batch:
                if modes is None or event in ("metadata", "error") or event.split("|")[0] in modes:
                    yield event, data
            if ended and seen == len(self.events):
                return

    async def wait(self) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.done)

    def result(self) -> dict:
        """What /wait and /join return: the final values, with the pending interrupts, or the error."""
        if self.error is not None:
            return {"__error__": self.error}
        values = dict(self.values) if isinstance(self.values, dict) else {}
        return {**values, "__interrupt__": self.interrupts} if self.interrupts else values


class RunRegistry:
    """The runs this replica executes or executed lately, and the active one per thread."""

    def __init__(self) -> None:
        self.runs: OrderedDict[str, LiveRun] = OrderedDict()
        self.active: dict[tuple[str, str], LiveRun] = {}
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}

    def lock(self, tenant: str, thread_id: str) -> asyncio.Lock:
        """Held while a run is checked and started on the thread: two requests cannot both start one."""
        return self.locks.setdefault((tenant, thread_id), asyncio.Lock())

    def get(self, run_id: str) -> LiveRun | None:
        return self.runs.get(run_id)

    def busy(self, tenant: str, thread_id: str) -> LiveRun | None:
        """The thread's run that has not finished, if any."""
        live = self.active.get((tenant, thread_id))
        return live if live is not None and not live.done else None

    def add(self, live: LiveRun) -> None:
        self.runs[live.run_id] = live
        self.active[(live.tenant, live.run["thread_id"])] = live
        finished = [rid for rid, r in self.runs.items() if r.done]
        for rid in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self.runs[rid]

    async def cancel(self, live: LiveRun) -> None:
        """Stop the run (its engine rows stop at their next token) and wait until it has ended."""
        if live.task is not None and not live.task.done():
            live.task.cancel()
        await live.wait()


async def execute(
    live: LiveRun, graph: Any, graph_input: Any, config: dict, on_end: Any, **options: Any
) -> None:
    """Run the graph (`options`: interrupt_before/after), recording its events; `on_end(status,
    interrupted)` stores the outcome."""
    await live.emit("metadata", {"run_id": live.run_id, "attempt": 1})
    internal = ["values", "updates", *(["messages"] if "messages-tuple" in live.modes else [])]
    status = "error"
    try:
        if "events" in live.modes:
            events = graph.astream_events(graph_input, config, version="v2", stream_mode=internal, **options)
            async for event in events:
                if event["event"] == "on_chain_stream" and not event.get("parent_ids"):
                    await _chunk(live, *event["data"]["chunk"])
                await live.emit("events", event)
        else:
            async for mode, data in graph.astream(graph_input, config, stream_mode=internal, **options):
                await _chunk(live, mode, data)
        status = "success"
    except asyncio.CancelledError:
        status = "interrupted"
    except Exception as error:  # reported in the stream and by /wait; the thread shows "error"
        if not isinstance(error, HfchainError):
            log.exception("agent run %s failed", live.run_id)
        live.error = {"error": type(error).__name__, "message": getattr(error, "message", str(error))}
        await live.emit("error", live.error)
    finally:
        try:
            await asyncio.shield(asyncio.to_thread(on_end, status, bool(live.interrupts)))
        finally:
            await live.finish()


async def _chunk(live: LiveRun, mode: str, data: Any) -> None:
    """One item of the graph's stream: kept for the outcome, sent if the client asked for its mode."""
    if mode == "values":
        live.values = data
        if isinstance(data, dict) and data.get("__interrupt__"):
            live.interrupts = list(data["__interrupt__"])
        if "values" in live.modes:
            await live.emit("values", data)
    elif mode == "updates":
        pending = data.get("__interrupt__") if isinstance(data, dict) else None
        if pending:
            live.interrupts = list(pending)
        if "updates" in live.modes:
            await live.emit("updates", data)
        elif pending and "values" in live.modes:  # a client not reading updates still learns of the pause
            await live.emit("values", {"__interrupt__": pending})
    elif mode == "messages" and "messages-tuple" in live.modes:
        await live.emit("messages", list(data))
