"""tool_choice "auto" on the embedded model: the router on the real encoder, alone and in the chat model."""

import json
from pathlib import Path

from langchain_core.tools import tool

from chains import build_backend, load_settings
from chains.backends.encoder import shared_encoder
from chains.tools.router import ToolRouter

DATA = json.loads((Path(__file__).parent.parent / "fixtures" / "tool_choice.json").read_text())


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly."""
    return "4"


@tool
def get_weather(city: str) -> str:
    """The weather forecast for a city."""
    return "sunny"


def test_the_router_meets_its_targets_on_the_held_out_tool_sets():
    from langchain_core.messages import HumanMessage

    router = ToolRouter(shared_encoder())
    held_out = [p for p in DATA["prompts"] if p["set"] in DATA["split"]["held_out"]]
    choices = [router.choose([HumanMessage(p["text"])], DATA["tool_sets"][p["set"]]) for p in held_out]
    decided = sum((p["tool"] is None) == (c is None) for p, c in zip(held_out, choices, strict=True))
    made = [(p, c) for p, c in zip(held_out, choices, strict=True) if c is not None]
    assert len(held_out) >= 40 and decided / len(held_out) >= 0.85
    assert made and sum(p["tool"] == c for p, c in made) / len(made) >= 0.80


def test_auto_calls_when_a_tool_is_needed_and_answers_otherwise(embedded_backend):
    llm = embedded_backend.chat_model.model_copy(update={"max_new_tokens": 48})
    bound = llm.bind_tools([calculator, get_weather])
    weather = bound.invoke("What's the weather like in Oslo?")
    assert [c["name"] for c in weather.tool_calls] == ["get_weather"]
    assert weather.response_metadata["finish_reason"] == "tool_calls"
    hello = bound.invoke("Hello there")
    assert hello.tool_calls == [] and hello.content and "<tool_call>" not in hello.content
    assert llm.bind_tools([calculator], tool_choice="required").invoke("Hello there").tool_calls  # not routed


def test_the_router_is_on_for_the_embedded_model_only_and_a_setting_turns_it_off():
    assert build_backend(load_settings(backend="local", model=None)).chat_model.router is not None
    assert (
        build_backend(load_settings(backend="local", model=None, tool_router="off")).chat_model.router is None
    )
    named = build_backend(load_settings(backend="local", model="some/model"))
    assert named.chat_model.router is None
    forced = build_backend(load_settings(backend="local", model="some/model", tool_router="on"))
    assert forced.chat_model.router.threshold == 0.255
