"""Operational routes: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse


def ops_router() -> APIRouter:
    """GET /health (the process answers) and GET /ready (the model can serve)."""
    router = APIRouter(tags=["ops"])

    @router.get("/health")
    def health() -> dict:
        return {"status": "ok"}

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
