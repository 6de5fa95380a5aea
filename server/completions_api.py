"""OpenAI's legacy completions, POST /v1/completions: raw prompts (no chat template) through the
configurable LLM, as /generate and TGI's POST / send them; n samples per prompt, echo, streaming."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.outputs import GenerationChunk
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sse_starlette.sse import EventSourceResponse

from chains import generate as generate_chain
from chains.errors import InvalidInput
from chains.knobs import validate_knobs
from server.callers import run_config
from server.errors import request_id_var
from server.openai_api import StreamOptions
from server.streaming import collect, generation, merged, prefetched, stream_error

MAX_CHOICES = 16  # prompts x n per request


class CompletionRequest(BaseModel):
    """The parts of OpenAI's completion request that hfchain serves; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Any name: this server serves one model")
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="A prompt, a list of prompts, or token ids of the served tokenizer (one list or several)"
    )
    max_tokens: int = Field(
        16, ge=0, description="OpenAI's default is 16; 0 (with echo) scores the prompt only"
    )
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    echo: bool = False
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Each token's log-probability and this many alternatives (with echo, the prompt's)",
    )
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _echo_for_nothing(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError(
                "max_tokens is 0 without echo: nothing to return; ask for 1 or more, or set echo"
            )
        return self

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> None:
        if value:
            raise ValueError("suffix (insertion) is not served: send the prompt only")

    def knobs(self, choice: int) -> dict[str, Any]:
        """The generation knobs of one choice: the seed advances by one per sample, so n samples with a
        seed differ from each other and come out the same on every run."""
        knobs = {
            "max_new_tokens": max(self.max_tokens, 1),  # 0: the prompt is echoed, nothing generated
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": [self.stop] if isinstance(self.stop, str) else self.stop or None,
            "seed": None if self.seed is None else self.seed + choice,
            "logprobs": self.logprobs,
        }
        return {k: v for k, v in knobs.items() if v is not None}


def completions_router(llm: Runnable) -> APIRouter:
    """POST /v1/completions over `llm` (the configurable LLM TGI's route uses)."""
    router = APIRouter(prefix="/v1", tags=["openai"])

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        app = request.app.state
        app.backend.require_ready()
        prompts = await run_in_threadpool(_prompts, body, app.backend)
        _check_choices(body, len(prompts), app.settings.temperature)
        runs = []
        for index, prompt in enumerate(prompts):
            for sample in range(body.n):
                knobs = validate_knobs(
                    body.knobs(sample), app.settings.max_new_tokens_limit, app.backend.llm_knobs
                )
                config = run_config(request, {"configurable": knobs.model_dump(exclude_none=True)})
                if sample == 0:
                    await run_in_threadpool(generate_chain.preflight, app.backend, {"prompt": prompt}, config)
                runs.append((index * body.n + sample, prompt, config))
        scored = await _prompt_logprobs(body, prompts, app.backend)
        reply = Reply(request_id_var.get(), app.backend.model_name, body.echo, body.logprobs, scored)

        def generate(prompt: str, config: dict) -> AsyncIterator:
            return generation(llm, prompt, config) if body.max_tokens else _nothing(app.backend, prompt)

        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            # every choice submitted at once (their prefills batch); a 429/503 still gets its status
            streams = await asyncio.gather(*(prefetched(generate(p, c)) for _, p, c in runs))
            events = reply.events(runs, streams, include_usage, request.url.path)
            return EventSourceResponse(events, sep="\n", ping=15)
        done = await asyncio.gather(*(collect(generate(prompt, config)) for _, prompt, config in runs))
        return reply.completion(runs, done)

    return router


async def _prompt_logprobs(body: CompletionRequest, prompts: list[str], backend: Any) -> dict[str, list]:
    """With echo and logprobs: each prompt's token entries (the model's distribution before each token)."""
    if not body.echo or body.logprobs is None:
        return {}
    engine = backend.engine
    scored = {}
    for prompt in dict.fromkeys(prompts):
        ids = engine.tokens.prompt_ids(prompt)
        scored[prompt] = await engine.aprompt_logprobs(ids, body.logprobs)
    return scored


async def _nothing(backend: Any, prompt: str) -> AsyncIterator[GenerationChunk]:
    """max_tokens 0 (echo only): no generation, the prompt's token count."""
    count = await run_in_threadpool(backend.budget().tokens.count_prompt, prompt)
    yield GenerationChunk(text="", generation_info={"finish_reason": "length", "prompt_tokens": count})


def _prompts(body: CompletionRequest, backend: Any) -> list[str]:
    """The request's prompts as text (token ids are decoded with the served tokenizer)."""
    prompt = body.prompt
    if isinstance(prompt, str):
        prompts: list = [prompt]
    elif prompt and all(isinstance(p, int) for p in prompt):
        prompts = [prompt]
    else:
        prompts = list(prompt)
    if not prompts:
        raise InvalidInput("prompt is empty: send a string, a list of strings or token ids")
    texts = [p if isinstance(p, str) else _decode(p, backend) for p in prompts]
    if empty := [i for i, text in enumerate(texts) if not text]:
        raise InvalidInput(f"prompt {empty[0]} is empty: every prompt needs some text")
    return texts


def _decode(ids: list[int], backend: Any) -> str:
    tokens = backend.budget().tokens
    if tokens.method != "tokenizer":
        raise InvalidInput("token-id prompts need the model's tokenizer: send text, or set HFCHAIN_TOKENIZER")
    size = len(tokens.tokenizer)
    if not ids or any(not 0 <= i < size for i in ids):
        raise InvalidInput(f"prompt token ids must be ids of the served tokenizer: 0 to {size - 1}")
    return tokens.tokenizer.decode(ids)


def _check_choices(body: CompletionRequest, prompts: int, default_temperature: float) -> None:
    if prompts * body.n > MAX_CHOICES:
        raise InvalidInput(
            f"{prompts} prompts x n={body.n} is over {MAX_CHOICES} choices: send fewer per request"
        )
    if body.best_of not in (None, body.n):
        raise InvalidInput("best_of other than n is not served: leave best_of out")
    greedy = (body.temperature if body.temperature is not None else default_temperature) == 0
    if body.n > 1 and greedy:
        raise InvalidInput(
            f"n={body.n} with temperature 0 (greedy) gives {body.n} identical completions: set a temperature "
            "above 0 to sample different ones"
        )


class Reply:
    """Builds the text_completion object, or its stream of chunks, of one request."""

    def __init__(
        self, request_id: str, model: str, echo: bool, logprobs: int | None, scored: dict[str, list]
    ) -> None:
        self.id, self.model, self.created, self.echo = f"cmpl-{request_id}", model, int(time.time()), echo
        self.logprobs, self.scored = logprobs, scored  # scored: the echoed prompts' entries

    def completion(self, runs: list[tuple], done: list[tuple[str, dict]]) -> dict[str, Any]:
        choices = []
        for (index, prompt, _), (text, info) in zip(runs, done, strict=True):
            entries = [*self._echoed(prompt), *(info.get("logprobs") or [])]
            text = (prompt if self.echo else "") + text
            choices.append(self._choice(index, text, _finish_reason(info), self._legacy(entries, 0)))
        return {**self._head(), "choices": choices, "usage": _usage(runs, [info for _, info in done])}

    async def events(
        self, runs: list[tuple], streams: list[AsyncIterator], include_usage: bool, path: str
    ) -> AsyncIterator[str]:
        """One chunk per text piece of any choice (interleaved as they come), each choice's finish reason,
        the usage if asked for, then [DONE]."""
        usage = {"usage": None} if include_usage else {}
        infos: dict[int, dict] = {}
        sent: dict[int, int] = {}  # characters of each choice sent so far (logprobs' text_offset)
        try:
            async for position, chunk in merged(streams):
                index, prompt, _ = runs[position]
                if chunk is None:
                    yield self._chunk(self._choice(index, "", _finish_reason(infos.get(position, {}))), usage)
                    continue
                infos.setdefault(position, {}).update(chunk.generation_info or {})
                text, entries = chunk.text, (chunk.generation_info or {}).get("logprobs") or []
                if self.echo and position not in sent:
                    text, entries = prompt + text, [*self._echoed(prompt), *entries]
                if text or entries:
                    offset = sent.get(position, 0)
                    sent[position] = offset + len(text)
                    yield self._chunk(self._choice(index, text, None, self._legacy(entries, offset)), usage)
        except Exception as error:  # the status line is sent: report it in the stream, as OpenAI does
            yield stream_error(path, error)
            return
        if include_usage:
            counted = [infos.get(i, {}) for i in range(len(runs))]
            yield json.dumps({**self._head(), "choices": [], "usage": _usage(runs, counted)})
        yield "[DONE]"

    def _echoed(self, prompt: str) -> list[dict]:
        return self.scored.get(prompt, []) if self.echo else []

    def _legacy(self, entries: list[dict], offset: int) -> dict[str, list] | None:
        """The legacy logprobs object: tokens, token_logprobs, top_logprobs (each position's alternatives,
        the chosen token among them) and text_offset (where each token starts in the choice's text)."""
        if self.logprobs is None:
            return None
        legacy: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for entry in entries:
            legacy["tokens"].append(entry["token"])
            legacy["token_logprobs"].append(entry["logprob"])
            top = entry["top_logprobs"]
            chosen = {entry["token"]: entry["logprob"]} if top is not None else {}
            legacy["top_logprobs"].append(
                None if top is None else {t["token"]: t["logprob"] for t in top} | chosen
            )
            legacy["text_offset"].append(offset)
            offset += len(entry["token"])
        return legacy

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model}

    def _choice(self, index: int, text: str, finish_reason: str | None, logprobs: dict | None = None) -> dict:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}

    def _chunk(self, choice: dict, extra: dict) -> str:
        return json.dumps({**self._head(), "choices": [choice], **extra})


def _finish_reason(info: dict) -> str:
    return "length" if info.get("finish_reason") == "length" else "stop"


def _usage(runs: list[tuple], infos: list[dict]) -> dict[str, int]:
    """Prompt tokens once per prompt (its n samples share it), completion tokens of every choice."""
    prompts = {prompt: info.get("prompt_tokens", 0) for (_, prompt, _), info in zip(runs, infos, strict=True)}
    prompt = sum(prompts.values())
    completion = sum(info.get("completion_tokens", 0) for info in infos)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
