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
from langchain_core.runnables import RunnableConfig
from langchain_huggingface import HuggingFacePipeline
from pydantic import BaseModel, ConfigDict, Field

from chains.backends.model import Completion, GenerationParams, LocalModel
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

    def checked(self, ids: list[int]) -> list[int]:
        """The prompt ids, once checked to fit the context with room for the reply (else 413)."""
        self.engine.budget.check(len(ids), self.max_new_tokens)
        return ids


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
        ids = [self.checked(self.engine.tokens.prompt_ids(prompt)) for prompt in prompts]
        return _llm_result(self.engine.generate(ids, self.params(stop)))

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        """Awaits the engine (no worker thread); a cancelled caller cancels the generation."""
        ids = [self.checked(self.engine.tokens.prompt_ids(prompt)) for prompt in prompts]
        return _llm_result(await self.engine.agenerate(ids, self.params(stop)))

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        ids = self.checked(self.engine.tokens.prompt_ids(prompt))
        stream = self.engine.stream(ids, self.params(stop))
        for text in stream:
            chunk = GenerationChunk(text=text)
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        yield GenerationChunk(text="", generation_info=_info(stream.completion))

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        ids = self.checked(self.engine.tokens.prompt_ids(prompt))
        async for piece in self.engine.astream(ids, self.params(stop)):
            if isinstance(piece, Completion):
                yield GenerationChunk(text="", generation_info=_info(piece))
                return
            chunk = GenerationChunk(text=piece)
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


class LocalChatModel(KnobFields, BaseChatModel):
    """Chat model over LocalModel: applies the tokenizer's chat template, then generates.

    Async calls await the engine directly (the stock ChatHuggingFace over a pipeline has no async path).
    """

    @property
    def _llm_type(self) -> str:
        return "hfchain_local_chat"

    def _prompt(self, messages: list[BaseMessage]) -> list[int]:
        return self.checked(self.engine.tokens.chat_ids(to_chat_dicts(messages)))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self.engine.generate([self._prompt(messages)], self.params(stop))[0]
        return ChatResult(generations=[ChatGeneration(message=self._message(reply))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Awaits the engine (no worker thread); a cancelled caller cancels the generation."""
        reply = (await self.engine.agenerate([self._prompt(messages)], self.params(stop)))[0]
        return ChatResult(generations=[ChatGeneration(message=self._message(reply))])

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """All conversations in one padded generate() (the default would queue them one by one).

        Callbacks see no per-conversation runs on this path.
        """
        if len(inputs) < 2 or return_exceptions or kwargs:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        prompts = [self._prompt(self._convert_input(value).to_messages()) for value in inputs]
        return [self._message(reply) for reply in self.engine.generate(prompts, self.params())]

    def _message(self, reply: Completion) -> AIMessage:
        metadata = {"model_name": self.engine.name, "finish_reason": reply.finish_reason}
        return AIMessage(content=reply.text, usage_metadata=_usage(reply), response_metadata=metadata)

    def _last_chunk(self, reply: Completion) -> ChatGenerationChunk:
        """The stream's closing chunk: no text, the token usage and the finish reason."""
        info = {"model_name": self.engine.name, "finish_reason": reply.finish_reason}
        return ChatGenerationChunk(
            message=AIMessageChunk(content="", usage_metadata=_usage(reply)), generation_info=info
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream = self.engine.stream(self._prompt(messages), self.params(stop))
        for text in stream:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        yield self._last_chunk(stream.completion)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for piece in self.engine.astream(self._prompt(messages), self.params(stop)):
            if isinstance(piece, Completion):
                yield self._last_chunk(piece)
                return
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


def _llm_result(completions: list[Completion]) -> LLMResult:
    return LLMResult(generations=[[Generation(text=c.text, generation_info=_info(c))] for c in completions])


def _usage(reply: Completion) -> dict[str, int]:
    """LangChain's usage_metadata for a completion."""
    return {
        "input_tokens": reply.prompt_tokens,
        "output_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _info(reply: Completion) -> dict[str, object]:
    """generation_info for a text completion: finish reason and token counts."""
    return {
        "finish_reason": reply.finish_reason,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
    }
