"""Chat chain: {"messages": [...]} -> AIMessage, with the chat template applied by the backend."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict

from chains.backends import Backend
from chains.messages import Messages, with_system_prompt
from chains.prompts import load_prompt


class ChatInput(BaseModel):
    """Input of /chat: LangChain-serialised or OpenAI-style messages."""

    model_config = ConfigDict(extra="forbid")

    messages: Messages


def build_chat_chain(backend: Backend, system_prompt: str | None = None) -> Runnable:
    """messages (+ default system prompt) -> chat model -> AIMessage, knobs configurable."""
    system = load_prompt("chat_system") if system_prompt is None else system_prompt

    def prepare(value: dict | ChatInput) -> list[BaseMessage]:
        return with_system_prompt(ChatInput.model_validate(value).messages, system)

    chain = RunnableLambda(prepare, name="messages") | backend.configurable_chat_model()
    return chain.with_types(input_type=ChatInput, output_type=AIMessage)
