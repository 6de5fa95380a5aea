"""Local backend: LangChain's HuggingFacePipeline and a chat model, both generating through LocalModel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    GenerationChunk,
    LLMResult,
)
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_huggingface import HuggingFacePipeline
from pydantic import BaseModel, ConfigDict, Field

from chains.backends.model import Completion, GenerationParams, LocalModel
from chains.messages import to_chat_dicts
from chains.tools.calls import CallStream, openai_tools, parse_calls
from chains.tools.grammar import text_grammar
from chains.tools.plan import CallPlan, plan_call
from chains.tools.structured import structured_output

REQUIRED = ("required", "any", True)  # tool_choice values that force a call to one of the tools
KNOB_FIELDS = {
    k: k for k in ("max_new_tokens", "temperature", "top_p", "stop", "seed", "speculation", "logprobs")
}


class KnobDefaults(BaseModel):
    """The generation knob fields (exposed as configurables), with their defaults."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None
    speculation: bool | None = None  # None: the server's HFCHAIN_SPECULATION
    logprobs: int | None = None  # each token's log-probability and this many alternatives (None: off)


class KnobFields(KnobDefaults):
    """Knobs plus the engine, shared by the local LLM and chat model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: LocalModel = Field(exclude=True)

    def params(self, stop: list[str] | None = None, grammar: str | None = None) -> GenerationParams:
        """The knobs for one call; call-time stop sequences add to the configured ones."""
        stops = tuple(dict.fromkeys([*(self.stop or []), *(stop or [])]))
        return GenerationParams(
            self.max_new_tokens,
            self.temperature,
            self.top_p,
            stops,
            self.seed,
            grammar,
            self.speculation,
            self.logprobs,
        )

    def checked(self, ids: list[int]) -> list[int]:
        """The prompt ids, once checked to fit the context with room for the reply (else 413)."""
        self.engine.budget.check(len(ids), self.max_new_tokens)
        return ids


class LocalLLM(KnobFields, HuggingFacePipeline):
    """HuggingFacePipeline whose generation goes through the shared LocalModel (only new text back).

    `grammar` (a Lark text, chains/tools/grammar.py) in the call's keyword arguments constrains the reply.
    """

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
        return _llm_result(self.engine.generate(ids, self.params(stop, kwargs.get("grammar"))))

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        """Awaits the engine (no worker thread); a cancelled caller cancels the generation."""
        ids = [self.checked(self.engine.tokens.prompt_ids(prompt)) for prompt in prompts]
        return _llm_result(await self.engine.agenerate(ids, self.params(stop, kwargs.get("grammar"))))

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        ids = self.checked(self.engine.tokens.prompt_ids(prompt))
        stream = self.engine.stream(ids, self.params(stop, kwargs.get("grammar")))
        for text in stream:
            chunk = _piece_chunk(text)
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        yield GenerationChunk(text="", generation_info=_info(stream.completion, streamed=True))

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        ids = self.checked(self.engine.tokens.prompt_ids(prompt))
        async for piece in self.engine.astream(ids, self.params(stop, kwargs.get("grammar"))):
            if isinstance(piece, Completion):
                yield GenerationChunk(text="", generation_info=_info(piece, streamed=True))
                return
            chunk = _piece_chunk(piece)
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


class LocalChatModel(KnobFields, BaseChatModel):
    """Chat model over LocalModel: applies the tokenizer's chat template, then generates.

    Tools (`bind_tools`) and response formats (`with_structured_output`, or `bind(response_format=...)`)
    become a grammar that constrains the reply, so every call and every structured reply is valid and
    whole. With a `router`, tool_choice "auto" is decided by it (a small model rarely calls by itself).
    Async calls await the engine directly (the stock ChatHuggingFace over a pipeline has no async path).
    """

    router: Any = Field(default=None, exclude=True)  # decides tool_choice "auto" (chains/tools/router.py)

    @property
    def _llm_type(self) -> str:
        return "hfchain_local_chat"

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools (LangChain tools, pydantic models, functions, OpenAI dicts) the replies may call."""
        tools = openai_tools(list(tools))
        plan_call(tools, tool_choice)  # a tool_choice naming no tool fails here, not at the first call
        return self.bind(
            tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls, **kwargs
        )

    def with_structured_output(
        self, schema: Any, *, method: str = "json_schema", include_raw: bool = False, **kwargs: Any
    ) -> Runnable:
        """Replies parsed into `schema`: constrained JSON (json_schema), a forced call (function_calling)
        or any JSON object (json_mode); `include_raw` as LangChain defines it."""
        return structured_output(self, schema, method=method, include_raw=include_raw)

    def _routes(self, kwargs: dict) -> bool:
        """Whether the router decides this call: tools with tool_choice "auto" (or unset), or required
        among several."""
        tools, choice = kwargs.get("tools") or [], kwargs.get("tool_choice")
        required = choice in REQUIRED and len(tools) > 1
        return self.router is not None and bool(tools) and (choice in (None, "auto") or required)

    def _routed(self, messages: list[BaseMessage], kwargs: dict) -> dict:
        """The call's options with tool_choice decided by the router: under auto a tool or "none", under
        required the tool to call (left to the model when the router has no query to go by)."""
        if not self._routes(kwargs):
            return kwargs
        required = kwargs.get("tool_choice") in REQUIRED
        choice = self.router.choose(messages, openai_tools(list(kwargs["tools"])), required=required)
        named = {"type": "function", "function": {"name": choice}}  # a tool named "none" is not the keyword
        if required:
            return {**kwargs, "tool_choice": named} if choice else kwargs
        return {**kwargs, "tool_choice": named if choice else "none"}

    async def _arouted(self, messages: list[BaseMessage], kwargs: dict) -> dict:
        """_routed off the event loop (the encoder runs for a few milliseconds)."""
        return await asyncio.to_thread(self._routed, messages, kwargs) if self._routes(kwargs) else kwargs

    def prompt_ids(self, messages: list[BaseMessage], **kwargs: Any) -> list[int]:
        """The token ids the model reads for `messages` with these tools and formats (not checked against
        the context: /tokenize and count_tokens report what is too long too)."""
        return self._render(messages, kwargs)[0]

    def _prepare(self, messages: list[BaseMessage], kwargs: dict) -> tuple[list[int], CallPlan]:
        ids, plan = self._render(messages, kwargs)
        return self.checked(ids), plan

    def _render(self, messages: list[BaseMessage], kwargs: dict) -> tuple[list[int], CallPlan]:
        plan, tokens = plan_call(**kwargs), self.engine.tokens
        if tokens.renders_tools and not plan.schema_hint:  # the template writes the tools its own way
            ids = tokens.chat_ids(to_chat_dicts(messages, native=True), tools=plan.tools or None)
        else:
            ids = tokens.chat_ids(to_chat_dicts(plan.messages(messages)))
        if plan.grammar is None and (plan.tools or any(isinstance(m, ToolMessage) for m in messages)):
            plan.grammar = text_grammar()  # text that does not go on to invent a tool's result
        return ids, plan

    def _params(self, stop: list[str] | None, plan: CallPlan) -> GenerationParams:
        return self.params(stop, plan.grammar)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        ids, plan = self._prepare(messages, self._routed(messages, kwargs))
        reply = self.engine.generate([ids], self._params(stop, plan))[0]
        return ChatResult(generations=[ChatGeneration(message=self._message(reply, plan))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Awaits the engine (no worker thread); a cancelled caller cancels the generation."""
        ids, plan = self._prepare(messages, await self._arouted(messages, kwargs))
        reply = (await self.engine.agenerate([ids], self._params(stop, plan)))[0]
        return ChatResult(generations=[ChatGeneration(message=self._message(reply, plan))])

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
        prompts = [self._prepare(self._convert_input(value).to_messages(), {})[0] for value in inputs]
        return [self._message(reply, CallPlan()) for reply in self.engine.generate(prompts, self.params())]

    def _message(self, reply: Completion, plan: CallPlan) -> AIMessage:
        content, calls = parse_calls(reply.text) if plan.parses_calls else (reply.text, [])
        reason = "tool_calls" if calls and reply.finish_reason == "stop" else reply.finish_reason
        metadata = {"model_name": self.engine.name, "finish_reason": reason, **_stopped_by(reply)}
        if reply.logprobs is not None:  # as langchain-openai reports them
            metadata["logprobs"] = {"content": list(reply.logprobs)}
        return AIMessage(
            content=content, tool_calls=calls, usage_metadata=_usage(reply), response_metadata=metadata
        )

    def _last_chunk(self, reply: Completion, calls: int = 0) -> ChatGenerationChunk:
        """The stream's closing chunk: no text, the token usage and the finish reason."""
        reason = "tool_calls" if calls and reply.finish_reason == "stop" else reply.finish_reason
        info = {"model_name": self.engine.name, "finish_reason": reason, **_stopped_by(reply)}
        message = AIMessageChunk(content="", usage_metadata=_usage(reply))
        return ChatGenerationChunk(message=message, generation_info=info)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        ids, plan = self._prepare(messages, self._routed(messages, kwargs))
        stream, pieces = self.engine.stream(ids, self._params(stop, plan)), Pieces(plan)
        for text in stream:
            for chunk in pieces.feed(text):
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        yield from pieces.flush()
        yield self._last_chunk(stream.completion, pieces.calls)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        ids, plan = self._prepare(messages, await self._arouted(messages, kwargs))
        pieces = Pieces(plan)
        async for piece in self.engine.astream(ids, self._params(stop, plan)):
            if isinstance(piece, Completion):
                for chunk in pieces.flush():
                    yield chunk
                yield self._last_chunk(piece, pieces.calls)
                return
            for chunk in pieces.feed(piece):
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk


class Pieces:
    """Stream chunks for a reply: text as it comes; with tools, each call as a tool_call_chunk once whole."""

    def __init__(self, plan: CallPlan) -> None:
        self.split = CallStream() if plan.parses_calls else None
        self.calls = 0
        self.logprobs: list[dict] = []  # entries not yet on a chunk (their text is held back)

    def feed(self, text: str) -> list[ChatGenerationChunk]:
        self.logprobs.extend(getattr(text, "logprobs", []))
        if self.split is None:
            return self._scored([_text_chunk(text)])
        shown, calls = self.split.feed(text)
        self.calls += len(calls)
        return self._scored(([_text_chunk(shown)] if shown else []) + [_call_chunk(call) for call in calls])

    def flush(self) -> list[ChatGenerationChunk]:
        rest = self.split.flush() if self.split else ""
        return self._scored([_text_chunk(rest)] if rest or self.logprobs else [])

    def _scored(self, chunks: list[ChatGenerationChunk]) -> list[ChatGenerationChunk]:
        """The first chunk carries the entries gathered so far (merged chunks concatenate them)."""
        if chunks and self.logprobs:
            chunks[0].message.response_metadata["logprobs"] = {"content": self.logprobs}
            self.logprobs = []
        return chunks


def _text_chunk(text: str) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=AIMessageChunk(content=text))


def _call_chunk(call: dict) -> ChatGenerationChunk:
    args = json.dumps(call["args"], ensure_ascii=False)
    part = tool_call_chunk(name=call["name"], args=args, id=call["id"], index=call["index"])
    return ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[part]))


def _llm_result(completions: list[Completion]) -> LLMResult:
    return LLMResult(generations=[[Generation(text=c.text, generation_info=_info(c))] for c in completions])


def _stopped_by(reply: Completion) -> dict[str, str]:
    """{"stop_sequence": ...} when one of the request's stop sequences ended the reply."""
    return {"stop_sequence": reply.stop_sequence} if reply.stop_sequence else {}


def _usage(reply: Completion) -> dict[str, int]:
    """LangChain's usage_metadata for a completion."""
    usage = {
        "input_tokens": reply.prompt_tokens,
        "output_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    if reply.cached_tokens:
        usage["input_token_details"] = {"cache_read": reply.cached_tokens}
    return usage


def _piece_chunk(text: str) -> GenerationChunk:
    """A streamed text piece, with its tokens' log-probabilities when it carries them."""
    logprobs = getattr(text, "logprobs", None)
    return GenerationChunk(text=str(text), generation_info={"logprobs": logprobs} if logprobs else None)


def _info(reply: Completion, streamed: bool = False) -> dict[str, object]:
    """generation_info for a text completion: finish reason and token counts (and the log-probabilities,
    unless the pieces of a stream carried them)."""
    info: dict[str, object] = {
        "finish_reason": reply.finish_reason,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "stop_sequence": reply.stop_sequence,  # None: EOS or a limit ended it
    }
    if reply.logprobs is not None and not streamed:
        info["logprobs"] = list(reply.logprobs)
    return info
