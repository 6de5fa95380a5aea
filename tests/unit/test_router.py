"""The tool router's decisions over a fake encoder (one axis per topic)."""

import numpy as np
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from chains.tools.router import ToolRouter, instruction, tool_text

TOPICS = ("weather", "arithmetic", "email")


class TopicEncoder:
    """Unit vectors on the axis of the first topic word a text has (or a fourth axis: no topic); a text of
    more than twelve words reads as no topic (as a long material dilutes a real encoder's vector)."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        rows = []
        for text in texts:
            row = np.zeros(4, dtype=np.float32)
            hits = [i for i, topic in enumerate(TOPICS) if topic in text.lower() and len(text.split()) <= 12]
            row[hits[0] if hits else 3] = 1.0
            rows.append(row)
        return np.stack(rows)


def tool(name: str, description: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {}}}


TOOLS = [tool("get_weather", "The weather in a city"), tool("calculator", "Exact arithmetic")]


def test_the_closest_tool_above_the_threshold_is_called_else_none():
    router = ToolRouter(TopicEncoder())
    assert router.choose([HumanMessage("What is the weather in Oslo?")], TOOLS) == "get_weather"
    assert router.choose([HumanMessage("Some arithmetic: 2 + 2")], TOOLS) == "calculator"
    assert router.choose([HumanMessage("Hello there")], TOOLS) is None
    assert router.choose([HumanMessage("Send an email")], TOOLS) is None  # no tool is about it


def test_after_a_tool_result_the_reply_is_text_and_the_last_human_message_decides():
    router = ToolRouter(TopicEncoder())
    called = AIMessage("", tool_calls=[{"name": "get_weather", "args": {}, "id": "1"}])
    assert (
        router.choose([HumanMessage("weather?"), called, ToolMessage("sunny", tool_call_id="1")], TOOLS)
        is None
    )
    assert router.choose([HumanMessage("weather in Rome?"), AIMessage("Which day?")], TOOLS) == "get_weather"
    assert router.choose([AIMessage("hi")], TOOLS) is None and router.choose([HumanMessage("x")], []) is None


def test_tool_texts_are_embedded_once():
    encoder = TopicEncoder()
    router = ToolRouter(encoder)
    for _ in range(3):
        router.choose([HumanMessage("weather")], TOOLS)
    assert encoder.calls == 1 + 3  # the tools once, the query each time
    assert tool_text(TOOLS[0]) == "get weather: The weather in a city"


def test_required_takes_the_closest_tool_whatever_its_score():
    router = ToolRouter(TopicEncoder())
    assert router.choose([HumanMessage("Hello there")], TOOLS, required=True) == "get_weather"  # a tie: first
    assert router.choose([HumanMessage("arithmetic")], TOOLS, required=True) == "calculator"
    assert (
        router.choose([ToolMessage("4", tool_call_id="1")], TOOLS, required=True) is None
    )  # the model picks


def test_an_instruction_is_also_read_without_its_material():
    assert instruction("Summarize: The meeting moved to Tuesday.") == "Summarize"
    assert instruction("Classify 'the package arrived broken' as complaint") == "Classify"
    assert instruction("What is 2 + 2?") is None and instruction("'quoted'") is None
    router = ToolRouter(TopicEncoder())
    long = "Weather report: " + "the text it is about goes on and on for many more words " * 2
    assert router.choose([HumanMessage(long)], TOOLS) == "get_weather"  # by its instruction alone
