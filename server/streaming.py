"""Helpers for the protocol streams (/v1 and TGI): start after the first item; report late errors; an
LLM's generation as text pieces then its finish info."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackManager
from langchain_core.outputs import GenerationChunk, LLMResult
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
    """The LLM's stream as GenerationChunks: text pieces (with their generation_info, e.g. log-probabilities),
    then one with the finish info (if reported).

    LLM.astream yields bare strings: each piece's chunk is read from the callback it fires just before,
    and the finish info from its end callback (with the text, for models that do not stream).
    """
    seen = _Chunks()
    streamed = False
    async for text in llm.astream(prompt, _with_handler(config, seen)):
        chunk, seen.chunk = seen.chunk, None
        streamed = streamed or bool(text)
        info = chunk.generation_info if chunk is not None and chunk.text == text else None
        if text or info:
            yield GenerationChunk(text=text, generation_info=info)
    if seen.result is not None:
        text, info = first_generation(seen.result)
        if streamed:  # the pieces carried their own
            info = {k: v for k, v in info.items() if k != "logprobs"}
        yield GenerationChunk(text="" if streamed else text, generation_info=info)


class _Chunks(AsyncCallbackHandler):
    """Keeps an LLM run's latest streamed chunk and its result."""

    run_inline = True

    def __init__(self) -> None:
        self.chunk: GenerationChunk | None = None
        self.result: LLMResult | None = None

    async def on_llm_new_token(self, token: str, *, chunk: Any = None, **kwargs: Any) -> None:
        self.chunk = chunk if isinstance(chunk, GenerationChunk) else None

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.result = response


def _with_handler(config: dict, handler: Any) -> dict:
    """`config` with one more callback handler (callbacks as a list or a manager)."""
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        callbacks = callbacks.copy()
        callbacks.add_handler(handler, inherit=False)
        return {**config, "callbacks": callbacks}
    return {**config, "callbacks": [*(callbacks or []), handler]}


def first_generation(output: Any) -> tuple[str, dict]:
    """(text, generation_info) of an LLMResult, or of its dict form."""
    generations = output["generations"] if isinstance(output, dict) else output.generations
    first = generations[0][0] if generations and generations[0] else {}
    if isinstance(first, dict):
        return first.get("text", ""), first.get("generation_info") or {}
    return first.text, first.generation_info or {}


async def collect(events: AsyncIterator[GenerationChunk]) -> tuple[str, dict]:
    """All the text of a generation stream, and its finish info (with all its log-probabilities)."""
    text, info, logprobs = [], {}, []
    async for chunk in events:
        text.append(chunk.text)
        logprobs.extend((chunk.generation_info or {}).get("logprobs") or [])
        info.update(chunk.generation_info or {})
    if logprobs:  # each piece carried its own
        info["logprobs"] = logprobs
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
