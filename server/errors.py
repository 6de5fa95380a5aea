"""Error bodies in the protocol each route speaks: Anthropic's on /v1/messages, OpenAI's on the rest of /v1,
TGI's on POST /, ours elsewhere."""

from __future__ import annotations

import contextvars
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from chains.errors import HfchainError

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
OPENAI_PREFIX = "/v1/"
ANTHROPIC_PREFIX = "/v1/messages"
# Anthropic's error types by status, which its client turns into its typed errors
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
TGI_PATHS = {"/"}
AGENT_PROTOCOL_PREFIXES = ("/threads", "/runs", "/assistants")
# TGI's error_type values, which huggingface_hub turns into its typed errors
TGI_TYPES = {400: "validation", 413: "validation", 422: "validation", 429: "overloaded", 503: "overloaded"}


def error_body(
    path: str,
    status: int,
    message: str,
    request_id: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON error body for `path`, carrying the message that says what to fix."""
    if path.startswith(ANTHROPIC_PREFIX):
        error = {"type": ANTHROPIC_TYPES.get(status, "api_error"), "message": message}
        return {"type": "error", "error": error, "request_id": request_id}
    if path.startswith(OPENAI_PREFIX):
        kind = kind if status < 500 or kind != "invalid_request_error" else "server_error"
        error = {"message": message, "type": kind, "param": param, "code": kind if status != 400 else None}
        return {"error": error, "request_id": request_id}
    if path in TGI_PATHS:
        return {"error": message, "error_type": TGI_TYPES.get(status, "generation"), "request_id": request_id}
    return {"detail": message, "type": kind, **(extra or {}), "request_id": request_id}


def openai_status(path: str, status: int) -> int:
    """OpenAI answers every invalid request with 400; keep our other codes (413, 429, 503, ...)."""
    return 400 if path.startswith(OPENAI_PREFIX) and status == 422 else status


async def domain_error(request: Request, error: HfchainError) -> JSONResponse:
    """A typed domain error as a 4xx/5xx in the route's protocol, with Retry-After when known."""
    path = request.url.path
    retry = error.details.get("retry_after")
    headers = {"Retry-After": str(retry)} if retry else None
    status = openai_status(path, error.status_code)
    rid = request_id_var.get()
    body = error_body(path, status, error.message, rid, error.error_type, None, error.details)
    return JSONResponse(body, status_code=status, headers=headers)


async def invalid_input(request: Request, error: ValidationError | RequestValidationError) -> JSONResponse:
    """Input that failed validation: 422 listing each problem (400 with the first one on /v1)."""
    path, rid = request.url.path, request_id_var.get()
    problems = error.errors()
    if path.startswith(OPENAI_PREFIX) or path in TGI_PATHS:
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        message = f"{'.'.join(loc) or 'request'}: {first['msg']}"
        status = openai_status(path, 422)  # param: the top-level field (not pydantic's union-member tags)
        return JSONResponse(error_body(path, status, message, rid, param=loc[0] if loc else None), status)
    if isinstance(error, ValidationError):
        problems = error.errors(include_url=False, include_context=False)
    if path.startswith(AGENT_PROTOCOL_PREFIXES):  # langgraph-sdk shows `detail` when it is a string
        named = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in problems
        )
        return JSONResponse({"detail": named, "request_id": rid}, status_code=422)
    return JSONResponse({"detail": jsonable_encoder(problems), "request_id": rid}, status_code=422)
