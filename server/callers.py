"""The request's caller (set by the key guard) for the routes, and the run config that carries it."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from chains.tenants.caller import DEFAULT_TENANT, Caller, with_caller
from chains.tenants.meter import Meter


def caller(request: Request) -> Caller | None:
    """Who sent the request (None: the service has no keys)."""
    return request.scope.get("state", {}).get("hfchain_caller")


def tenant(request: Request) -> str:
    """The tenant whose stored things the request reads and changes."""
    found = caller(request)
    return found.tenant if found is not None else DEFAULT_TENANT


def meter(request: Request) -> Meter | None:
    return request.scope.get("state", {}).get("hfchain_meter")


def count_prompt_tokens(request: Request, tokens: int) -> None:
    """Tokens the request's own work read (the encoder's) count for the caller's quota."""
    if (counter := meter(request)) is not None:
        counter.add(prompt_tokens=tokens)


def run_config(request: Request, config: dict[str, Any]) -> dict[str, Any]:
    """`config` with the caller in configurable (the key guard meters the request's runs)."""
    return with_caller(config, caller(request))
