"""Keys and tenants at the door: `Authorization: Bearer <key>` (or HTTP Basic with the key as password, for
browsers) names a caller; its scope must cover the route (403), its quota must have room (429); the caller
and a token meter travel with the request (request.state) into the chains' config."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool

from chains.errors import HfchainError, QuotaExceeded
from chains.tenants.caller import Caller, Scope
from chains.tenants.keys import KeyStore
from chains.tenants.meter import Meter, metering
from chains.tenants.quotas import Quotas
from server.errors import OPENAI_PREFIX, error_body, openai_status, request_id_var
from server.guard import json_response

log = logging.getLogger("hfchain.server")

OPEN_PATHS = {"/health", "/ready"}
TENANT_HEADER = b"x-hfchain-tenant"  # an admin acting in another tenant
# path prefix -> the scope a route needs (the first match; everything else needs "inference")
ROUTE_SCOPES: list[tuple[str, Scope]] = [
    ("/admin/", "admin"),
    ("/metrics", "admin"),
    ("/sessions/", "user"),
    ("/threads", "user"),  # agent threads keep conversations, as sessions do
    ("/classifiers", "user"),
    ("/collections", "user"),
]
SEARCH_PATH = re.compile(r"^/collections/[^/]+/search$")  # reading the tenant's documents: inference


def route_scope(path: str) -> Scope:
    """The scope a request to `path` needs."""
    if SEARCH_PATH.match(path):
        return "inference"
    return next((scope for prefix, scope in ROUTE_SCOPES if path.startswith(prefix)), "inference")


def counted(method: str) -> bool:
    """Requests that do work count against a key's quota (POSTs); pages, lists and exports do not."""
    return method == "POST"


class ApiKeyGuard:
    """401 without a valid key, 403 outside its scope, 429 over its quota; then usage is recorded.

    Without any key (none in the environment, none ever made) requests pass as they always did.
    """

    def __init__(
        self,
        app: Any,
        keys: KeyStore,
        quotas: Quotas,
        count: Callable[[str], int] = lambda text: 0,
        metrics: Any = None,
    ) -> None:
        """`count`: tokens in a text (the served model's tokenizer), for runs whose model reports none."""
        self.app, self.keys, self.quotas, self.count, self.metrics = app, keys, quotas, count, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        try:  # only the guard's own work: errors of the route are the route's
            caller, allowance = await self._caller(scope), None
            limited = caller is not None and (caller.requests_per_minute or caller.tokens_per_day)
            if limited and counted(scope["method"]):
                allowance = await run_in_threadpool(self.quotas.admit, caller)
        except _Refusal as refusal:
            return await refusal.send(scope, send)
        except QuotaExceeded as error:
            if self.metrics is not None:
                self.metrics.rejected.labels("quota").inc()
            return await _Refusal(429, error.message, error.error_type, error.headers, error.details).send(
                scope, send
            )
        except HfchainError as error:  # the keys database is down: 503 with Retry-After
            return await _Refusal(error.status_code, error.message, error.error_type, [], error.details).send(
                scope, send
            )
        if caller is None:
            return await self.app(scope, receive, send)  # no keys at all: the single-user service
        meter = Meter()
        state = scope.setdefault("state", {})
        state["hfchain_caller"], state["hfchain_meter"] = caller, meter
        wrapped = send
        if allowance is not None and allowance.headers and scope["path"].startswith(OPENAI_PREFIX):
            wrapped = _with_headers(send, allowance.headers)
        try:
            with metering(meter, self.count):
                return await self.app(scope, receive, wrapped)
        finally:
            if counted(scope["method"]):
                await self._record(caller, meter)

    async def _caller(self, scope: dict) -> Caller | None:
        """The request's caller; None when the service has no keys; _Refusal for 401 and 403."""
        required = self.keys.known_required()
        if required is None:
            required = await run_in_threadpool(self.keys.required)
        if not required:
            return None
        headers = dict(scope.get("headers") or [])
        given = (
            _presented_key(headers.get(b"authorization", b""))
            or headers.get(b"x-api-key", b"").strip()
            or None
        )
        if given is None:
            raise _Refusal(
                401, "missing API key: send the header 'Authorization: Bearer <key>' (or 'x-api-key')"
            )
        if _cross_site_with_a_browser_login(scope["method"], headers):
            raise _Refusal(
                403,
                "a request from another site with the browser's saved login is refused (the browser would "
                "send it for any page that posts here): call from the server's own pages, or send the key "
                "as 'Authorization: Bearer <key>'",
                "permission_error",
            )
        caller = self.keys.cached(given)
        if caller is None:
            caller = await run_in_threadpool(self.keys.lookup, given)
        if caller is None:
            why = "invalid or revoked API key: check the key in 'Authorization: Bearer <key>' or 'x-api-key'"
            raise _Refusal(401, why)
        if other := headers.get(TENANT_HEADER):
            if not caller.allows("admin"):
                raise _forbidden(caller, "admin", "acting in another tenant (X-Hfchain-Tenant)")
            try:
                caller = caller.acting_for(other.decode("latin-1").strip())
            except HfchainError as error:
                raise _Refusal(400, f"X-Hfchain-Tenant: {error.message}") from None
        needed = route_scope(scope["path"])
        if not caller.allows(needed):
            raise _forbidden(caller, needed, f"{scope['method']} {scope['path']}")
        return caller

    async def _record(self, caller: Caller, meter: Meter) -> None:
        if self.metrics is not None:
            self.metrics.key_requests.labels(caller.name).inc()
            self.metrics.key_tokens.labels(caller.name, "prompt").inc(meter.prompt_tokens)
            self.metrics.key_tokens.labels(caller.name, "completion").inc(meter.completion_tokens)
        try:
            await run_in_threadpool(self.quotas.record, caller, meter.prompt_tokens, meter.completion_tokens)
        except HfchainError as error:  # the answer is sent: log what could not be counted
            log.error("usage of key %r not recorded: %s", caller.name, error.message)


class _Refusal(Exception):
    """A response sent instead of the route's: 401, 403, 429, 503."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "authentication_error",
        headers: list[tuple[bytes, bytes]] | None = None,
        details: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers, self.details = list(headers or []), dict(details or {})

    async def send(self, scope: dict, send: Any) -> None:
        path = scope["path"]
        status = openai_status(path, self.status)
        headers = list(self.headers)
        if retry := self.details.get("retry_after"):
            headers.append((b"retry-after", str(retry).encode()))
        if self.status == 401:
            # Basic first, in a header of its own: browsers then ask for the key (as the password)
            headers += [(b"www-authenticate", b'Basic realm="hfchain"'), (b"www-authenticate", b"Bearer")]
        body = error_body(path, status, self.message, request_id_var.get(), self.kind, extra=self.details)
        for part in json_response(status, body, headers):
            await send(part)


def _forbidden(caller: Caller, scope: Scope, what: str) -> _Refusal:
    error = caller.refusal(scope, what)
    return _Refusal(403, error.message, error.error_type, details=error.details)


def _with_headers(send: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    async def sending(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return sending


def _cross_site_with_a_browser_login(method: str, headers: dict[bytes, bytes]) -> bool:
    """A change sent by another site's page with the credentials a browser keeps for Basic auth (CSRF), as
    the browser marks it: Sec-Fetch-Site (not Origin against Host, which a proxy in front may rewrite)."""
    if method in ("GET", "HEAD") or not headers.get(b"authorization", b"").lower().startswith(b"basic "):
        return False
    return headers.get(b"sec-fetch-site", b"").lower() == b"cross-site" or headers.get(b"origin") == b"null"


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
