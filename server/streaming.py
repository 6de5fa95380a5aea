"""Helpers for the protocol streams (/v1 and TGI): start after the first item; report late errors."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from chains.errors import HfchainError
from server.errors import error_body, openai_status, request_id_var

log = logging.getLogger("hfchain.server")


async def prefetched(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`items` with its first item already awaited: an error before any output (overloaded, queue
    timeout, ...) raises here, while the response can still carry its status code."""
    try:
        first = await anext(items)
    except StopAsyncIteration:
        return _empty()
    return _after(first, items)


async def _after(first: Any, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in items:
        yield item


async def _empty() -> AsyncIterator[Any]:
    return
    yield


def stream_error(path: str, error: Exception) -> str:
    """An error that happened after the stream began, as an SSE data payload (logged if unexpected)."""
    rid = request_id_var.get()
    if isinstance(error, HfchainError):
        status = openai_status(path, error.status_code)
        return json.dumps(error_body(path, status, error.message, rid, error.error_type))
    log.error("stream failed in %s (request %s)", path, rid, exc_info=error)
    message = f"internal server error (request {rid}): see the server log"
    return json.dumps(error_body(path, 500, message, rid, "server_error"))
