"""POST /tokenize and /detokenize in vLLM's shape, with the served model's tokenizer: a raw prompt, or
messages through the chat template (with the server's system prompt and the tools, as the chat chain
renders them) -> token ids; token ids -> text."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chains import chat as chat_chain
from chains.errors import InvalidInput
from server.callers import run_config
from server.openai_api import FunctionTool

NO_TOKENIZER = (
    "this server counts tokens by estimate (the endpoint backend without the model's tokenizer): set "
    "HFCHAIN_TOKENIZER to the model's hub id or folder"
)


class TokenizeRequest(BaseModel):
    """Either a prompt or messages."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Any name: this server serves one model")
    prompt: str | None = Field(None, description="A raw prompt, tokenized as /generate and TGI send it")
    messages: list[dict[str, Any]] | None = Field(None, min_length=1, description="OpenAI-style messages")
    tools: list[FunctionTool] | None = Field(None, max_length=128)
    add_special_tokens: bool = Field(True, description="prompt only: the tokenizer's BOS/EOS rules")
    return_token_strs: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send either prompt (a string) or messages (a list), not both and not neither")
        return self


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    tokens: list[int] = Field(description="Token ids of the served tokenizer")


def tokenize_router() -> APIRouter:
    router = APIRouter(tags=["tokenizer"])

    @router.post("/tokenize")
    async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
        app = request.app.state
        app.backend.require_ready()
        ids = await run_in_threadpool(_ids, body, request)
        budget = app.backend.budget()
        strs = _tokenizer(app.backend).convert_ids_to_tokens(ids) if body.return_token_strs else None
        return {"count": len(ids), "max_model_len": budget.context_window, "tokens": ids, "token_strs": strs}

    @router.post("/detokenize")
    async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, str]:
        request.app.state.backend.require_ready()
        tokenizer = _tokenizer(request.app.state.backend)
        size = len(tokenizer)
        if any(not 0 <= t < size for t in body.tokens):
            raise InvalidInput(f"tokens must be ids of the served tokenizer: 0 to {size - 1}")
        return {"prompt": await run_in_threadpool(tokenizer.decode, body.tokens)}

    return router


def _ids(body: TokenizeRequest, request: Request) -> list[int]:
    app = request.app.state
    if body.prompt is not None:
        tokens = _exact(app.backend)
        return tokens.prompt_ids(body.prompt) if body.add_special_tokens else tokens.text_ids(body.prompt)
    value: dict[str, Any] = {"messages": body.messages}
    if body.tools:
        value["tools"] = [tool.model_dump(exclude_none=True) for tool in body.tools]
    chat_chain.ChatInput.model_validate(value)
    ids = chat_chain.prompt_ids(app.backend, value, run_config(request, {}), app.system_prompt)
    if ids is None:
        raise InvalidInput(NO_TOKENIZER)
    return ids


def _exact(backend: Any) -> Any:
    tokens = backend.budget().tokens
    if tokens.method != "tokenizer":
        raise InvalidInput(NO_TOKENIZER)
    return tokens


def _tokenizer(backend: Any) -> Any:
    return _exact(backend).tokenizer
