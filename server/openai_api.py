"""OpenAI-compatible routes: POST /v1/chat/completions and GET /v1/models, over the /chat chain."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sse_starlette.sse import EventSourceResponse

from chains import chat as chat_chain
from chains.errors import InvalidInput, NotFound
from chains.knobs import validate_knobs
from server.callers import caller, run_config
from server.errors import request_id_var
from server.streaming import merged, prefetched, stream_error


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
    n: int = Field(1, ge=1, le=8, description="Replies to sample (each its own seed: seed + index)")
    user: str | None = Field(None, description="Used as the session id when x-session-id is not sent")
    tools: list[FunctionTool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = Field(None, description="Each reply token's log-probability")
    top_logprobs: int | None = Field(
        None, ge=0, le=20, description="Most likely alternatives per token (needs logprobs: true)"
    )

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true; send both, or leave top_logprobs out")
        return value

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

    def knobs(self, choice: int = 0) -> dict[str, Any]:
        """The generation knobs of one choice, by their hfchain names (choice j samples with seed + j)."""
        knobs = {
            "max_new_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": [self.stop] if isinstance(self.stop, str) else self.stop,
            "seed": None if self.seed is None else self.seed + choice,
            "speculation": self.speculation,
            "logprobs": (self.top_logprobs or 0) if self.logprobs else None,
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
        _check_choices(body, session_id, app.settings.temperature)
        configs = []
        for choice in range(body.n):
            knobs = validate_knobs(
                body.knobs(choice), app.settings.max_new_tokens_limit, app.backend.chat_knobs
            )
            configs.append(run_config(request, {"configurable": knobs.model_dump(exclude_none=True)}))
        app.backend.require_ready()
        await run_in_threadpool(
            chat_chain.preflight, app.backend, value, configs[0], app.system_prompt, app.sessions
        )
        reply = Reply(request_id_var.get(), app.backend.model_name)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            # every choice submitted at once (they decode in one batch); a 429/503 still gets its status
            streams = await asyncio.gather(*(prefetched(chain.astream(value, c)) for c in configs))
            events = reply.events(streams, include_usage, request.url.path)
            return EventSourceResponse(events, sep="\n", ping=15)
        return reply.completion(await asyncio.gather(*(chain.ainvoke(value, c) for c in configs)))

    return router


class Reply:
    """Builds the chat.completion object, or the chat.completion.chunk events, of one request."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id, self.model, self.created = f"chatcmpl-{request_id}", model, int(time.time())

    def completion(self, messages: list[Any]) -> dict[str, Any]:
        """The non-streamed reply: one choice per message."""
        choices = [
            {
                "index": index,
                "message": _message(message),
                "finish_reason": _finish_reason(message.response_metadata),
                "logprobs": _logprobs(message.response_metadata),
            }
            for index, message in enumerate(messages)
        ]
        usage = _usage_of([m.usage_metadata for m in messages])
        return {**self._head("chat.completion"), "choices": choices, "usage": usage}

    async def events(
        self, streams: list[AsyncIterator[AIMessageChunk]], include_usage: bool, path: str
    ) -> AsyncIterator[str]:
        """SSE data: each choice's role first, its content deltas and finish reason (choices interleave as
        they come), usage if asked, then [DONE]."""
        usage = {"usage": None} if include_usage else {}
        for index in range(len(streams)):
            yield self._chunk(index, {"role": "assistant", "content": ""}, None, usage)
        totals: dict[int, AIMessageChunk] = {}
        try:
            async for index, chunk in merged(streams):
                if chunk is None:
                    metadata = totals[index].response_metadata if index in totals else {}
                    yield self._chunk(index, {}, _finish_reason(metadata), usage)
                    continue
                totals[index] = chunk if index not in totals else totals[index] + chunk
                scores = _logprobs(chunk.response_metadata)  # on the first delta of this chunk
                if chunk.content or scores:
                    yield self._chunk(index, {"content": chunk.content}, None, usage, scores)
                for call in getattr(chunk, "tool_call_chunks", None) or []:
                    for delta in _call_deltas(call):
                        yield self._chunk(index, {"tool_calls": [delta]}, None, usage)
        except Exception as error:  # the status line is sent: report it in the stream, as OpenAI does
            yield stream_error(path, error)
            return
        if include_usage:
            counts = _usage_of([t.usage_metadata for t in totals.values()])
            yield json.dumps({**self._head("chat.completion.chunk"), "choices": [], "usage": counts})
        yield "[DONE]"

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _chunk(
        self, index: int, delta: dict, finish_reason: str | None, extra: dict, logprobs: dict | None = None
    ) -> str:
        choice = {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}
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


def _logprobs(metadata: dict) -> dict[str, Any] | None:
    """A choice's (or a delta's) logprobs object, when the request asked for them."""
    scores = metadata.get("logprobs")
    return {"content": scores["content"], "refusal": None} if scores else None


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


def _check_choices(body: ChatCompletionRequest, session_id: str | None, default_temperature: float) -> None:
    """n > 1 samples different replies to one conversation: not greedy, not into a stored session."""
    if body.n == 1:
        return
    temperature = body.temperature if body.temperature is not None else default_temperature
    if temperature == 0:
        raise InvalidInput(
            f"n={body.n} with temperature 0 (greedy) gives {body.n} identical replies: set a temperature "
            "above 0"
        )
    if session_id:
        raise InvalidInput(
            f"n={body.n} cannot continue a stored session (which reply would it keep?): use n=1"
        )


def _usage_of(counts: list[dict | None]) -> dict[str, int] | None:
    """The usage of n choices of one prompt: the prompt counted once, the completions of every choice."""
    usages = [_usage(c) for c in counts]
    if not usages or any(u is None for u in usages):
        return None
    total = dict(usages[0])
    total["completion_tokens"] = sum(u["completion_tokens"] for u in usages)
    total["total_tokens"] = total["prompt_tokens"] + total["completion_tokens"]
    return total


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
