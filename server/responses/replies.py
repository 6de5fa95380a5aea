"""The Responses API's reply: one response object, or its stream of semantic events (response.created,
output items added, text and argument deltas, items done, response.completed with usage)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.messages import AIMessageChunk

from server.responses.requests import ResponseRequest
from server.streaming import stream_error


class Reply:
    """Builds the response object, or the events, of one request."""

    def __init__(
        self, request_id: str, model: str, body: ResponseRequest, keep: Callable[[dict, Any], None] | None
    ) -> None:
        self.id, self.model, self.body, self.created = f"resp_{request_id}", model, body, int(time.time())
        self.keep = keep  # stores the finished response and the reply (store: true)
        self.sequence = 0

    def response(self, reply: Any) -> dict[str, Any]:
        """The non-streamed response: a message item with the text, then a function_call item per call."""
        output = [self._message(reply.content)] if reply.content else []
        output += [
            self._call(i, call["id"], call["name"], _arguments(call["args"]))
            for i, call in enumerate(reply.tool_calls or [])
        ]
        done = self._object(output, reply.response_metadata, reply.usage_metadata)
        if self.keep is not None:
            self.keep(done, reply)
        return done

    async def events(self, chunks: AsyncIterator[AIMessageChunk], path: str) -> AsyncIterator[dict]:
        """SSE events, each with its sequence_number, in the order OpenAI sends them."""
        started = self._object([], {}, None, status="in_progress")
        yield self._event("response.created", response=started)
        yield self._event("response.in_progress", response=started)
        output: list[dict] = []
        total: AIMessageChunk | None = None
        text: list[str] | None = None  # the open message item's text
        try:
            async for chunk in chunks:
                total = chunk if total is None else total + chunk
                if chunk.content:
                    if text is None:
                        text = []
                        for event in self._open_message(len(output)):
                            yield event
                    text.append(chunk.content)
                    yield self._event(
                        "response.output_text.delta",
                        item_id=self._message_id(),
                        output_index=len(output),
                        content_index=0,
                        delta=chunk.content,
                        logprobs=[],
                    )
                for call in getattr(chunk, "tool_call_chunks", None) or []:
                    if text is not None:
                        for event in self._close_message(len(output), "".join(text)):
                            yield event
                        output.append(self._message("".join(text)))
                        text = None
                    item = self._call(call["index"], call["id"], call["name"], call.get("args") or "")
                    for event in self._call_events(len(output), item):
                        yield event
                    output.append(item)
        except Exception as error:  # the status line is sent: report it in the stream, as OpenAI does
            yield {"event": "error", "data": stream_error(path, error)}
            return
        if text is not None:
            for event in self._close_message(len(output), "".join(text)):
                yield event
            output.append(self._message("".join(text)))
        metadata = total.response_metadata if total is not None else {}
        done = self._object(output, metadata, total.usage_metadata if total is not None else None)
        if self.keep is not None and total is not None:
            await asyncio.to_thread(self.keep, done, total)
        kind = "response.completed" if done["status"] == "completed" else "response.incomplete"
        yield self._event(kind, response=done)

    def _object(self, output: list, metadata: dict, usage: dict | None, status: str | None = None) -> dict:
        cut = metadata.get("finish_reason") == "length"
        body = self.body
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status or ("incomplete" if cut else "completed"),
            "incomplete_details": {"reason": "max_output_tokens"} if cut and not status else None,
            "error": None,
            "model": self.model,
            "output": output,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "tools": body.tools or [],
            "tool_choice": body.tool_choice.model_dump()
            if hasattr(body.tool_choice, "model_dump")
            else body.tool_choice or "auto",
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "text": {"format": body.text.format.model_dump(by_alias=True, exclude_none=True)}
            if body.text
            else {"format": {"type": "text"}},
            "previous_response_id": body.previous_response_id,
            "store": body.store is not False,
            "metadata": body.metadata or {},
            "usage": _usage(usage) if usage is not None or not status else None,
        }

    def _message_id(self) -> str:
        return f"msg_{self.id.removeprefix('resp_')}"

    def _message(self, text: str, status: str = "completed") -> dict[str, Any]:
        part = (
            [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
            if status == "completed"
            else []
        )
        return {
            "type": "message",
            "id": self._message_id(),
            "status": status,
            "role": "assistant",
            "content": part,
        }

    def _call(self, index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
        item_id = f"fc_{self.id.removeprefix('resp_')}_{index}"
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }

    def _open_message(self, index: int) -> list[dict]:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self._event(
                "response.output_item.added", output_index=index, item=self._message("", "in_progress")
            ),
            self._event(
                "response.content_part.added",
                item_id=self._message_id(),
                output_index=index,
                content_index=0,
                part=part,
            ),
        ]

    def _close_message(self, index: int, text: str) -> list[dict]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item_id = self._message_id()
        return [
            self._event(
                "response.output_text.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._event(
                "response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part
            ),
            self._event("response.output_item.done", output_index=index, item=self._message(text)),
        ]

    def _call_events(self, index: int, item: dict) -> list[dict]:
        """A function call: the item with empty arguments, the arguments as one delta, then done."""
        opened = {**item, "arguments": "", "status": "in_progress"}
        return [
            self._event("response.output_item.added", output_index=index, item=opened),
            self._event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=item["arguments"],
            ),
            self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            ),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _event(self, kind: str, **fields: Any) -> dict[str, str]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return {"event": kind, "data": json.dumps(event, ensure_ascii=False)}


def assistant_message(reply: Any) -> dict[str, Any]:
    """The reply as an OpenAI-style assistant message, as a stored conversation holds it."""
    calls = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["name"], "arguments": _arguments(c["args"])},
        }
        for c in getattr(reply, "tool_calls", None) or []
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or ("" if not calls else None)}
    return {**message, "tool_calls": calls} if calls else message


def _arguments(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def _usage(counts: dict | None) -> dict[str, Any]:
    counts = counts or {}
    prompt, completion = counts.get("input_tokens", 0), counts.get("output_tokens", 0)
    cached = (counts.get("input_token_details") or {}).get("cache_read") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
