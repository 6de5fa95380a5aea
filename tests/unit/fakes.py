"""Fast fakes: langchain-core's fake models with the knob fields the real backends expose."""

from __future__ import annotations

from langchain_core.language_models import FakeListChatModel, FakeStreamingListLLM

from chains.backends import Backend
from chains.backends.local import KNOB_FIELDS, KnobDefaults
from chains.budget import Budget
from chains.tokens import EstimatedTokens


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
