"""create_app(settings, backend) -> the FastAPI application."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from chains.backends import Backend, build_backend
from chains.errors import HfchainError
from chains.settings import Settings, get_settings
from server.guard import RequestGuard, request_id_var
from server.ops import ops_router
from server.routes import mount_chains

log = logging.getLogger("hfchain.server")
MAX_BODY_BYTES = 2 * 1024 * 1024


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    """Build the app from injected parts; the backend starts loading when the app starts."""
    settings = settings or get_settings()
    backend = backend or build_backend(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        backend.start()
        yield
        backend.stop()

    app = FastAPI(
        title="hfchain",
        version="0.1.0",
        lifespan=lifespan,
        description="Hugging Face models through LangChain runnables",
    )
    app.state.settings, app.state.backend = settings, backend
    app.include_router(ops_router())
    mount_chains(app, backend, settings)
    app.add_exception_handler(HfchainError, _domain_error)
    app.add_exception_handler(ValidationError, _invalid_input)
    app.add_middleware(RequestGuard, max_body_bytes=MAX_BODY_BYTES)
    return app


async def _domain_error(request: Request, error: HfchainError) -> JSONResponse:
    retry = error.details.get("retry_after")
    headers = {"Retry-After": str(retry)} if retry else None
    body = {**error.to_dict(), "request_id": request_id_var.get()}
    return JSONResponse(body, status_code=error.status_code, headers=headers)


async def _invalid_input(request: Request, error: ValidationError) -> JSONResponse:
    """Input that failed validation past LangServe's own checks (e.g. a batch item)."""
    errors = jsonable_encoder(error.errors(include_url=False, include_context=False))
    return JSONResponse({"detail": errors, "request_id": request_id_var.get()}, status_code=422)
