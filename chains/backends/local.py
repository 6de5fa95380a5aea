"""Local backend: LangChain's HuggingFacePipeline and a chat model, both generating through LocalModel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    GenerationChunk,
    LLMResult,
)
from langchain_huggingface import HuggingFacePipeline
from pydantic import BaseModel, ConfigDict, Field

from chains.backends.model import GenerationParams, LocalModel
from chains.messages import to_chat_dicts

KNOB_FIELDS = {k: k for k in ("max_new_tokens", "temperature", "top_p", "stop", "seed")}


class KnobDefaults(BaseModel):
    """The generation knob fields (exposed as configurables), with their defaults."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None


class KnobFields(KnobDefaults):
    """Knobs plus the engine, shared by the local LLM and chat model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: LocalModel = Field(exclude=True)

    def params(self, stop: list[str] | None = None) -> GenerationParams:
        """The knobs for one call; call-time stop sequences add to the configured ones."""
        stops = tuple(dict.fromkeys([*(self.stop or []), *(stop or [])]))
        return GenerationParams(self.max_new_tokens, self.temperature, self.top_p, stops, self.seed)


class LocalLLM(KnobFields, HuggingFacePipeline):
    """HuggingFacePipeline whose generation goes through the shared LocalModel (only new text back)."""

    pipeline: Any = None  # generation goes through the engine (the model thread), not a pipeline object
    model_id: str = "local"

    @property
    def _llm_type(self) -> str:
        return "hfchain_local"

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        texts = self.engine.generate(prompts, self.params(stop))
        return LLMResult(generations=[[Generation(text=text)] for text in texts])

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        for text in self.engine.stream(prompt, self.params(stop)):
            chunk = GenerationChunk(text=text)
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        async for text in self.engine.astream(prompt, self.params(stop)):
            chunk = GenerationChunk(text=text)
            if run_manager:
                await run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk


class LocalChatModel(KnobFields, BaseChatModel):
    """Chat model over LocalModel: applies the tokenizer's chat template, then generates.

    Async calls use langchain-core's default (the sync path in a worker thread), which is what the
    stock ChatHuggingFace over a pipeline lacks.
    """

    @property
    def _llm_type(self) -> str:
        return "hfchain_local_chat"

    def _prompt(self, messages: list[BaseMessage]) -> str:
        return self.engine.render_chat(to_chat_dicts(messages))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = self._prompt(messages)
        params = self.params(stop)
        text = self.engine.generate([prompt], params)[0]
        message = AIMessage(
            content=text,
            usage_metadata=self._usage(prompt, text),
            response_metadata={"model_name": self.engine.name},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prompt = self._prompt(messages)
        for text in self.engine.stream(prompt, self.params(stop)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        prompt = self._prompt(messages)
        async for text in self.engine.astream(prompt, self.params(stop)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                await run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk

    def _usage(self, prompt: str, text: str) -> dict[str, int]:
        prompt_tokens = self.engine.count_tokens(prompt)
        output_tokens = self.engine.count_tokens(text)
        return {
            "input_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens,
        }
