"""ASGI middleware: LangServe streams hold their response until the model's first output, so a failure
before it (overloaded, queue timeout, ...) is a real HTTP status instead of a 200 with an error event."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from chains.errors import HfchainError
from server.errors import domain_error

STREAMS = ("/stream", "/stream_log", "/stream_events")
HOLD_LIMIT = 1 << 20  # bytes held at most; past it the stream goes out as it is
MODEL_EVENTS = {"on_llm_stream", "on_chat_model_stream", "on_llm_end", "on_chat_model_end"}


def sse_events(chunk: bytes) -> list[tuple[str, str]]:
    """The (event, data) pairs in an SSE chunk; comments (pings) are not events."""
    events, event, data = [], None, []
    for line in [*chunk.decode("utf-8", "replace").splitlines(), ""]:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and (event or data):
            events.append((event or "message", "\n".join(data)))
            event, data = None, []
    return events


def is_model_output(path: str, event: str, data: str) -> bool:
    """Whether an SSE event shows that the model produced output (or the stream ended)."""
    if event in ("end", "metadata") or (event == "data" and path.endswith("/stream")):
        return True  # on /stream, langserve sends metadata and data only with the first chunk
    if event != "data":
        return False
    try:
        item = json.loads(data)
    except ValueError:
        return True
    if not isinstance(item, dict):
        return True
    if path.endswith("/stream_events"):  # chain and prompt events come before the model runs
        name, root = item.get("event", ""), item.get("parent_ids") == []
        return name in MODEL_EVENTS or (root and not name.endswith("_start"))
    paths = [op.get("path", "") for op in item.get("ops", []) if isinstance(op, dict)]
    return any(p == "/streamed_output/-" or p.endswith("/streamed_output_str/-") for p in paths)


def domain_cause(error: BaseException) -> HfchainError | None:
    """The HfchainError in `error`, looking inside exception groups (anyio task groups)."""
    if isinstance(error, HfchainError):
        return error
    for inner in getattr(error, "exceptions", ()):
        if found := domain_cause(inner):
            return found
    return None


class StreamGate:
    """Holds a LangServe stream's start and events until the model's first output; an HfchainError
    raised before then answers as domain_error does (status, Retry-After, JSON body)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.endswith(STREAMS):
            return await self.app(scope, receive, send)
        held: list[dict] = []
        state = {"released": False, "flushing": False, "size": 0}

        async def release() -> None:
            state["flushing"] = True
            while held:  # a ping sent meanwhile joins `held`, so the order stays
                await send(held.pop(0))
            state["released"] = True

        async def gated_send(message: dict) -> None:
            if state["released"]:
                return await send(message)
            held.append(message)
            if state["flushing"]:
                return None
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                if message["status"] != 200 or not content_type.startswith(b"text/event-stream"):
                    await release()
                return None
            body = message.get("body", b"")
            state["size"] += len(body)
            last = not message.get("more_body")
            if last or state["size"] > HOLD_LIMIT or any(is_model_output(path, *e) for e in sse_events(body)):
                await release()
            return None

        try:
            await self.app(scope, receive, gated_send)
        except Exception as error:
            cause = None if state["flushing"] else domain_cause(error)
            if cause is None:
                raise  # before release nothing was sent: RequestGuard answers its logged 500
            response = await domain_error(Request(scope), cause)
            await response(scope, receive, send)
