"""Embeddings served from one encoder: concurrent requests are queued and encoded together in one batch
(as TEI does), each input counted with the encoder's own tokenizer and refused when over its limit."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from chains.backends.batching import Batcher
from chains.backends.encoder import Encoder
from chains.errors import InputTooLong, InvalidInput

log = logging.getLogger(__name__)
MAX_INPUTS = 2048  # OpenAI's own bound on inputs per request


@dataclass
class Embedded:
    """One request's vectors (unit length, float32) and the tokens the encoder read."""

    vectors: list[list[float]]
    tokens: int


class EmbeddingService:
    """Embeds lists of texts; requests waiting at the same time share one encoder batch of up to
    `max_batch` texts, on a worker thread of its own (never on the event loop)."""

    def __init__(self, encoder: Encoder, max_batch: int = 64) -> None:
        self.encoder, self.max_batch = encoder, max_batch
        self._batcher = Batcher(lambda texts: encoder.embed(texts).tolist(), max_batch, "embeddings")

    @property
    def requests(self) -> int:
        """Requests encoded."""
        return self._batcher.requests

    @property
    def batches(self) -> int:
        """Encoder calls made (fewer than requests when they were batched together)."""
        return self._batcher.batches

    @property
    def model(self) -> str:
        return self.encoder.name

    @property
    def dimensions(self) -> int:
        return self.encoder.dimensions

    def check(self, texts: list[str], truncate: bool = False) -> tuple[list[str], int]:
        """The texts to encode (cut to the encoder's limit when `truncate`) and their token count;
        422 for an empty request or input, 413 for an input over the limit."""
        if not texts:
            raise InvalidInput("input is empty: send a string or a list of strings to embed")
        if len(texts) > MAX_INPUTS:
            raise InvalidInput(f"{len(texts)} inputs: send at most {MAX_INPUTS} per request")
        tokens, limit, kept, total = self.encoder.tokens, self.encoder.max_tokens, [], 0
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput(f"input[{index}] is empty: every input needs some text")
            count = tokens.count_text(text)
            if count > limit and not truncate:
                raise InputTooLong(
                    f"input[{index}] is {count} tokens; the encoder {self.model} reads at most {limit}: "
                    "split it (or, on POST /embed, send truncate: true)",
                    prompt_tokens=count,
                    budget=limit,
                )
            if count > limit:
                offsets = tokens.offsets(text)
                text = text[: offsets[limit - 1][1]]
            kept.append(text)
            total += min(count, limit)
        return kept, total

    def embed(self, texts: list[str], truncate: bool = False) -> Embedded:
        """Vectors for `texts`, encoded with whatever else is waiting."""
        kept, tokens = self.check(texts, truncate)
        return Embedded(self._batcher.run(kept), tokens)

    async def aembed(self, texts: list[str], truncate: bool = False) -> Embedded:
        """As embed(), awaited."""
        kept, tokens = await asyncio.to_thread(self.check, texts, truncate)
        return Embedded(await asyncio.wrap_future(self._batcher.submit(kept)), tokens)

    def ids_to_text(self, ids: list[int]) -> str:
        """Token ids of the encoder's own tokenizer, as the text they stand for (OpenAI's token-id input)."""
        if not hasattr(self.encoder.tokens, "tokenizer"):
            raise InvalidInput(
                f"token ids need the encoder's tokenizer, which this server does not have ({self.model}): "
                "send the text, or set HFCHAIN_EMBEDDING_TOKENIZER"
            )
        vocabulary = self.encoder.tokens.tokenizer.vocab_size
        if not ids or any(not 0 <= i < vocabulary for i in ids):
            raise InvalidInput(
                f"token ids must be ids of the encoder's tokenizer ({self.model}: 0 to {vocabulary - 1}); "
                "or send the text"
            )
        return self.encoder.tokens.tokenizer.decode(ids, skip_special_tokens=True)


def build_embed_chain(service: EmbeddingService) -> Any:
    """{"texts": [...]} or a string -> {"embeddings": [[...], ...], "model", "dimensions", "usage"}."""
    from langchain_core.callbacks import dispatch_custom_event
    from langchain_core.runnables import RunnableConfig, RunnableLambda
    from pydantic import BaseModel, ConfigDict, Field

    from chains.tenants.caller import caller_of
    from chains.tenants.meter import USAGE_EVENT

    class EmbedInput(BaseModel):
        """Input of /embed."""

        model_config = ConfigDict(extra="forbid")

        texts: list[str] = Field(
            min_length=1, description="The texts to embed (each within the encoder's limit)"
        )

    class EmbedOutput(BaseModel):
        """Output of /embed."""

        embeddings: list[list[float]] = Field(description="One unit vector per text, in order")
        model: str
        dimensions: int
        usage: dict[str, int] = Field(description="tokens: what the encoder read")

    def texts_of(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else EmbedInput.model_validate(value).texts

    def answer(done: Embedded, config: RunnableConfig) -> dict:
        if caller_of(config) is not None:  # the encoder's tokens count for the caller's quota
            dispatch_custom_event(USAGE_EVENT, {"prompt_tokens": done.tokens}, config=config)
        dimensions = len(done.vectors[0])
        return {
            "embeddings": done.vectors,
            "model": service.model,
            "dimensions": dimensions,
            "usage": {"tokens": done.tokens},
        }

    def run(value: Any, config: RunnableConfig) -> dict:
        return answer(service.embed(texts_of(value)), config)

    async def arun(value: Any, config: RunnableConfig) -> dict:
        done = await service.aembed(texts_of(value))
        return await asyncio.to_thread(answer, done, config)

    chain = RunnableLambda(run, afunc=arun, name="embed")
    return chain.with_types(input_type=EmbedInput, output_type=EmbedOutput)
