"""Fast fakes: langchain-core's fake models with the knob fields the real backends expose."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel, FakeListChatModel, FakeStreamingListLLM
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from chains.agent.middleware import steps_taken
from chains.backends import Backend
from chains.backends.local import KNOB_FIELDS, KnobDefaults
from chains.budget import Budget
from chains.tokens import EstimatedTokens
from chains.tools.calls import openai_tools


class KnobFakeLLM(KnobDefaults, FakeStreamingListLLM):
    """FakeStreamingListLLM that also has the generation knob fields."""


class KnobFakeChat(KnobDefaults, FakeListChatModel):
    """FakeListChatModel that also has the generation knob fields."""


def fake_backend(
    responses: list[str] | None = None,
    ready: bool = True,
    context_window: int = 4096,
    max_input: int | None = None,
) -> Backend:
    """A Backend over fake models that answer from `responses` in turn (estimated token counts)."""
    responses = responses or ["fake reply"]
    budget = Budget(EstimatedTokens(), context_window, max_input=max_input)
    return Backend(
        name="fake",
        model_name="fake-model",
        llm=KnobFakeLLM(responses=responses),
        chat_model=KnobFakeChat(responses=responses),
        llm_knobs=KNOB_FIELDS,
        chat_knobs=KNOB_FIELDS,
        is_ready=lambda: ready,
        budget=lambda: budget,
    )


class ScriptedChat(KnobDefaults, BaseChatModel):
    """Answers step n of a turn (n = AI messages since the newest human one) with `script[n]`, tool calls
    included; `log` (shared by the copies knobs make) records each call's messages and options."""

    script: list[BaseMessage]
    log: Any = None

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self.bind(tools=openai_tools(list(tools)), tool_choice=tool_choice, **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ):
        if self.log is not None:
            self.log.append({"messages": messages, **kwargs})
        reply = self.script[min(steps_taken(messages), len(self.script) - 1)].model_copy()
        return ChatResult(generations=[ChatGeneration(message=reply)])


def scripted_backend(
    script: list[BaseMessage], log: list | None = None, context_window: int = 4096
) -> Backend:
    """A Backend whose chat model follows `script` (see ScriptedChat)."""
    backend = fake_backend(context_window=context_window)
    backend.chat_model = ScriptedChat(script=script, log=log)
    return backend
