"""LangServe routes for the chains (the only module that imports langserve)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from langserve import add_routes

from chains import build_chat_chain, build_generate_chain
from chains.backends import Backend
from chains.errors import InvalidInput, ModelNotReady
from chains.knobs import validate_knobs
from chains.settings import Settings


def knob_checker(backend: Backend, settings: Settings) -> Any:
    """A per-request config hook: refuse bad knobs (422) and requests before the model is ready (503)."""

    def check(config: dict, request: Request) -> dict:
        configurable = config.get("configurable") or {}
        if not isinstance(configurable, dict):
            raise InvalidInput("config.configurable must be an object of knob values")
        knobs = validate_knobs(configurable, settings.max_new_tokens_limit)
        if not backend.is_ready():
            raise ModelNotReady(f"model {backend.model_name} is still loading; retry shortly", retry_after=2)
        return {**config, "configurable": knobs.model_dump(exclude_none=True)}

    return check


def mount_chains(app: FastAPI, backend: Backend, settings: Settings) -> None:
    """/generate and /chat, each with invoke, batch, stream, stream_events, schemas and playground."""
    checker = knob_checker(backend, settings)
    add_routes(app, build_generate_chain(backend), path="/generate", per_req_config_modifier=checker)
    add_routes(
        app,
        build_chat_chain(backend, settings.system_prompt),
        path="/chat",
        per_req_config_modifier=checker,
        playground_type="chat",
    )
