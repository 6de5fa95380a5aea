"""Keys over HTTP (POST/GET /admin/keys, DELETE /admin/keys/{name}: admin scope) and GET /usage."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from chains.errors import Forbidden, NotFound
from chains.tenants.audit import audit
from chains.tenants.caller import NAME_PATTERN, Scope
from chains.tenants.keys import MOST, KeyStore
from chains.tenants.quotas import Quotas
from server.callers import caller

KeyName = Path(pattern=NAME_PATTERN, description="The key's name")


class NewKey(BaseModel):
    """POST /admin/keys."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Unique name of the key (shown in usage and logs)")
    scope: Scope = Field("user", description="inference, user or admin")
    tenant: str | None = Field(None, pattern=NAME_PATTERN, description="Whose data (default: name)")
    requests_per_minute: int | None = Field(
        None, ge=1, le=MOST["requests_per_minute"], description="Counted (POST) requests per minute"
    )
    tokens_per_day: int | None = Field(
        None, ge=1, le=MOST["tokens_per_day"], description="Prompt + completion tokens per UTC day"
    )


def tenants_router(keys: KeyStore, quotas: Quotas) -> APIRouter:
    """The key routes (the key guard lets only admin keys in) and the caller's usage."""
    router = APIRouter(tags=["tenants"])

    @router.post("/admin/keys", status_code=201)
    async def create(body: NewKey, request: Request) -> dict:
        if caller(request) is None:
            raise Forbidden(
                "this service has no keys, so no one here is an admin: make the first admin key on the "
                "server with `hfchain keys create NAME --scope admin` (or set HFCHAIN_API_KEYS)",
                required_scope="admin",
            )
        secret, record = await run_in_threadpool(keys.create, **body.model_dump())
        audit("key.created", caller(request), record["tenant"], name=record["name"], scope=record["scope"])
        return {**record, "key": secret}

    @router.get("/admin/keys")
    async def listing() -> dict:
        return {"keys": await run_in_threadpool(keys.list)}

    @router.delete("/admin/keys/{name}")
    async def revoke(request: Request, name: str = KeyName) -> dict:
        record = await run_in_threadpool(keys.revoke, name)
        audit("key.revoked", caller(request), record["tenant"], name=name)
        return record

    @router.get("/usage")
    async def usage(request: Request, days: int = Query(30, ge=1, le=366, description="Days back")) -> dict:
        who = caller(request)
        if who is None:
            raise NotFound("no usage is kept here: this service has no keys (see hfchain keys create)")
        if who.allows("admin"):
            return {"days": days, "usage": await run_in_threadpool(quotas.usage, None, days)}
        limits = {"requests_per_minute": who.requests_per_minute, "tokens_per_day": who.tokens_per_day}
        rows = await run_in_threadpool(quotas.usage, who.name, days)
        return {"key": who.public(), "limits": limits, "days": days, "usage": rows}

    return router
