"""Helpers for the protocol streams (/v1 and TGI): start after the first item; report late errors; an
LLM's generation as text pieces then its finish info."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.outputs import GenerationChunk
from langchain_core.runnables import Runnable

from chains.errors import HfchainError
from server.errors import error_body, openai_status, request_id_var

log = logging.getLogger("hfchain.server")


async def prefetched(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`items` with its first item already awaited: an error before any output (overloaded, queue
    timeout, ...) raises here, while the response can still carry its status code."""
    try:
        first = await anext(items)
    except StopAsyncIteration:
        return _empty()
    return _after(first, items)


async def _after(first: Any, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in items:
        yield item


async def _empty() -> AsyncIterator[Any]:
    return
    yield


def stream_error(path: str, error: Exception) -> str:
    """An error that happened after the stream began, as an SSE data payload (logged if unexpected)."""
    rid = request_id_var.get()
    if isinstance(error, HfchainError):
        status = openai_status(path, error.status_code)
        return json.dumps(error_body(path, status, error.message, rid, error.error_type))
    log.error("stream failed in %s (request %s)", path, rid, exc_info=error)
    message = f"internal server error (request {rid}): see the server log"
    return json.dumps(error_body(path, 500, message, rid, "server_error"))


async def generation(llm: Runnable, prompt: str, config: dict) -> AsyncIterator[GenerationChunk]:
    """The LLM's stream as GenerationChunks: text pieces, then one with the finish info (if reported).

    LLM.astream yields bare strings; its end event carries the generation_info (and the text, for
    models that do not stream).
    """
    streamed = False
    async for event in llm.astream_events(prompt, config, version="v2"):
        if event["event"] == "on_llm_stream":
            streamed = True
            yield GenerationChunk(text=str(event["data"]["chunk"]))
        elif event["event"] == "on_llm_end":
            text, info = first_generation(event["data"]["output"])
            yield GenerationChunk(text="" if streamed else text, generation_info=info)


def first_generation(output: Any) -> tuple[str, dict]:
    """(text, generation_info) of an LLMResult, or of its dict form."""
    generations = output["generations"] if isinstance(output, dict) else output.generations
    first = generations[0][0] if generations and generations[0] else {}
    if isinstance(first, dict):
        return first.get("text", ""), first.get("generation_info") or {}
    return first.text, first.generation_info or {}


async def collect(events: AsyncIterator[GenerationChunk]) -> tuple[str, dict]:
    """All the text of a generation stream, and its finish info."""
    text, info = [], {}
    async for chunk in events:
        text.append(chunk.text)
        info.update(chunk.generation_info or {})
    return "".join(text), info


async def merged(streams: list[AsyncIterator]) -> AsyncIterator[tuple[int, Any]]:
    """(position, chunk) from all streams as they come; (position, None) when a stream ends."""
    queue: asyncio.Queue = asyncio.Queue()

    async def drain(position: int, stream: AsyncIterator) -> None:
        try:
            async for chunk in stream:
                await queue.put((position, chunk))
            await queue.put((position, None))
        except Exception as error:
            await queue.put((position, error))

    tasks = [asyncio.create_task(drain(i, s)) for i, s in enumerate(streams)]
    ended = 0
    try:
        while ended < len(streams):
            position, item = await queue.get()
            if isinstance(item, Exception):
                raise item
            ended += item is None
            yield position, item
    finally:
        for task in tasks:
            task.cancel()
