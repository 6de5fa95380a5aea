"""ASGI middleware: request ids, bodies checked before the routes see them (size, UTF-8, JSON), and
requests cancelled when their client disconnects."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any

from chains.backends.scope import job_scope
from server.errors import error_body, openai_status, request_id_var

log = logging.getLogger("hfchain.server")

Scope = dict[str, Any]
BODILESS = re.compile(r"^/threads/[^/]+/runs/[^/]+/cancel$|^/mcp$")  # POSTs whose clients may send no body


def json_response(status: int, body: dict, headers: list[tuple[bytes, bytes]]) -> tuple[dict, dict]:
    payload = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    start = {"type": "http.response.start", "status": status, "headers": head + headers}
    return start, {"type": "http.response.body", "body": payload}


def check_body(body: bytes, path: str = "") -> tuple[int, str] | bytes:
    """An error (status, message) for a body we refuse, else the body to pass on."""
    if not body.strip() and BODILESS.match(path):
        return body
    if not body.strip():
        return 422, 'request body is empty: send a JSON object, e.g. {"input": {...}}'
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return 400, f"request body is not valid UTF-8 (byte {error.start}): send UTF-8 encoded JSON"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return 400, f"request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
    except RecursionError:
        return 400, "request body nests too deeply: send flatter JSON"
    except ValueError:  # an integer of more digits than Python converts
        return 400, "request body has an integer beyond 64 bits: send a smaller number"
    if _huge_integer(data):  # e.g. LangServe's orjson cannot write it back
        return 400, "request body has an integer beyond 64 bits: send a smaller number"
    if path.endswith("/batch") and isinstance(data, dict) and not isinstance(data.get("inputs"), list):
        return 422, 'batch needs "inputs": a list of inputs, e.g. {"inputs": [{...}, {...}]}'
    if isinstance(data, dict) and "config" in data and data["config"] is None:
        del data["config"]  # null means "no config", as an absent key does
        return json.dumps(data).encode()
    return body


def _huge_integer(data: Any) -> bool:
    """Whether the JSON holds an integer outside 64 bits (serializers downstream cannot write it back)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and not -(2**63) <= item < 2**64:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class RequestGuard:
    """Sets x-request-id on every response and screens POST bodies (max size, UTF-8, JSON)."""

    def __init__(
        self, app: Any, max_body_bytes: int, on_disconnect: Any = None, uploads: dict[str, int] | None = None
    ) -> None:
        self.app, self.max_body_bytes, self.on_disconnect = app, max_body_bytes, on_disconnect
        # path (or a regular expression starting with ^) -> its own size limit; its body may be a form
        self.uploads = uploads or {}

    def _upload_limit(self, path: str) -> int | None:
        """The body limit of an upload route (None: not one)."""
        for pattern, limit in self.uploads.items():
            if path == pattern or (pattern.startswith("^") and re.match(pattern, path)):
                return limit
        return None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        request_id_var.set(rid)
        rid_header = [(b"x-request-id", rid.encode("latin-1"))]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *rid_header]
            await send(message)

        if scope["method"] != "POST":
            return await self._call(scope, receive, send_with_id, rid_header)
        path = scope.get("path", "")
        upload = self._upload_limit(path)
        limit = self.max_body_bytes if upload is None else upload
        body = await self._read_body(receive, limit)
        kind = headers.get(b"content-type", b"")
        form = upload is not None and kind.startswith((b"multipart/form-data", b"application/x-www-form"))
        if body is None:
            checked: Any = (413, f"request body is over {limit} bytes: send less")
        else:
            checked = body if form and body else check_body(body, path)
        if isinstance(checked, tuple):
            status, message = checked
            status = openai_status(scope.get("path", ""), status)
            body = error_body(scope.get("path", ""), status, message, rid)
            for part in json_response(status, body, rid_header):
                await send(part)
            return None
        return await self._call_until_client_leaves(scope, checked, receive, send_with_id, rid_header)

    async def _call_until_client_leaves(
        self, scope: Scope, body: bytes, receive: Any, send: Any, rid_header: list
    ) -> None:
        """Run the app on the checked body; if the client disconnects first, cancel it (its generation
        stops at the next token) instead of computing a reply nobody will read."""
        task, state = asyncio.current_task(), {"complete": False, "left": False}

        async def completing_send(message: dict) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                state["complete"] = True
            await send(message)

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not state["complete"]:
                state["left"] = True
                task.cancel()

        watcher = asyncio.create_task(watch())
        with job_scope() as jobs:
            try:
                await self._call(scope, _replay(body, receive), completing_send, rid_header)
            except asyncio.CancelledError:
                if not state["left"]:
                    raise
                task.uncancel()
                log.info("client left %s before the reply: cancelled", scope["path"])
                if self.on_disconnect:
                    self.on_disconnect()
            finally:
                state["complete"] = True
                watcher.cancel()
                jobs.cancel()  # whatever generation is left has nobody to read it

    async def _call(self, scope: Scope, receive: Any, send: Any, rid_header: list) -> None:
        """Run the app; an unexpected error becomes a logged 500 that still carries x-request-id."""
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception(
                "unexpected error in %s %s (request %s)", scope["method"], scope["path"], request_id_var.get()
            )
            if started:
                raise
            message = f"internal server error (request {request_id_var.get()}): see the server log"
            body = error_body(scope.get("path", ""), 500, message, request_id_var.get(), "server_error")
            for part in json_response(500, body, []):
                await tracking_send(part)

    async def _read_body(self, receive: Any, limit: int) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return None
            if not message.get("more_body"):
                return b"".join(chunks)


def _replay(body: bytes, upstream: Any) -> Any:
    """A receive() that hands the app the already-read body, then the client's later messages."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()  # e.g. http.disconnect when the client goes away

    return receive
