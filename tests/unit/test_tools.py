"""Tool definitions, tool_choice, call parsing and stream splitting, without a model."""

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from pydantic import BaseModel

from chains.errors import InvalidInput
from chains.messages import to_chat_dicts
from chains.prompts import load_prompt
from chains.tools.calls import CallStream, chosen_tools, openai_tools, parse_calls
from chains.tools.plan import plan_call
from server.openai_api import check_tool_results


class Weather(BaseModel):
    """Weather for a city."""

    city: str


TOOLS = openai_tools([Weather, {"type": "function", "function": {"name": "now", "parameters": {}}}])


def test_tools_of_every_kind_become_openai_tools():
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    names = [t["function"]["name"] for t in openai_tools([Weather, add, TOOLS[1]])]
    assert names == ["Weather", "add", "now"]
    with pytest.raises(InvalidInput, match="distinct"):
        openai_tools([Weather, Weather])
    with pytest.raises(InvalidInput, match=r"tools\[0\]"):
        openai_tools([42])


@pytest.mark.parametrize(
    ("choice", "names", "forced"),
    [
        (None, ["Weather", "now"], False),
        ("auto", ["Weather", "now"], False),
        ("none", [], False),
        ("required", ["Weather", "now"], True),
        ("any", ["Weather", "now"], True),
        ("now", ["now"], True),
        ({"type": "function", "function": {"name": "Weather"}}, ["Weather"], True),
    ],
)
def test_tool_choice(choice, names, forced):
    tools, must = chosen_tools(TOOLS, choice)
    assert [t["function"]["name"] for t in tools] == names and must == forced


def test_bad_choices_and_formats_name_the_fix():
    with pytest.raises(InvalidInput, match="not among the tools"):
        chosen_tools(TOOLS, "nope")
    with pytest.raises(InvalidInput, match="not both"):
        plan_call(tools=TOOLS, response_format={"type": "json_object"})
    with pytest.raises(InvalidInput, match="json_schema"):
        plan_call(response_format={"type": "xml"})
    with pytest.raises(InvalidInput, match="schema"):
        plan_call(response_format={"type": "json_schema", "json_schema": {"name": "x"}})


def test_calls_are_parsed_out_of_the_reply():
    text = 'Let me check.\n<tool_call>\n{"name": "Weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    content, calls = parse_calls(text)
    assert content == "Let me check."
    assert [(c["name"], c["args"], c["type"]) for c in calls] == [("Weather", {"city": "Paris"}, "tool_call")]
    assert calls[0]["id"].startswith("call_")
    cut = '<tool_call>\n{"name": "Weather", "argu'
    assert parse_calls(cut) == (cut, [])  # half a call is never a call


def test_a_stream_shows_text_and_yields_whole_calls():
    split, shown, calls = CallStream(), "", []
    pieces = ["Sure", " <tool", "_call>\n", '{"name": "now", ', '"arguments": {}}\n</tool_', "call>"]
    for piece in pieces:
        text, done = split.feed(piece)
        shown, calls = shown + text, calls + done
    assert shown == "Sure " and [c["name"] for c in calls] == ["now"] and calls[0]["index"] == 0
    assert split.flush() == ""


def test_calls_and_results_are_written_into_the_prompt():
    call = {"name": "now", "args": {}, "id": "c1", "type": "tool_call"}
    dicts = to_chat_dicts(
        [AIMessage(content="", tool_calls=[call]), ToolMessage(content="12:00", tool_call_id="c1")]
    )
    assert dicts[0] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>',
    }
    assert dicts[1] == {"role": "user", "content": load_prompt("tool_response").format(result="12:00")}


def test_tool_results_must_answer_an_earlier_call():
    call = {"id": "c1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    check_tool_results([{"role": "assistant", "tool_calls": [call]}, {"role": "tool", "tool_call_id": "c1"}])
    with pytest.raises(InvalidInput, match=r"messages\[0\].tool_call_id"):
        check_tool_results([{"role": "tool", "tool_call_id": "c1", "content": "x"}])


def test_tool_choice_none_describes_the_tools_but_reads_no_call():
    plan = plan_call(TOOLS, "none")
    assert plan.tools and plan.grammar is None and not plan.parses_calls
