"""API keys: `Authorization: Bearer <key>` (or HTTP Basic with the key as password, for browsers)."""

from __future__ import annotations

import base64
import hmac
from typing import Any

from server.errors import error_body, request_id_var
from server.guard import json_response

OPEN_PATHS = {"/health", "/ready"}


class ApiKeyGuard:
    """Refuses requests without a valid key (401) on every route except /health and /ready.

    Browsers get a Basic challenge too, so the playground prompts once for the key (as the password)
    and then sends it with every request it makes.
    """

    def __init__(self, app: Any, keys: list[str]) -> None:
        self.app, self.keys = app, [k.encode() for k in keys]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = _presented_key(dict(scope.get("headers") or []).get(b"authorization", b""))
        # compare against every key, so the time taken does not depend on which one matched
        if given is not None and any([hmac.compare_digest(given, key) for key in self.keys]):
            return await self.app(scope, receive, send)
        message = (
            "missing API key: send the header 'Authorization: Bearer <key>'"
            if given is None
            else "invalid API key: check the key given in 'Authorization: Bearer <key>'"
        )
        body = error_body(scope["path"], 401, message, request_id_var.get(), "authentication_error")
        headers = [(b"www-authenticate", b'Bearer, Basic realm="hfchain"')]
        for part in json_response(401, body, headers):
            await send(part)
        return None


def _presented_key(header: bytes) -> bytes | None:
    """The key in a Bearer or Basic (password) Authorization header, or None."""
    scheme, _, value = header.strip().partition(b" ")
    if scheme.lower() == b"bearer" and value.strip():
        return value.strip()
    if scheme.lower() == b"basic":
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except ValueError:
            return None
        return password or None
    return None
