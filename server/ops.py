"""Operational routes: liveness and readiness; session export and reset."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chains.agent.toolbox import Toolbox
from chains.classify.registry import NAME_PATTERN, Registry
from chains.errors import NotFound
from chains.sessions import SESSION_ID_PATTERN, SessionStore

SessionId = Path(pattern=SESSION_ID_PATTERN, description="The session id given to /chat or /v1")
ClassifierName = Path(pattern=NAME_PATTERN, description="A trained classifier's name")


def ops_router() -> APIRouter:
    """GET /health (the process answers), GET /ready (the model can serve), GET /metrics (Prometheus)."""
    router = APIRouter(tags=["ops"])

    @router.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @router.get("/metrics")
    def metrics(request: Request) -> Response:
        registry = request.app.state.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/ready")
    def ready(request: Request) -> JSONResponse:
        backend = request.app.state.backend
        body = {"model": backend.model_name, "backend": backend.name}
        engine = backend.engine
        if backend.is_ready():
            return JSONResponse({"status": "ready", **body})
        error = getattr(engine, "load_error", None)
        status = {"status": "failed", "error": str(error)} if error else {"status": "loading"}
        return JSONResponse({**status, **body}, status_code=503, headers={"Retry-After": "2"})

    return router


def sessions_router(sessions: SessionStore) -> APIRouter:
    """GET /sessions/{id} (export the stored conversation) and DELETE /sessions/{id} (reset it)."""
    router = APIRouter(prefix="/sessions", tags=["sessions"])

    @router.get("/{session_id}")
    async def export(session_id: str = SessionId) -> dict:
        found = await run_in_threadpool(sessions.export, session_id)
        if found is None:
            raise NotFound(f"no session {session_id!r}: it has no stored turn (or was deleted)")
        return found

    @router.delete("/{session_id}")
    async def reset(session_id: str = SessionId) -> dict:
        removed = await run_in_threadpool(sessions.delete, session_id)
        return {"session_id": session_id, "deleted_messages": removed}

    return router


def agent_router(toolbox: Toolbox) -> APIRouter:
    """GET /agent/tools: the tools the agent may call, and the MCP servers that gave none (with why)."""
    router = APIRouter(tags=["agent"])

    @router.get("/agent/tools")
    def tools() -> dict:
        return toolbox.describe()

    return router


def classifiers_router(registry: Registry) -> APIRouter:
    """GET /classifiers (the trained ones, with labels and metrics), GET and DELETE /classifiers/{name}."""
    router = APIRouter(prefix="/classifiers", tags=["classifiers"])

    @router.get("")
    async def listing() -> dict:
        return {"classifiers": await run_in_threadpool(registry.describe)}

    @router.get("/{name}")
    async def one(name: str = ClassifierName) -> dict:
        card = await run_in_threadpool(registry.card, name)
        if card is None:
            raise NotFound(f"no classifier named {name!r}: GET /classifiers lists them")
        return card

    @router.delete("/{name}")
    async def remove(name: str = ClassifierName) -> dict:
        await run_in_threadpool(registry.delete, name)
        return {"name": name, "deleted": True}

    return router
