"""POST /v1/responses: OpenAI's Responses API over the chat chain (its budgets, knob limits, tools and
constrained output, keys and quotas), errors in OpenAI's shape; responses stored per tenant (store: true,
OpenAI's default) for previous_response_id and GET / DELETE /v1/responses/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.runnables import Runnable
from sse_starlette.sse import EventSourceResponse

from chains import chat as chat_chain
from chains.errors import NotFound
from chains.knobs import validate_knobs
from chains.stored_responses import ResponseStore
from server.callers import run_config, tenant
from server.errors import request_id_var
from server.openai_api import check_tool_results
from server.responses.replies import Reply, assistant_message
from server.responses.requests import ResponseRequest
from server.streaming import prefetched


def responses_router(chain: Runnable, store: ResponseStore) -> APIRouter:
    """POST /v1/responses, answering with `chain` (the chat chain /v1/chat/completions uses); GET and
    DELETE /v1/responses/{id} for the responses kept in `store`."""
    router = APIRouter(prefix="/v1", tags=["openai"])

    @router.post("/responses")
    async def responses(body: ResponseRequest, request: Request) -> Any:
        app, owner = request.app.state, tenant(request)
        earlier = await run_in_threadpool(_earlier, store, body.previous_response_id, owner)
        value = await run_in_threadpool(_checked, body, earlier)
        knobs = validate_knobs(body.knobs(), app.settings.max_new_tokens_limit).model_dump(exclude_none=True)
        config = run_config(request, {"configurable": knobs})
        app.backend.require_ready()
        await run_in_threadpool(chat_chain.preflight, app.backend, value, config, app.system_prompt)
        keep = None
        if body.store is not False:
            sent = [*earlier, *body.new_messages()]

            def keep(response: dict, reply: Any) -> None:
                store.put(response, [*sent, assistant_message(reply)], owner)

        reply = Reply(request_id_var.get(), app.backend.model_name, body, keep)
        if body.stream:
            chunks = await prefetched(chain.astream(value, config))  # a 429/503 still gets its status
            return EventSourceResponse(reply.events(chunks, request.url.path), sep="\n", ping=15)
        answer = await chain.ainvoke(value, config)
        return await run_in_threadpool(reply.response, answer)

    @router.get("/responses/{response_id}")
    async def stored(response_id: str, request: Request) -> dict:
        found = await run_in_threadpool(store.get, response_id, tenant(request))
        if found is None:
            raise NotFound(_missing(response_id))
        return found[0]

    @router.delete("/responses/{response_id}")
    async def delete(response_id: str, request: Request) -> dict:
        if not await run_in_threadpool(store.delete, response_id, tenant(request)):
            raise NotFound(_missing(response_id))
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    return router


def _missing(response_id: str) -> str:
    return (
        f"no stored response {response_id!r}: it was sent with store: false, deleted, or made with a key "
        "of another tenant"
    )


def _earlier(store: ResponseStore, previous: str | None, owner: str) -> list[dict]:
    """The conversation previous_response_id ended ([] without one; 404 when it is not stored)."""
    if not previous:
        return []
    found = store.get(previous, owner)
    if found is None:
        raise NotFound(f"previous_response_id: {_missing(previous)}")
    return found[1]


def _checked(body: ResponseRequest, earlier: list[dict]) -> dict[str, Any]:
    """The chat chain's input for the request (400 naming the part to fix)."""
    value = body.chat_input(earlier)
    check_tool_results(value["messages"])
    chat_chain.ChatInput.model_validate(value)
    return value
