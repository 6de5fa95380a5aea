"""Chat chain: {"messages": [...]} -> AIMessage, history trimmed to the budget, template by the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator, RunnableLambda
from pydantic import BaseModel, ConfigDict, ValidationError

from chains.backends import Backend
from chains.messages import Messages, with_system_prompt
from chains.prompts import load_prompt


class ChatInput(BaseModel):
    """Input of /chat: LangChain-serialised or OpenAI-style messages."""

    model_config = ConfigDict(extra="forbid")

    messages: Messages


def system_prompt_or_default(system_prompt: str | None) -> str:
    """The configured system prompt, else the one in prompts/chat_system.txt."""
    return load_prompt("chat_system") if system_prompt is None else system_prompt


def fit_conversation(
    backend: Backend, value: object, system: str | None, config: dict | None
) -> tuple[list[BaseMessage], dict]:
    """The messages to send (system prompt added, oldest turns dropped to fit) and what was done."""
    messages = with_system_prompt(ChatInput.model_validate(value).messages, system)
    budget = backend.budget()
    kept, dropped = budget.fit_history(messages, backend.max_new_tokens_of(config))
    return kept, {"dropped_messages": dropped, "token_counting": budget.counting}


def preflight(backend: Backend, value: object, config: dict | None, system: str | None = None) -> None:
    """The budget check for a raw request input (413 if the newest message cannot fit)."""
    try:
        ChatInput.model_validate(value)
    except ValidationError:
        return  # schema validation reports it
    fit_conversation(backend, value, system, config)


def with_metadata(info: dict) -> Runnable:
    """Adds `info` to the reply's response_metadata (the first chunk, when streaming)."""

    def add(message: AIMessage) -> AIMessage:
        message.response_metadata = {**message.response_metadata, **info}
        return message

    def transform(chunks: Iterator[AIMessage]) -> Iterator[AIMessage]:
        for i, chunk in enumerate(chunks):
            yield add(chunk) if i == 0 else chunk

    async def atransform(chunks: AsyncIterator[AIMessage]) -> AsyncIterator[AIMessage]:
        first = True
        async for chunk in chunks:
            yield add(chunk) if first else chunk
            first = False

    return RunnableGenerator(transform, atransform, name="metadata")


def build_chat_chain(backend: Backend, system_prompt: str | None = None) -> Runnable:
    """messages -> fit to budget -> chat model -> AIMessage (with dropped_messages), knobs configurable."""
    system = system_prompt_or_default(system_prompt)
    model = backend.configurable_chat_model()

    def respond(value: dict | ChatInput, config: RunnableConfig) -> Runnable:
        kept, info = fit_conversation(backend, value, system, config)
        return RunnableLambda(lambda _: kept, name="messages") | model | with_metadata(info)

    return RunnableLambda(respond, name="chat").with_types(input_type=ChatInput, output_type=AIMessage)
