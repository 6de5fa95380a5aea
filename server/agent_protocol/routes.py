"""The Agent Protocol routes: the hfchain agent as assistant "agent", threads owned by the caller's tenant
(their state in LangGraph's checkpointer), and runs that stream, wait, join and cancel."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse

from chains.agent.approvals import KEY as APPROVAL_KEY
from chains.agent.runner import AgentRunnable
from chains.agent.threads import ThreadStore, checkpoint_key
from chains.errors import Conflict, InvalidInput, ModelNotReady, NotFound
from server.agent_protocol import bodies
from server.agent_protocol.runs import STREAM_MODES, LiveRun, RunRegistry, execute
from server.agent_protocol.wire import checkpoint, plain, sse, state_view
from server.callers import run_config, tenant

GRAPH_ID = "agent"
ASSISTANT_ID = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), GRAPH_ID))
ModesQuery = Annotated[list[str] | None, Query()]
EXAMPLE = '{"decisions": [{"type": "approve"}]}'
RESERVED = {"thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map"}  # set by the server


class Threads:
    """What the routes share: the agent, the thread store, the checkpointer (opened when the app starts)
    and this replica's runs."""

    def __init__(self, agent: AgentRunnable, store: ThreadStore) -> None:
        self.agent, self.store, self.registry = agent, store, RunRegistry()
        self.checkpointer: Any = None
        self._reader: tuple[Any, dict] | None = None  # the graph state reads use

    def graph(self, config: dict | None = None) -> tuple[Any, dict]:
        """The agent graph for a run's config; without one (reading state), one graph built once."""
        if self.checkpointer is None:
            raise ModelNotReady("agent threads are starting; retry shortly", retry_after=1)
        if config:
            return self.agent.graph(config, self.checkpointer)
        if self._reader is None:
            self._reader = self.agent.graph({}, self.checkpointer)
        return self._reader

    def owned(self, request: Request, thread_id: str) -> dict:
        """The caller's thread, or 404."""
        found = self.store.get(tenant(request), thread_id)
        if found is None:
            raise NotFound(f"thread {thread_id!r} not found: create it with POST /threads")
        return found

    def config(self, request: Request, thread_id: str, checkpoint_id: str | None = None) -> dict:
        configurable = {"thread_id": checkpoint_key(tenant(request), thread_id), "checkpoint_ns": ""}
        return {"configurable": configurable | ({"checkpoint_id": checkpoint_id} if checkpoint_id else {})}

    async def state(self, request: Request, thread_id: str, checkpoint_id: str | None = None) -> dict:
        graph, _ = self.graph()
        snapshot = await graph.aget_state(self.config(request, thread_id, checkpoint_id))
        return state_view(snapshot, thread_id)


def assistant() -> dict[str, Any]:
    """The hfchain agent, as the protocol lists an assistant."""
    return {
        "assistant_id": ASSISTANT_ID,
        "graph_id": GRAPH_ID,
        "name": GRAPH_ID,
        "description": "hfchain's tool-calling agent",
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": "1970-01-01T00:00:00+00:00",
        "updated_at": "1970-01-01T00:00:00+00:00",
    }


def _assistant(assistant_id: str) -> dict:
    if assistant_id not in (ASSISTANT_ID, GRAPH_ID):
        raise NotFound(
            f"assistant {assistant_id!r} not found: this server serves {GRAPH_ID!r} ({ASSISTANT_ID})"
        )
    return assistant()


def agent_protocol_router(threads: Threads) -> APIRouter:
    """Assistants, threads and runs (the subset langgraph-sdk and RemoteGraph use)."""
    router = APIRouter(tags=["agent protocol"])

    # --- assistants -----------------------------------------------------------------------------

    @router.post("/assistants/search")
    def search_assistants(body: bodies.AssistantSearch) -> list[dict]:
        match = body.graph_id in (None, GRAPH_ID) and body.name in (None, GRAPH_ID)
        return [assistant()][body.offset : body.offset + body.limit] if match else []

    @router.get("/assistants/{assistant_id}")
    def get_assistant(assistant_id: str) -> dict:
        return _assistant(assistant_id)

    @router.get("/assistants/{assistant_id}/schemas")
    def assistant_schemas(assistant_id: str) -> dict:
        _assistant(assistant_id)
        graph, _ = threads.graph()
        return {
            "graph_id": GRAPH_ID,
            "input_schema": graph.get_input_jsonschema(),
            "output_schema": graph.get_output_jsonschema(),
            "state_schema": graph.get_output_jsonschema(),
            "config_schema": threads.agent.config_schema().model_json_schema(),
            "context_schema": None,
        }

    @router.get("/assistants/{assistant_id}/graph")
    def assistant_graph(assistant_id: str, xray: bool | int = False) -> dict:
        _assistant(assistant_id)
        graph, _ = threads.graph()
        drawn = graph.get_graph(xray=xray).to_json()
        return {"nodes": drawn["nodes"], "edges": [_edge(e) for e in drawn["edges"]]}

    # --- threads --------------------------------------------------------------------------------

    @router.post("/threads")
    async def create_thread(body: bodies.ThreadCreate, request: Request) -> dict:
        owner = tenant(request)
        made = await run_in_threadpool(threads.store.create, owner, body.thread_id, body.metadata)
        if made is not None:
            return made
        if body.if_exists == "do_nothing":
            return threads.owned(request, body.thread_id or "")
        raise Conflict(f"thread {body.thread_id!r} exists: use another id, or send if_exists: do_nothing")

    @router.post("/threads/search")
    def search_threads(body: bodies.ThreadSearch, request: Request) -> list[dict]:
        return threads.store.search(
            tenant(request), body.metadata, body.status, body.ids, body.limit, body.offset
        )

    @router.get("/threads/{thread_id}")
    def get_thread(thread_id: str, request: Request) -> dict:
        return threads.owned(request, thread_id)

    @router.delete("/threads/{thread_id}", status_code=204)
    async def delete_thread(thread_id: str, request: Request) -> Response:
        threads.owned(request, thread_id)
        if live := threads.registry.busy(tenant(request), thread_id):
            await threads.registry.cancel(live)
        await _forget(threads, tenant(request), thread_id)
        return Response(status_code=204)

    @router.get("/threads/{thread_id}/state")
    async def get_state(thread_id: str, request: Request, subgraphs: bool = False) -> dict:
        threads.owned(request, thread_id)
        return await threads.state(request, thread_id)

    @router.get("/threads/{thread_id}/state/{checkpoint_id}")
    async def get_state_at(thread_id: str, checkpoint_id: str, request: Request) -> dict:
        threads.owned(request, thread_id)
        return await threads.state(request, thread_id, checkpoint_id)

    @router.post("/threads/{thread_id}/state/checkpoint")
    async def get_state_checkpoint(thread_id: str, body: bodies.CheckpointQuery, request: Request) -> dict:
        threads.owned(request, thread_id)
        return await threads.state(request, thread_id, (body.checkpoint or {}).get("checkpoint_id"))

    @router.post("/threads/{thread_id}/state")
    async def update_state(thread_id: str, body: bodies.StateUpdate, request: Request) -> dict:
        threads.owned(request, thread_id)
        if threads.registry.busy(tenant(request), thread_id):
            raise Conflict(f"thread {thread_id!r} has a run in progress: update its state once it ends")
        graph, _ = threads.graph()
        at = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
        from langgraph.errors import InvalidUpdateError

        try:
            config = await graph.aupdate_state(
                threads.config(request, thread_id, at), body.values, as_node=body.as_node
            )
        except (InvalidUpdateError, ValueError, TypeError, KeyError) as error:
            raise InvalidInput(
                f"the state update cannot be applied ({error}): send values such as "
                '{"messages": [...]}, and as_node naming a node of the graph (model, tools)'
            ) from None
        return {"checkpoint": checkpoint(config, thread_id)}

    @router.post("/threads/{thread_id}/history")
    async def history(thread_id: str, body: bodies.HistoryQuery, request: Request) -> list[dict]:
        threads.owned(request, thread_id)
        graph, _ = threads.graph()
        at = (body.checkpoint or {}).get("checkpoint_id")
        before = body.before if not isinstance(body.before, dict) else body.before.get("checkpoint_id")
        before_config = threads.config(request, thread_id, before) if before else None
        states = graph.aget_state_history(
            threads.config(request, thread_id, at),
            filter=body.metadata,
            before=before_config,
            limit=body.limit,
        )
        return [state_view(snapshot, thread_id) async for snapshot in states]

    # --- runs -----------------------------------------------------------------------------------

    @router.post("/threads/{thread_id}/runs/stream")
    async def stream_run(thread_id: str, body: bodies.RunCreate, request: Request) -> EventSourceResponse:
        return _streamed(await _start(threads, request, thread_id, body), body)

    @router.post("/runs/stream")
    async def stream_stateless(body: bodies.RunCreate, request: Request) -> EventSourceResponse:
        return _streamed(await _start(threads, request, None, body), body)

    @router.post("/threads/{thread_id}/runs/wait")
    async def wait_run(thread_id: str, body: bodies.RunCreate, request: Request) -> JSONResponse:
        return await _waited(await _start(threads, request, thread_id, body), body)

    @router.post("/runs/wait")
    async def wait_stateless(body: bodies.RunCreate, request: Request) -> JSONResponse:
        return await _waited(await _start(threads, request, None, body), body)

    @router.post("/threads/{thread_id}/runs")
    async def create_run(thread_id: str, body: bodies.RunCreate, request: Request) -> dict:
        return (await _start(threads, request, thread_id, body)).run

    @router.post("/runs")
    async def create_stateless(body: bodies.RunCreate, request: Request) -> dict:
        return (await _start(threads, request, None, body)).run

    @router.get("/threads/{thread_id}/runs")
    def list_runs(
        thread_id: str,
        request: Request,
        limit: int = Query(10, ge=1, le=1000),
        offset: int = 0,
        status: str = "",
    ) -> list[dict]:
        threads.owned(request, thread_id)
        return threads.store.runs(tenant(request), thread_id, status or None, limit, offset)

    @router.get("/threads/{thread_id}/runs/{run_id}")
    def get_run(thread_id: str, run_id: str, request: Request) -> dict:
        return _run(threads, request, thread_id, run_id)

    @router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=202)
    async def cancel_run(thread_id: str, run_id: str, request: Request, wait: str = "0") -> Response:
        _run(threads, request, thread_id, run_id)
        live = threads.registry.get(run_id)
        if live is not None and not live.done:
            live.task.cancel()
            if wait.lower() in ("1", "true", "yes"):
                await live.wait()
                return JSONResponse(plain(live.result()))
        return Response(status_code=202)

    @router.get("/threads/{thread_id}/runs/{run_id}/join")
    async def join_run(thread_id: str, run_id: str, request: Request) -> JSONResponse:
        _run(threads, request, thread_id, run_id)
        live = threads.registry.get(run_id)
        if live is None:  # ran on another replica, or long ago: the thread's state now
            return JSONResponse((await threads.state(request, thread_id))["values"])
        await live.wait()
        return JSONResponse(plain(live.result()))

    @router.get("/threads/{thread_id}/runs/{run_id}/stream")
    async def join_stream(
        thread_id: str,
        run_id: str,
        request: Request,
        stream_mode: Annotated[list[str] | None, Query()] = None,
    ) -> EventSourceResponse:
        _run(threads, request, thread_id, run_id)
        live = threads.registry.get(run_id)
        if live is None:
            raise NotFound(f"run {run_id!r} is not running on this replica: GET .../join for its result")
        modes = tuple(m for m in stream_mode or [] if m) or None
        return EventSourceResponse(_follow(live, modes), ping=15)

    return router


def _run(threads: Threads, request: Request, thread_id: str, run_id: str) -> dict:
    threads.owned(request, thread_id)
    found = threads.store.run(tenant(request), thread_id, run_id)
    if found is None:
        raise NotFound(f"run {run_id!r} not found on thread {thread_id!r}")
    return found


def _edge(edge: dict) -> dict:
    """An edge with only the keys RemoteGraph's DrawableEdge takes."""
    return {k: edge[k] for k in ("source", "target", "data", "conditional") if k in edge}


async def _follow(live: LiveRun, modes: tuple[str, ...] | None) -> Any:
    async for event, data in live.follow(modes):
        yield sse(event, data)


def _streamed(live: LiveRun, body: bodies.RunCreate) -> EventSourceResponse:
    """The run's events as SSE; a client that leaves cancels the run (on_disconnect: cancel)."""

    async def events() -> Any:
        try:
            async for event, data in live.follow():
                yield sse(event, data)
        finally:
            if not live.done and body.on_disconnect == "cancel" and live.task is not None:
                live.task.cancel()

    location = f"/threads/{live.run['thread_id']}/runs/{live.run_id}"
    return EventSourceResponse(events(), ping=15, headers={"Content-Location": location})


async def _waited(live: LiveRun, body: bodies.RunCreate) -> JSONResponse:
    """The run's final values once it ends; a client that leaves cancels it (on_disconnect: cancel)."""
    try:
        await live.wait()
    except asyncio.CancelledError:
        if body.on_disconnect == "cancel" and live.task is not None:
            live.task.cancel()
        raise
    return JSONResponse(plain(live.result()))


async def _start(
    threads: Threads, request: Request, thread_id: str | None, body: bodies.RunCreate
) -> LiveRun:
    """Check the request, settle a busy thread by the multitask strategy, and start the run's task."""
    _assistant(body.assistant_id)
    request.app.state.backend.require_ready()
    owner, stateless = tenant(request), thread_id is None
    thread_id = thread_id or str(uuid.uuid4())
    if stateless or (threads.store.get(owner, thread_id) is None and body.if_not_exists == "create"):
        await run_in_threadpool(threads.store.create, owner, thread_id, {"graph_id": GRAPH_ID})
    threads.owned(request, thread_id)
    async with threads.registry.lock(owner, thread_id):
        await _settle(threads, owner, thread_id, body.multitask_strategy)
        config = await run_in_threadpool(_run_config, threads, request, owner, thread_id, body)
        graph, graph_config = threads.graph(config)
        graph_input = await _input(threads, request, thread_id, body)
        run = await run_in_threadpool(
            threads.store.add_run, owner, thread_id, GRAPH_ID, body.metadata, body.multitask_strategy
        )
        live = LiveRun(run, owner, body.modes)
        threads.registry.add(live)
    await run_in_threadpool(threads.store.set, owner, thread_id, status="busy")
    forget = stateless and body.on_completion == "delete"

    def on_end(status: str, interrupted: bool) -> None:
        threads.store.set_run(live.run_id, status)
        state = "error" if status == "error" else "interrupted" if interrupted else "idle"
        threads.store.set(owner, thread_id, status=state)

    async def run_then_tidy() -> None:
        pauses = {"interrupt_before": body.interrupt_before, "interrupt_after": body.interrupt_after}
        options = {k: v for k, v in pauses.items() if v}
        await execute(live, graph, graph_input, run_config(request, graph_config), on_end, **options)
        if forget:
            await _forget(threads, owner, thread_id)

    live.task = asyncio.create_task(run_then_tidy())
    return live


async def _settle(threads: Threads, owner: str, thread_id: str, strategy: str) -> None:
    """A thread runs one run at a time: reject (409), interrupt or roll back the running one, or enqueue."""
    busy = threads.registry.busy(owner, thread_id)
    if busy is None:
        return
    if strategy == "reject":
        raise Conflict(
            f"thread {thread_id!r} is busy with run {busy.run_id}: join or cancel it, or send "
            "multitask_strategy interrupt (cancel it) or enqueue (wait for it)"
        )
    if strategy == "enqueue":
        await busy.wait()
    else:
        await threads.registry.cancel(busy)


def _run_config(
    threads: Threads, request: Request, owner: str, thread_id: str, body: bodies.RunCreate
) -> dict:
    """The run's config: the client's configurable (knobs, max_steps, require_approval) and the thread's
    checkpoint key; a run naming require_approval sets it for the thread's later runs (resumes)."""
    config = dict(body.config or {})
    configurable = {k: v for k, v in (config.get("configurable") or {}).items() if k not in RESERVED}
    names = configurable.get(APPROVAL_KEY)
    if names is not None:
        known = {t.name for t in threads.agent.toolbox.tools}
        if not isinstance(names, list) or not all(isinstance(n, str) and n in known for n in names):
            raise InvalidInput(
                f"config.configurable.{APPROVAL_KEY} must be a list of the agent's tools: {sorted(known)}"
            )
        threads.store.set(owner, thread_id, approvals=names)
    configurable[APPROVAL_KEY] = threads.store.approvals(owner, thread_id)
    configurable["thread_id"] = checkpoint_key(owner, thread_id)
    threads.agent.limits.for_request({"configurable": configurable})  # max_steps, tool_choice: 400 now
    return {**config, "configurable": configurable}


async def _input(threads: Threads, request: Request, thread_id: str, body: bodies.RunCreate) -> Any:
    """The graph's input: the new messages, or a Command resuming a paused run (409 if nothing is paused)."""
    if body.command is None:
        if body.input is None and not (await threads.state(request, thread_id))["next"]:
            raise InvalidInput('a run needs input (e.g. {"messages": [...]}) or command (to resume)')
        return body.input  # None: go on from where interrupt_before/after stopped
    if body.command.resume is not None:
        state = await threads.state(request, thread_id)
        pending = state["interrupts"] or [i for t in state["tasks"] for i in t["interrupts"]]
        if not pending:
            raise Conflict(f"thread {thread_id!r} has no paused run to resume: start a run with input")
        _check_decisions(pending[0].get("value"), body.command.resume)
    from langgraph.types import Command  # langgraph loads at the first agent run, not at the server's start

    goto = body.command.goto or ()
    return Command(resume=body.command.resume, update=body.command.update, goto=goto)


def _check_decisions(asked: Any, resume: Any) -> None:
    """A resume for an approval pause: one decision per pending call (422 naming what is wrong)."""
    if not isinstance(asked, dict) or "action_requests" not in asked:
        return  # a pause of another kind: its own resume value
    try:
        decisions = bodies.Decisions.model_validate(resume).decisions
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(
            f'command.resume.{where}: {first["msg"]} (send {{"decisions": [{{"type": "approve"}}]}}, or '
            "edit with edited_action, or reject with a message)"
        ) from None
    calls = len(asked["action_requests"])
    if len(decisions) != calls:
        raise InvalidInput(
            f"command.resume.decisions: {len(decisions)} given for {calls} pending calls: send one each"
        )


async def _forget(threads: Threads, owner: str, thread_id: str) -> None:
    """Delete a thread's row, runs and checkpoints."""
    await run_in_threadpool(threads.store.delete, owner, thread_id)
    if threads.checkpointer is not None:
        with contextlib.suppress(Exception):  # nothing checkpointed yet
            await threads.checkpointer.adelete_thread(checkpoint_key(owner, thread_id))


__all__ = ["STREAM_MODES", "Threads", "agent_protocol_router"]
