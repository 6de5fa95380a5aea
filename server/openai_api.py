"""OpenAI-compatible routes: POST /v1/chat/completions and GET /v1/models, over the /chat chain."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette.sse import EventSourceResponse

from chains import chat as chat_chain
from chains.errors import InvalidInput, NotFound
from chains.knobs import validate_knobs
from server.callers import caller, run_config
from server.errors import request_id_var
from server.streaming import prefetched, stream_error


class StreamOptions(BaseModel):
    """OpenAI's stream_options."""

    include_usage: bool = False


class Function(BaseModel):
    """A tool's function: its name, description and JSON-schema parameters."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(BaseModel):
    """OpenAI's {"type": "function", "function": {...}}."""

    type: Literal["function"]
    function: Function


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    """tool_choice naming one tool."""

    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(BaseModel):
    """The parts of OpenAI's chat completion request that hfchain serves; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Any name: this server serves one model and reports its name")
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Takes precedence over max_tokens")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    speculation: bool | None = Field(
        None, description="hfchain: speculative decoding for this request (unset: the server's setting)"
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, description="Only 1 is supported")
    user: str | None = Field(None, description="Used as the session id when x-session-id is not sent")
    tools: list[FunctionTool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported: send n separate requests for more choices")
        return n

    def options(self) -> dict[str, Any]:
        """tools, tool_choice, parallel_tool_calls and response_format, as the chat chain takes them."""
        options = {
            "tools": [t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None,
            "tool_choice": self.tool_choice.model_dump()
            if isinstance(self.tool_choice, NamedToolChoice)
            else self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "response_format": self.response_format,
        }
        return {k: v for k, v in options.items() if v is not None}

    def knobs(self) -> dict[str, Any]:
        """The request's generation knobs, by their hfchain names."""
        knobs = {
            "max_new_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": [self.stop] if isinstance(self.stop, str) else self.stop,
            "seed": self.seed,
            "speculation": self.speculation,
        }
        return {k: v for k, v in knobs.items() if v is not None}


def openai_router(chain: Runnable, sessions_from_user: bool = True) -> APIRouter:
    """The /v1 routes, answering with `chain` (the same chat chain, sessions and limits as /chat)."""
    router = APIRouter(prefix="/v1", tags=["openai"])

    @router.get("/models")
    def models(request: Request) -> dict:
        return {"object": "list", "data": [_model_card(request)]}

    @router.get("/models/{model_id:path}")
    def model(model_id: str, request: Request) -> dict:
        card = _model_card(request)
        if model_id != card["id"]:
            raise NotFound(f"model {model_id!r} is not served here; this server serves {card['id']!r}")
        return card

    @router.post("/chat/completions")
    async def chat_completions(
        body: ChatCompletionRequest,
        request: Request,
        x_session_id: str | None = Header(None, description="Keep the conversation server-side"),
    ) -> Any:
        app = request.app.state
        # `user` names a session only for keys that may keep one (others send it as a plain label)
        from_user = sessions_from_user and (caller(request) is None or caller(request).allows("user"))
        session_id = x_session_id or (body.user if from_user else None)
        value = {"messages": body.messages, **body.options()}
        value.update({"session_id": session_id} if session_id else {})
        check_tool_results(body.messages)
        chat_chain.ChatInput.model_validate(value)  # bad messages or session id -> 400 before any work
        knobs = validate_knobs(body.knobs(), app.settings.max_new_tokens_limit).model_dump(exclude_none=True)
        config = run_config(request, {"configurable": knobs})
        app.backend.require_ready()
        await run_in_threadpool(
            chat_chain.preflight, app.backend, value, config, app.system_prompt, app.sessions
        )
        reply = Reply(request_id_var.get(), app.backend.model_name)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            chunks = await prefetched(chain.astream(value, config))  # a 429/503 still gets its status
            events = reply.events(chunks, include_usage, request.url.path)
            return EventSourceResponse(events, sep="\n", ping=15)
        return reply.completion(await chain.ainvoke(value, config))

    return router


class Reply:
    """Builds the chat.completion object, or the chat.completion.chunk events, of one request."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id, self.model, self.created = f"chatcmpl-{request_id}", model, int(time.time())

    def completion(self, message: Any) -> dict[str, Any]:
        """The non-streamed reply."""
        return {
            **self._head("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": _message(message),
                    "finish_reason": _finish_reason(message.response_metadata),
                    "logprobs": None,
                }
            ],
            "usage": _usage(message.usage_metadata),
        }

    async def events(
        self, chunks: AsyncIterator[AIMessageChunk], include_usage: bool, path: str
    ) -> AsyncIterator[str]:
        """SSE data: the role first, content deltas, the finish reason, usage if asked, then [DONE]."""
        usage = {"usage": None} if include_usage else {}
        yield self._chunk({"role": "assistant", "content": ""}, None, usage)
        total: AIMessageChunk | None = None
        try:
            async for chunk in chunks:
                total = chunk if total is None else total + chunk
                if chunk.content:
                    yield self._chunk({"content": chunk.content}, None, usage)
                for call in getattr(chunk, "tool_call_chunks", None) or []:
                    for delta in _call_deltas(call):
                        yield self._chunk({"tool_calls": [delta]}, None, usage)
        except Exception as error:  # the status line is sent: report it in the stream, as OpenAI does
            yield stream_error(path, error)
            return
        metadata = total.response_metadata if total is not None else {}
        yield self._chunk({}, _finish_reason(metadata), usage)
        if include_usage:
            counts = total.usage_metadata if total is not None else None
            yield json.dumps({**self._head("chat.completion.chunk"), "choices": [], "usage": _usage(counts)})
        yield "[DONE]"

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _chunk(self, delta: dict, finish_reason: str | None, extra: dict) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return json.dumps({**self._head("chat.completion.chunk"), "choices": [choice], **extra})


def _model_card(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {
        "id": state.backend.model_name,
        "object": "model",
        "created": state.started,
        "owned_by": "hfchain",
    }


def _finish_reason(metadata: dict) -> str:
    """OpenAI's finish_reason: "length" when max_tokens cut the reply, "tool_calls", else "stop"."""
    reason = metadata.get("finish_reason")
    return reason if reason in ("length", "tool_calls") else "stop"


def _message(message: Any) -> dict[str, Any]:
    """The reply's assistant message; with tool calls, content is null unless text came with them."""
    calls = [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"], ensure_ascii=False)},
        }
        for call in getattr(message, "tool_calls", None) or []
    ]
    if not calls:
        return {"role": "assistant", "content": message.content}
    return {"role": "assistant", "content": message.content or None, "tool_calls": calls}


def _call_deltas(call: dict) -> list[dict[str, Any]]:
    """A streamed call as OpenAI sends it: id, name and empty arguments first, then the arguments."""
    head = {"index": call["index"], "id": call["id"], "type": "function"}
    return [
        {**head, "function": {"name": call["name"], "arguments": ""}},
        {"index": call["index"], "function": {"arguments": call["args"]}},
    ]


def check_tool_results(messages: list[dict[str, Any]]) -> None:
    """Each tool message answers a call of an earlier assistant message (400 naming it otherwise)."""
    calls: set[str] = set()
    for index, message in enumerate(messages):
        listed = message.get("tool_calls") if isinstance(message, dict) else None
        for call in listed if isinstance(listed, list) else []:
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                calls.add(call["id"])
        if isinstance(message, dict) and message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in calls:
                raise InvalidInput(
                    f"messages[{index}].tool_call_id {call_id!r} answers no tool call of an earlier "
                    "assistant message: send the assistant turn with its tool_calls first"
                )


def _usage(counts: dict | None) -> dict[str, int] | None:
    """OpenAI's usage from LangChain's usage_metadata (None when the model did not report it)."""
    if not counts:
        return None
    prompt, completion = counts.get("input_tokens", 0), counts.get("output_tokens", 0)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    cached = (counts.get("input_token_details") or {}).get("cache_read")
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage
