"""/summarize's map-reduce: every model call within the budget, any length, collapse when needed."""

from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage
from pydantic import Field

from chains import build_backend, build_summarize_chain, load_settings
from chains.backends import Backend
from chains.backends.local import KNOB_FIELDS
from chains.budget import Budget
from chains.messages import to_chat_dicts
from tests.unit.fakes import KnobFakeChat, KnobFakeLLM

EXCERPT = (Path(__file__).parent.parent / "fixtures" / "hamlet_excerpt.txt").read_text(encoding="utf-8")


def long_text(min_tokens: int, tokens) -> str:
    """Numbered copies of the public-domain excerpt until the text has `min_tokens` tokens."""
    parts, total, i = [], 0, 0
    while total < min_tokens:
        i += 1
        parts.append(f"PART {i}\n\n{EXCERPT}")
        total += tokens.count_text(parts[-1])
    return "\n\n".join(parts)


class RecordingChat(KnobFakeChat):
    """A fake chat model that records the token count of every prompt it is sent."""

    sizes: list[int] = Field(default_factory=list)
    tokens: object = None

    def _call(self, messages: list[BaseMessage], *args, **kwargs) -> str:
        self.sizes.append(self.tokens.count_chat(to_chat_dicts(messages)))
        return super()._call(messages, *args, **kwargs)

    def _stream(self, messages: list[BaseMessage], *args, **kwargs):
        self.sizes.append(self.tokens.count_chat(to_chat_dicts(messages)))
        yield from super()._stream(messages, *args, **kwargs)


def test_50k_tokens_every_call_within_budget_with_collapse(embedded_backend):
    tokens = embedded_backend.engine.tokens
    text = long_text(50_000, tokens)
    reply = "The king speaks of grief, marriage and Norway; Hamlet mourns. " * 12  # ~170 tokens
    chat = RecordingChat(responses=[reply], tokens=tokens, sizes=[], max_new_tokens=200)
    budget = Budget(tokens, context_window=1024)
    backend = Backend(
        name="fake",
        model_name="fake",
        llm=KnobFakeLLM(responses=["x"]),
        chat_model=chat,
        llm_knobs=KNOB_FIELDS,
        chat_knobs=KNOB_FIELDS,
        budget=lambda: budget,
        max_new_tokens=200,
    )
    result = build_summarize_chain(backend).invoke({"text": text})
    limit = 1024 - 200 - 16
    assert result["budget"] == limit and result["context_window"] == 1024
    assert result["chunks"] > 60 and max(result["chunk_tokens"]) <= limit
    assert result["collapse_levels"] >= 1 and result["model_calls"] == len(chat.sizes)
    assert max(chat.sizes) <= limit  # 0 over-budget calls, counted on what was really sent
    assert result["summary"] == reply and result["tokens_in"] == sum(chat.sizes)
    stages = [event["stage"] for event in result["progress"]]
    assert stages[0] == "map" and "collapse 1" in stages and stages[-1] == "final"


@pytest.fixture(scope="module")
def small_context_backend():
    # the chain's budgets are the same on every runtime; int4 on ONNX decodes the ~10 summaries 4x faster
    backend = build_backend(load_settings(context_window=384, runtime="onnx"))
    backend.engine.load()
    return backend


def test_embedded_model_summarizes_within_a_384_token_context(small_context_backend, monkeypatch):
    engine, sizes = small_context_backend.engine, []
    generate, stream = engine.generate, engine.stream
    monkeypatch.setattr(engine, "generate", lambda ids, p: sizes.extend(map(len, ids)) or generate(ids, p))
    monkeypatch.setattr(engine, "stream", lambda ids, p: sizes.append(len(ids)) or stream(ids, p))
    text = EXCERPT  # ~1,500 tokens: 7+ chunks whose summaries (up to 64 tokens each) overflow one call
    config = {"configurable": {"max_new_tokens": 64}}
    events = list(build_summarize_chain(small_context_backend).stream({"text": text}, config=config))
    result = events[0]
    for event in events[1:]:
        result = result + event  # how invoke() aggregates the stream
    assert result["summary"].strip() and result["model_calls"] == len(sizes) >= 3
    assert max(sizes) <= 384 - 64 - 16  # every prompt the model saw fits with room for the reply
    assert result["collapse_levels"] >= 1
    assert sum("summary" in e for e in events) > 3  # the final summary streams
