"""create_app(settings, backend) -> the FastAPI application."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError

from chains.agent.threads import ThreadStore, open_checkpointer
from chains.agent.toolbox import load_mcp_tools
from chains.backends import Backend, build_backend
from chains.backends.encoder import build_encoder
from chains.chat import build_chat_chain, system_prompt_or_default
from chains.classify.jobs import Trainings
from chains.classify.registry import Registry
from chains.errors import HfchainError
from chains.knowledge import build_knowledge
from chains.knowledge.embeddings import EmbeddingService
from chains.knowledge.jobs import Ingestions
from chains.sessions import SessionStore
from chains.settings import Settings, get_settings
from chains.stored_responses import ResponseStore
from chains.tenants.keys import KeyStore
from chains.tenants.quotas import Quotas
from server.agent_protocol.routes import Threads, agent_protocol_router
from server.anthropic import anthropic_router
from server.auth import ApiKeyGuard
from server.collections_api import UPLOAD_PATH, collections_router
from server.completions_api import completions_router
from server.console import mount_console
from server.embeddings_api import embeddings_router
from server.errors import domain_error, invalid_input
from server.guard import RequestGuard
from server.limits import Admission, InFlight
from server.mcp_server import build_mcp
from server.openai_api import openai_router
from server.ops import agent_router, classifiers_router, ops_router, sessions_router
from server.responses import responses_router
from server.routes import mount_chains, mount_embed, mount_knowledge
from server.startup import after_load
from server.stream_gate import StreamGate
from server.telemetry import Metrics, MetricsObserver, Telemetry
from server.tenants_api import tenants_router
from server.tgi_api import tgi_router
from server.tokenize_api import tokenize_router

log = logging.getLogger("hfchain.server")


def create_app(
    settings: Settings | None = None, backend: Backend | None = None, sessions: SessionStore | None = None
) -> FastAPI:
    """Build the app from injected parts; the backend starts loading when the app starts."""
    settings = settings or get_settings()
    backend = backend or build_backend(settings)
    sessions = sessions or SessionStore(
        settings.sessions_database, settings.sessions_pool_size, settings.sessions_connect_timeout
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        after_load(backend.start())
        await load_mcp_tools(app.state.agent.toolbox, settings.agent_mcp_servers)
        async with (
            open_checkpointer(settings.sessions_database) as saver,
            app.state.mcp.session_manager.run(),
        ):
            app.state.threads.checkpointer = saver
            yield
        backend.stop()
        app.state.ingestions.close()
        sessions.close()

    app = FastAPIOffline(  # /docs and /redoc with their assets served from the package: no CDN
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
    app.include_router(anthropic_router(chat))
    app.include_router(responses_router(chat, ResponseStore(sessions.database)))
    app.include_router(tokenize_router())
    app.include_router(completions_router(backend.configurable_llm()))
    app.include_router(tgi_router(backend.configurable_llm()))
    app.state.embeddings = EmbeddingService(build_encoder(settings))
    app.include_router(embeddings_router(app.state.embeddings))
    mount_embed(app, app.state.embeddings, settings)
    app.state.knowledge = build_knowledge(settings, app.state.embeddings)
    app.state.ingestions = Ingestions(app.state.knowledge)
    app.include_router(
        collections_router(app.state.knowledge, app.state.ingestions, settings.ingest_job_bytes)
    )
    mount_knowledge(app, app.state.knowledge, backend, settings)
    app.state.agent = mount_chains(app, backend, settings, chat, sessions, app.state.knowledge)
    app.include_router(agent_router(app.state.agent.toolbox))
    app.state.threads = Threads(app.state.agent, ThreadStore(sessions.database))
    app.include_router(agent_protocol_router(app.state.threads))
    mount_console(app)
    app.state.mcp = build_mcp(app.state, settings.host)
    app.router.routes.extend(app.state.mcp.streamable_http_app().routes)  # POST /mcp (Streamable HTTP)
    registry = Registry(settings.classifiers_dir)
    app.include_router(classifiers_router(registry, Trainings(registry), settings))
    app.state.keys = KeyStore(sessions.database, settings.keys(), settings.keys_cache_seconds)
    app.state.quotas = Quotas(sessions.database)
    app.include_router(tenants_router(app.state.keys, app.state.quotas))
    app.add_exception_handler(HfchainError, domain_error)
    app.add_exception_handler(ValidationError, invalid_input)
    app.add_exception_handler(RequestValidationError, invalid_input)
    add_middleware(app, settings, backend)
    return app


def add_middleware(app: FastAPI, settings: Settings, backend: Backend) -> None:
    """Outermost first: telemetry, request guard (ids, bodies, disconnects), CORS, keys (scopes, quotas),
    admission."""
    metrics, in_flight = Metrics(settings.replica_id, backend.model_name, lambda: backend.runtime), InFlight()
    engine = getattr(backend.engine, "engine", None)  # the local model's batching engine
    if engine is not None:
        engine.observer = MetricsObserver(metrics)
    metrics.watch(engine, in_flight)
    app.state.metrics = metrics
    metrics.watch_embeddings(app.state.embeddings)
    # Starlette wraps in reverse: the last added is the outermost
    app.add_middleware(StreamGate)  # innermost: LangServe streams answer 429/503 before any event
    app.add_middleware(Admission, limit=settings.max_concurrent_requests, counter=in_flight, metrics=metrics)
    count = _token_counter(backend)
    app.add_middleware(
        ApiKeyGuard, keys=app.state.keys, quotas=app.state.quotas, count=count, metrics=metrics
    )
    if origins := settings.origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "retry-after"],
        )
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        on_disconnect=metrics.disconnects.inc,
        uploads={"/classifiers": settings.train_max_bytes, UPLOAD_PATH: settings.ingest_max_bytes},
    )
    app.add_middleware(Telemetry, metrics=metrics)


def _token_counter(backend: Backend):
    """Tokens in a text by the served model's tokenizer (0 while it loads)."""

    def count(text: str) -> int:
        try:
            return backend.budget().tokens.count_text(text)
        except HfchainError:
            return 0

    return count
