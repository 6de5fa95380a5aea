"""TGI's text-generation protocol on POST /, so HuggingFaceEndpoint(endpoint_url=...) can use hfchain.

Body {"inputs", "parameters", "stream"}; reply [{"generated_text"}] or SSE token events whose last one
carries generated_text and details. Sampling follows TGI: on with do_sample, or when temperature,
top_p or typical_p ask for it; typical_p only switches it on (hfchain samples with temperature and
top_p). `grammar` (json, json_schema, regex) constrains the reply (local backend). top_k,
repetition_penalty, best_of and the like are refused by name.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from langchain_core.outputs import GenerationChunk
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sse_starlette.sse import EventSourceResponse

from chains import generate as generate_chain
from chains.errors import InvalidInput
from chains.knobs import validate_knobs
from chains.tools.grammar import json_grammar, regex_grammar
from server.callers import run_config
from server.streaming import collect, generation, prefetched, stream_error

UNSUPPORTED = {
    "best_of": "best_of > 1",
    "decoder_input_details": "decoder_input_details",
    "repetition_penalty": "repetition_penalty (other than 1.0)",
    "top_k": "top_k",
    "frequency_penalty": "frequency_penalty",
    "watermark": "watermark",
    "top_n_tokens": "top_n_tokens",
    "adapter_id": "adapter_id",
}


class TgiGrammar(BaseModel):
    """TGI's grammar: a JSON schema ("json", "json_object", "json_schema") or a regular expression."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["json", "json_object", "json_schema", "regex"]
    value: Any = None

    def lark(self) -> str:
        """The grammar the engine constrains the reply with (InvalidInput for a malformed value)."""
        value = self.value
        if isinstance(value, str) and self.type != "regex":
            try:
                value = json.loads(value)
            except ValueError:
                raise InvalidInput("parameters.grammar.value: not valid JSON: send a JSON schema") from None
        if self.type == "regex":
            if not isinstance(value, str) or not value:
                raise InvalidInput(
                    "parameters.grammar.value: a regex grammar needs the expression as a string"
                )
            return regex_grammar(value)
        if self.type == "json_schema":
            value = value.get("schema") if isinstance(value, dict) else None
        if value is not None and not isinstance(value, dict):
            raise InvalidInput("parameters.grammar.value: a json grammar needs a JSON schema object")
        return json_grammar(value)


class TgiParameters(BaseModel):
    """TGI's generation parameters (the subset hfchain honours; the rest are refused by name)."""

    model_config = ConfigDict(extra="ignore")

    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    typical_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    do_sample: bool = False
    stop: list[str] | None = None
    seed: int | None = None
    return_full_text: bool | None = False
    details: bool = False
    truncate: int | None = None
    best_of: int | None = None
    decoder_input_details: bool = False
    grammar: TgiGrammar | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    watermark: bool = False
    top_n_tokens: int | None = None
    adapter_id: str | None = None

    @model_validator(mode="after")
    def _supported(self) -> TgiParameters:
        for name, label in UNSUPPORTED.items():
            value = getattr(self, name)
            if value not in (None, False, 0, 1):
                raise ValueError(f"{label} is not supported by hfchain: leave it out")
        return self

    @property
    def sampling(self) -> bool:
        """TGI samples when asked to, or when any sampling parameter is set away from neutral."""
        return bool(
            self.do_sample
            or (self.temperature not in (None, 0, 1.0))
            or (self.top_p is not None and self.top_p < 1)
            or (self.typical_p is not None and self.typical_p < 1)
        )

    def knobs(self) -> dict[str, Any]:
        """hfchain's knobs: temperature 0 (greedy) unless sampling."""
        temperature = (self.temperature or 1.0) if self.sampling else 0.0
        knobs = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": temperature,
            "top_p": self.top_p if self.sampling else None,
            "stop": self.stop or None,
            "seed": self.seed,
        }
        return {k: v for k, v in knobs.items() if v is not None}


class TgiRequest(BaseModel):
    """TGI's request body."""

    model_config = ConfigDict(extra="ignore")

    inputs: str = Field(min_length=1, description="The prompt, sent as is (no chat template)")
    parameters: TgiParameters = Field(default_factory=TgiParameters)
    stream: bool = False


def tgi_router(llm: Runnable) -> APIRouter:
    """POST / (TGI text generation, plain or streamed) and GET /info, over the configurable LLM."""
    router = APIRouter(tags=["tgi"])

    @router.post("/")
    async def generate(body: TgiRequest, request: Request) -> Any:
        app = request.app.state
        knobs = validate_knobs(body.parameters.knobs(), app.settings.max_new_tokens_limit)
        config = run_config(request, {"configurable": knobs.model_dump(exclude_none=True)})
        app.backend.require_ready()
        value = {"prompt": body.inputs}
        await run_in_threadpool(generate_chain.preflight, app.backend, value, config)
        grammar = body.parameters.grammar
        if grammar is not None and app.backend.engine is None:
            raise InvalidInput("parameters.grammar is served by the local backend only: leave it out")
        bound = llm.bind(grammar=grammar.lark()) if grammar is not None else llm
        events = generation(bound, body.inputs, config)
        if body.stream:
            events = await prefetched(events)  # a 429/503 still gets its status code
            return EventSourceResponse(_sse(events, body, app.backend, request.url.path), sep="\n", ping=15)
        text, info = await collect(events)
        reply: dict[str, Any] = {"generated_text": _full(body, text)}
        if body.parameters.details:
            reply["details"] = {**_details(body, info), "prefill": [], "tokens": []}
        return [reply]

    @router.get("/info")
    def info(request: Request) -> dict:
        app = request.app.state
        budget = app.backend.budget() if app.backend.is_ready() else None
        context = budget.context_window if budget else None
        return {
            "model_id": app.backend.model_name,
            "model_dtype": app.settings.dtype
            if app.backend.runtime == "torch"
            else app.backend.runtime.removeprefix("onnx-"),
            "model_device_type": app.settings.device,
            "max_total_tokens": context,
            "max_input_tokens": context - 1 if context else None,
            "max_best_of": 1,
            "max_stop_sequences": 16,
            "router": "hfchain",
            "version": request.app.version,
        }

    return router


async def _sse(events: AsyncIterator[GenerationChunk], body: TgiRequest, backend: Any, path: str):
    """TGI's stream: one event per text piece; the last also carries generated_text and details."""
    pieces, info, held = [], {}, None
    try:
        tokens = _token_ids(backend)
        async for chunk in events:
            info.update(chunk.generation_info or {})
            if not chunk.text:
                continue
            if held is not None:
                yield json.dumps(_event(len(pieces) - 1, held, tokens))
            held = chunk.text
            pieces.append(held)
    except Exception as error:  # the status line is sent: report it in the stream, as TGI does
        yield stream_error(path, error)
        return
    last = _event(max(len(pieces) - 1, 0), held or "", tokens, special=held is None)
    details = {**_details(body, info), "input_length": info.get("prompt_tokens", 0)}
    yield json.dumps({**last, "generated_text": _full(body, "".join(pieces)), "details": details})


def _event(index: int, text: str, tokens: Any, special: bool = False) -> dict[str, Any]:
    """One token event. The id is the piece's last token as the tokenizer encodes it (0 if unknown);
    logprob is not computed (null)."""
    ids = tokens(text) if tokens and text else []
    token = {"id": ids[-1] if ids else 0, "text": text, "logprob": None, "special": special}
    return {"index": index, "token": token, "generated_text": None, "details": None}


def _token_ids(backend: Any) -> Any:
    """A text -> ids function with the model's tokenizer, or None when counts are estimated."""
    tokens = backend.budget().tokens
    return getattr(tokens, "text_ids", None)


def _details(body: TgiRequest, info: dict) -> dict[str, Any]:
    """TGI's details: finish_reason (length, eos_token or stop_sequence), generated_tokens, seed."""
    reason = info.get("finish_reason")
    if reason != "length":  # the engine names the stop sequence; an endpoint's reply may not
        by_stop = info.get("stop_sequence", body.parameters.stop)
        reason = "stop_sequence" if by_stop and reason == "stop" else "eos_token"
    return {
        "finish_reason": reason,
        "generated_tokens": info.get("completion_tokens", 0),
        "seed": body.parameters.seed,
    }


def _full(body: TgiRequest, text: str) -> str:
    return body.inputs + text if body.parameters.return_full_text else text
