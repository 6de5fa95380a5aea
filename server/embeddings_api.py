"""Embeddings over HTTP: OpenAI's POST /v1/embeddings and TEI's POST /embed, over one batched encoder."""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from chains.errors import InvalidInput
from chains.knowledge.embeddings import EmbeddingService
from server.callers import count_prompt_tokens


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request."""

    model_config = ConfigDict(extra="ignore")

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string, a list of strings, or token ids of the encoder's tokenizer (one list or many)"
    )
    model: str | None = Field(None, description="Any name: this server serves one encoder")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Only the encoder's own dimension is served")
    user: str | None = None


class TeiEmbedRequest(BaseModel):
    """TEI's POST /embed body."""

    model_config = ConfigDict(extra="ignore")

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool = False


def embeddings_router(service: EmbeddingService) -> APIRouter:
    """POST /v1/embeddings (OpenAI) and POST /embed (TEI)."""
    router = APIRouter(tags=["embeddings"])

    @router.post("/v1/embeddings")
    async def openai_embeddings(body: EmbeddingRequest, request: Request) -> dict:
        if body.dimensions is not None and body.dimensions != service.dimensions:
            raise InvalidInput(
                f"dimensions={body.dimensions}: the encoder {service.model} gives {service.dimensions}; "
                "leave dimensions out"
            )
        done = await service.aembed(_texts(body.input, service))
        count_prompt_tokens(request, done.tokens)
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
            for i, vector in enumerate(done.vectors)
        ]
        usage = {"prompt_tokens": done.tokens, "total_tokens": done.tokens}
        return {"object": "list", "data": data, "model": service.model, "usage": usage}

    @router.post("/embed")
    async def tei_embed(body: TeiEmbedRequest, request: Request) -> list[list[float]]:
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        done = await service.aembed(texts, truncate=body.truncate)
        count_prompt_tokens(request, done.tokens)
        return done.vectors  # unit vectors: normalize=false has nothing else to give for this encoder

    return router


def _texts(value: Any, service: EmbeddingService) -> list[str]:
    """OpenAI's input forms as texts."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [service.ids_to_text(value)]
    if value and all(isinstance(v, list) for v in value):
        return [service.ids_to_text(ids) for ids in value]
    return list(value)


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    """float: the numbers; base64: little-endian float32 bytes (what the openai client decodes)."""
    if encoding == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
