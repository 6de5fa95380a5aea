"""create_app(settings, backend) -> the FastAPI application."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from chains.backends import Backend, build_backend
from chains.chat import build_chat_chain, system_prompt_or_default
from chains.errors import HfchainError
from chains.sessions import SessionStore
from chains.settings import Settings, get_settings
from server.errors import domain_error, invalid_input
from server.guard import RequestGuard
from server.openai_api import openai_router
from server.ops import ops_router, sessions_router
from server.routes import mount_chains
from server.tgi_api import tgi_router

log = logging.getLogger("hfchain.server")
MAX_BODY_BYTES = 2 * 1024 * 1024


def create_app(
    settings: Settings | None = None, backend: Backend | None = None, sessions: SessionStore | None = None
) -> FastAPI:
    """Build the app from injected parts; the backend starts loading when the app starts."""
    settings = settings or get_settings()
    backend = backend or build_backend(settings)
    sessions = sessions or SessionStore(settings.sessions_database)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        backend.start()
        yield
        backend.stop()
        sessions.close()

    app = FastAPI(
        title="hfchain",
        version="0.1.0",
        lifespan=lifespan,
        description="Hugging Face models through LangChain runnables",
    )
    system = system_prompt_or_default(settings.system_prompt)
    chat = build_chat_chain(backend, system, sessions)
    app.state.settings, app.state.backend, app.state.sessions = settings, backend, sessions
    app.state.system_prompt, app.state.started = system, int(time.time())
    app.include_router(ops_router())
    app.include_router(sessions_router(sessions))
    app.include_router(openai_router(chat, settings.sessions_from_user))
    app.include_router(tgi_router(backend.configurable_llm()))
    mount_chains(app, backend, settings, chat, sessions)
    app.add_exception_handler(HfchainError, domain_error)
    app.add_exception_handler(ValidationError, invalid_input)
    app.add_exception_handler(RequestValidationError, invalid_input)
    app.add_middleware(RequestGuard, max_body_bytes=MAX_BODY_BYTES)
    return app
