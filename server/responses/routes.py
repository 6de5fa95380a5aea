"""POST /v1/responses: OpenAI's Responses API over the chat chain (its budgets, knob limits, tools and
constrained output, keys and quotas), errors in OpenAI's shape. Responses are not stored yet."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.runnables import Runnable
from sse_starlette.sse import EventSourceResponse

from chains import chat as chat_chain
from chains.errors import NotFound
from chains.knobs import validate_knobs
from server.callers import run_config
from server.errors import request_id_var
from server.openai_api import check_tool_results
from server.responses.replies import Reply
from server.responses.requests import ResponseRequest
from server.streaming import prefetched


def responses_router(chain: Runnable) -> APIRouter:
    """POST /v1/responses, answering with `chain` (the chat chain /v1/chat/completions uses)."""
    router = APIRouter(prefix="/v1", tags=["openai"])

    @router.post("/responses")
    async def responses(body: ResponseRequest, request: Request) -> Any:
        app = request.app.state
        value = await run_in_threadpool(_checked, body)
        knobs = validate_knobs(body.knobs(), app.settings.max_new_tokens_limit).model_dump(exclude_none=True)
        config = run_config(request, {"configurable": knobs})
        app.backend.require_ready()
        await run_in_threadpool(chat_chain.preflight, app.backend, value, config, app.system_prompt)
        reply = Reply(request_id_var.get(), app.backend.model_name, body)
        if body.stream:
            chunks = await prefetched(chain.astream(value, config))  # a 429/503 still gets its status
            return EventSourceResponse(reply.events(chunks, request.url.path), sep="\n", ping=15)
        return reply.response(await chain.ainvoke(value, config))

    @router.get("/responses/{response_id}")
    def stored(response_id: str) -> None:
        raise NotFound(f"response {response_id!r} was not stored: this server does not store responses yet")

    @router.delete("/responses/{response_id}")
    def delete(response_id: str) -> None:
        raise NotFound(f"response {response_id!r} was not stored: this server does not store responses yet")

    return router


def _checked(body: ResponseRequest) -> dict[str, Any]:
    """The chat chain's input for the request (400 naming the part to fix)."""
    value = body.chat_input()
    check_tool_results(value["messages"])
    chat_chain.ChatInput.model_validate(value)
    return value
