"""Admission: at most HFCHAIN_MAX_CONCURRENT_REQUESTS requests in flight; the rest get 429 at once."""

from __future__ import annotations

from typing import Any

from server.errors import error_body, openai_status, request_id_var
from server.guard import json_response


class InFlight:
    """The number of admitted requests (shared by the middleware and the metrics)."""

    active = 0


class Admission:
    """Counts the POST requests being served (running plus waiting) and refuses those beyond `limit`."""

    def __init__(self, app: Any, limit: int, counter: InFlight, metrics: Any = None) -> None:
        self.app, self.limit, self.counter, self.metrics = app, limit, counter, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        if self.counter.active >= self.limit:
            if self.metrics is not None:
                self.metrics.rejected.labels("concurrent_requests").inc()
            path = scope["path"]
            message = (
                f"the server is at its limit of {self.limit} concurrent requests "
                "(HFCHAIN_MAX_CONCURRENT_REQUESTS): retry after a second"
            )
            status = openai_status(path, 429)
            body = error_body(path, status, message, request_id_var.get(), "overloaded")
            for part in json_response(status, body, [(b"retry-after", b"1")]):
                await send(part)
            return None
        self.counter.active += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.counter.active -= 1
