"""The Messages API's reply: one message object, or its stream of events (message_start, content blocks,
message_delta, message_stop)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessageChunk

from server.streaming import stream_error

STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use"}


class Reply:
    """Builds the message, or the events, of one request."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id, self.model = f"msg_{request_id}", model

    def message(self, reply: Any) -> dict[str, Any]:
        """The non-streamed reply: text then tool_use blocks, why it stopped, token counts."""
        blocks = [{"type": "text", "text": reply.content}] if reply.content else []
        blocks += [_tool_use(call["id"], call["name"], call["args"]) for call in reply.tool_calls or []]
        return {
            **self._head(),
            "content": blocks,
            **self._stop(reply.response_metadata),
            "usage": usage(reply.usage_metadata),
        }

    async def events(self, chunks: AsyncIterator[AIMessageChunk], path: str) -> AsyncIterator[dict]:
        """SSE events, as Anthropic streams them: each content block opened, filled and closed in turn."""
        yield _event("message_start", message={**self._head(), "content": [], **_unset(), "usage": usage({})})
        total: AIMessageChunk | None = None
        index, open_text = 0, False
        try:
            async for chunk in chunks:
                total = chunk if total is None else total + chunk
                if chunk.content:
                    if not open_text:
                        yield _event(
                            "content_block_start", index=index, content_block={"type": "text", "text": ""}
                        )
                        open_text = True
                    yield _event(
                        "content_block_delta",
                        index=index,
                        delta={"type": "text_delta", "text": chunk.content},
                    )
                for call in getattr(chunk, "tool_call_chunks", None) or []:
                    if open_text:
                        yield _event("content_block_stop", index=index)
                        index, open_text = index + 1, False
                    for event in _tool_events(index, call):
                        yield event
                    index += 1
        except Exception as error:  # the status line is sent: report it in the stream, as Anthropic does
            yield {"event": "error", "data": stream_error(path, error)}
            return
        if open_text:
            yield _event("content_block_stop", index=index)
        metadata = total.response_metadata if total is not None else {}
        counts = usage(total.usage_metadata if total is not None else None)
        yield _event("message_delta", delta=self._stop(metadata), usage=counts)
        yield _event("message_stop")

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model}

    def _stop(self, metadata: dict) -> dict[str, Any]:
        if metadata.get("stop_sequence"):
            return {"stop_reason": "stop_sequence", "stop_sequence": metadata["stop_sequence"]}
        reason = metadata.get("finish_reason")
        return {"stop_reason": STOP_REASONS.get(reason, "end_turn"), "stop_sequence": None}


def _unset() -> dict[str, Any]:
    return {"stop_reason": None, "stop_sequence": None}


def _event(kind: str, **fields: Any) -> dict[str, str]:
    return {"event": kind, "data": json.dumps({"type": kind, **fields}, ensure_ascii=False)}


def _tool_use(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def _tool_events(index: int, call: dict) -> list[dict[str, str]]:
    """A streamed tool call: the block with an empty input, its JSON as one delta, the block's end."""
    start = _tool_use(call["id"], call["name"], {})
    delta = {"type": "input_json_delta", "partial_json": call.get("args") or ""}
    return [
        _event("content_block_start", index=index, content_block=start),
        _event("content_block_delta", index=index, delta=delta),
        _event("content_block_stop", index=index),
    ]


def usage(counts: dict | None) -> dict[str, int]:
    """Anthropic's usage: input_tokens excludes the prompt tokens read from the prefix cache, which are
    cache_read_input_tokens."""
    counts = counts or {}
    cached = (counts.get("input_token_details") or {}).get("cache_read") or 0
    return {
        "input_tokens": counts.get("input_tokens", 0) - cached,
        "output_tokens": counts.get("output_tokens", 0),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }
