"""POST /v1/messages and POST /v1/messages/count_tokens: Anthropic's Messages API over the chat chain (its
budgets, knob limits, tools and constrained output, keys and quotas), errors in Anthropic's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.runnables import Runnable
from sse_starlette.sse import EventSourceResponse

from chains import chat as chat_chain
from chains.knobs import validate_knobs
from server.anthropic.replies import Reply
from server.anthropic.requests import CountTokensRequest, MessagesRequest
from server.callers import run_config
from server.errors import request_id_var
from server.openai_api import check_tool_results
from server.streaming import prefetched


def anthropic_router(chain: Runnable) -> APIRouter:
    """The Messages routes, answering with `chain` (the chat chain /v1/chat/completions uses)."""
    router = APIRouter(prefix="/v1", tags=["anthropic"])

    @router.post("/messages")
    async def messages(body: MessagesRequest, request: Request) -> Any:
        app = request.app.state
        value = await run_in_threadpool(_checked, body)
        knobs = validate_knobs(body.knobs(), app.settings.max_new_tokens_limit).model_dump(exclude_none=True)
        config = run_config(request, {"configurable": knobs})
        app.backend.require_ready()
        await run_in_threadpool(chat_chain.preflight, app.backend, value, config, app.system_prompt)
        reply = Reply(request_id_var.get(), app.backend.model_name)
        if body.stream:
            chunks = await prefetched(chain.astream(value, config))  # a 429/503 still gets its status
            return EventSourceResponse(reply.events(chunks, request.url.path), sep="\n", ping=15)
        return reply.message(await chain.ainvoke(value, config))

    @router.post("/messages/count_tokens")
    async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
        app = request.app.state
        value = await run_in_threadpool(_checked, body)
        app.backend.require_ready()
        config = run_config(request, {})
        count = await run_in_threadpool(
            chat_chain.prompt_tokens, app.backend, value, config, app.system_prompt
        )
        return {"input_tokens": count}

    return router


def _checked(body: CountTokensRequest) -> dict[str, Any]:
    """The chat chain's input for the request (400 naming the part to fix)."""
    value = body.chat_input()
    check_tool_results(value["messages"])
    chat_chain.ChatInput.model_validate(value)
    return value
