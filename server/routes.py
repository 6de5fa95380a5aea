"""LangServe routes for the chains (the only module that imports langserve)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.runnables import Runnable
from langserve import add_routes as langserve_routes

from chains import build_generate_chain
from chains import chat as chat_chain
from chains import classify as classify_chain
from chains import generate as generate_chain
from chains import summarize as summarize_chain
from chains.agent.runner import AGENT_KEYS, AgentRunnable, build_agent
from chains.backends import Backend
from chains.classify.registry import Registry
from chains.errors import InvalidInput
from chains.knobs import validate_knobs
from chains.knowledge.answers import AskInput, ask_style, build_ask_chain
from chains.knowledge.collections import Knowledge
from chains.knowledge.embeddings import EmbeddingService, build_embed_chain
from chains.knowledge.retrieval import build_retrieve_chain
from chains.sessions import SessionStore
from chains.settings import Settings
from chains.tenants.caller import tenant_of
from server.callers import run_config

Preflight = Callable[[Backend, object, dict], None]


def request_checker(
    backend: Backend, settings: Settings, preflight: Preflight, extra: frozenset[str] = frozenset()
) -> Any:
    """A per-request hook run before any output is sent (so streams get real status codes too):
    bad knobs -> 422, model still loading -> 503, input over the token budget -> 413.

    `extra`: configurable keys of the route besides the knobs (checked by its preflight).
    """

    async def check(config: dict, request: Request) -> dict:
        configurable = config.get("configurable") or {}
        if not isinstance(configurable, dict):
            raise InvalidInput("config.configurable must be an object of knob values")
        knob_values = {k: v for k, v in configurable.items() if k not in extra}
        knobs = validate_knobs(knob_values, settings.max_new_tokens_limit)
        backend.require_ready()
        own = {k: v for k, v in configurable.items() if k in extra and v is not None}
        configurable = {**knobs.model_dump(exclude_none=True), **own}
        checked = run_config(request, {**config, "configurable": configurable})
        items = _inputs(await request.json(), _call_index(request))
        # token counting can take a while on a large body: keep it off the event loop
        await run_in_threadpool(lambda: [preflight(backend, item, checked) for item in items])
        return checked

    return check


def _call_index(request: Request) -> int:
    """How many times this hook already ran for this request (a batch with a config per input)."""
    index = getattr(request.state, "hfchain_checks", 0)
    request.state.hfchain_checks = index + 1
    return index


def _inputs(body: object, index: int) -> list:
    """The inputs a config applies to: the "input", all "inputs", or the index-th with per-input configs."""
    if not isinstance(body, dict):
        return []
    if "inputs" not in body:
        return [body["input"]] if "input" in body else []
    inputs = body["inputs"] if isinstance(body["inputs"], list) else []
    if isinstance(body.get("config"), list):  # LangServe calls the hook once per config, in order
        return inputs[index : index + 1]
    return inputs


def mount_chains(
    app: FastAPI,
    backend: Backend,
    settings: Settings,
    chat: Runnable,
    sessions: SessionStore | None,
    knowledge: Knowledge | None = None,
) -> AgentRunnable:
    """/generate, /chat, /summarize, /classify, /agent: invoke, batch, stream, stream_events, schemas,
    playground. Returns the agent (its MCP tools load when the app starts).

    `chat` is the chat chain the OpenAI route also serves (same sessions and limits).
    """
    system = chat_chain.system_prompt_or_default(settings.system_prompt)
    add_routes = partial(langserve_routes, disabled_endpoints=None if settings.playground else ["playground"])
    generate = build_generate_chain(backend)
    add_routes(
        app,
        generate,
        path="/generate",
        per_req_config_modifier=request_checker(backend, settings, generate_chain.preflight),
    )
    add_routes(
        app,
        chat,
        path="/chat",
        per_req_config_modifier=request_checker(
            backend,
            settings,
            partial(chat_chain.preflight, system=system, sessions=sessions),
            extra=frozenset({"session_id"}),
        ),
    )
    summarize = summarize_chain.build_summarize_chain(backend)
    add_routes(
        app,
        summarize,
        path="/summarize",
        per_req_config_modifier=request_checker(backend, settings, summarize_chain.preflight),
    )
    registry = Registry(settings.classifiers_dir)
    methods = classify_chain.build_classify_methods(backend, settings.classifier, registry)
    default = settings.classify_method

    def classify_preflight(_backend: Backend, value: object, config: dict) -> None:
        classify_chain.preflight(methods, value, default, tenant_of(config))

    classify = classify_chain.build_classify_chain(methods, default)
    add_routes(
        app,
        classify,
        path="/classify",
        per_req_config_modifier=request_checker(backend, settings, classify_preflight),
    )
    agent = build_agent(backend, settings, summarize, classify, sessions, knowledge)

    def agent_preflight(_backend: Backend, value: object, config: dict) -> None:
        agent.check(value, config)

    add_routes(
        app,
        agent,
        path="/agent",
        per_req_config_modifier=request_checker(backend, settings, agent_preflight, extra=AGENT_KEYS),
    )
    app.state.chains = {"generate": generate, "summarize": summarize, "classify": classify, "agent": agent}
    return agent


def mount_embed(app: FastAPI, service: EmbeddingService, settings: Settings) -> None:
    """/embed (LangServe): texts -> the served encoder's vectors."""

    async def check(config: dict, request: Request) -> dict:
        configurable = config.get("configurable") or {}
        if configurable:
            raise InvalidInput("/embed takes no configurable values: leave config.configurable out")
        return run_config(request, {**config, "configurable": {}})

    disabled = None if settings.playground else ["playground"]
    langserve_routes(
        app,
        build_embed_chain(service),
        path="/embed",
        per_req_config_modifier=check,
        disabled_endpoints=disabled,
    )


def mount_knowledge(app: FastAPI, knowledge: Knowledge, backend: Backend, settings: Settings) -> None:
    """/retrieve (Documents from the caller's collection) and /ask (a cited answer, streamed)."""
    disabled = None if settings.playground else ["playground"]

    async def check_retrieve(config: dict, request: Request) -> dict:
        if config.get("configurable"):
            raise InvalidInput("/retrieve takes no configurable values: leave config.configurable out")
        return run_config(request, {**config, "configurable": {}})

    retrieve, ask = (
        build_retrieve_chain(knowledge),
        build_ask_chain(knowledge, backend, settings.ask_min_score, ask_style(settings)),
    )
    app.state.knowledge_chains = {"retrieve": retrieve, "ask": ask}
    langserve_routes(
        app,
        retrieve,
        path="/retrieve",
        per_req_config_modifier=check_retrieve,
        disabled_endpoints=disabled,
    )

    def ask_preflight(_backend: Backend, value: object, config: dict) -> None:
        asked = AskInput.model_validate(value)  # 422 before any event is streamed
        knowledge.store.usable(tenant_of(config), asked.collection)  # 404 for another tenant's, too

    langserve_routes(
        app,
        ask,
        path="/ask",
        per_req_config_modifier=request_checker(backend, settings, ask_preflight),
        disabled_endpoints=disabled,
    )
