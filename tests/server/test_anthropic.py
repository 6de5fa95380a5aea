"""Anthropic's Messages API on a real server, through the `anthropic` client and langchain-anthropic's
ChatAnthropic: replies, streams, a tool-use round trip, count_tokens, and errors as the client's types."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from tests.conftest import hfchain_server

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city"}},
        "required": ["city"],
    },
}
ASK = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def served(embedded_backend, tmp_path_factory):
    proc = hfchain_server(
        HFCHAIN_DATA_DIR=str(tmp_path_factory.mktemp("anthropic")), HFCHAIN_CONTEXT_WINDOW="512"
    )
    proc.wait("/ready")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(served) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served.url, api_key="unused", max_retries=0)


def test_a_reply_has_text_a_stop_reason_and_usage(client):
    reply = client.messages.create(model="any", max_tokens=16, messages=ASK, extra_body={"temperature": 0})
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    assert reply.model == "SmolLM2-135M-Instruct" and reply.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in reply.content] == ["text"] and "Paris" in reply.content[0].text
    read = reply.usage.input_tokens + reply.usage.cache_read_input_tokens
    assert read > 10 and 0 < reply.usage.output_tokens <= 16
    short = client.messages.create(model="any", max_tokens=2, messages=ASK, system="Be brief.")
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2


def test_a_stop_sequence_ends_the_reply_and_is_named(client):
    stops = ["no such words", "Paris"]
    reply = client.messages.create(model="m", max_tokens=16, messages=ASK, stop_sequences=stops)
    assert reply.stop_reason == "stop_sequence" and reply.stop_sequence == "Paris"
    assert "Paris" not in "".join(b.text for b in reply.content)
    with client.messages.stream(model="m", max_tokens=16, messages=ASK, stop_sequences=stops) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "Paris"


def test_a_stream_gives_the_same_text_as_its_final_message(client):
    with client.messages.stream(
        model="any", max_tokens=16, messages=ASK, extra_body={"temperature": 0}
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == final.content[0].text
    assert "Paris" in final.content[0].text and final.stop_reason in ("end_turn", "max_tokens")
    read = final.usage.input_tokens + final.usage.cache_read_input_tokens  # the same prompt ran just before
    assert read > 10 and final.usage.cache_read_input_tokens > 0 and final.usage.output_tokens > 0
    counted = client.messages.count_tokens(model="any", messages=ASK)
    assert counted.input_tokens == final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0)


def test_a_tool_use_round_trip(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    choice = {"type": "tool", "name": "get_weather"}
    call = client.messages.create(model="m", max_tokens=48, messages=ask, tools=[WEATHER], tool_choice=choice)
    assert call.stop_reason == "tool_use"
    use = next(b for b in call.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input.get("city"), str)
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 degrees."}
    turns = [*ask, {"role": "assistant", "content": call.content}, {"role": "user", "content": [result]}]
    answer = client.messages.create(model="m", max_tokens=24, messages=turns, tools=[WEATHER])
    assert answer.stop_reason in ("end_turn", "max_tokens") and answer.content[0].type == "text"
    assert answer.content[0].text.strip()
    with client.messages.stream(
        model="m", max_tokens=48, messages=ask, tools=[WEATHER], tool_choice=choice
    ) as stream:
        events = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert "content_block_start" in events and "message_delta" in events and events[-1] == "message_stop"
    streamed_use = next(b for b in streamed.content if b.type == "tool_use")
    assert streamed.stop_reason == "tool_use" and streamed_use.input == use.input


def test_chat_anthropic_answers_and_calls_a_bound_tool(served):
    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "Sunny, 24 degrees."

    model = ChatAnthropic(model="m", base_url=served.url, api_key="unused", max_tokens=16, max_retries=0)
    assert "Paris" in model.invoke(ASK[0]["content"]).text
    roomy = model.model_copy(update={"max_tokens": 48})  # a forced call needs room for its arguments
    bound = roomy.bind_tools([get_weather], tool_choice="get_weather")
    question = HumanMessage("What is the weather in Paris?")
    reply = bound.invoke([question])
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "get_weather"
    call = reply.tool_calls[0]
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    again = roomy.bind_tools([get_weather]).invoke([question, reply, result])
    assert again.text.strip() and again.usage_metadata["input_tokens"] > 0
    chunks = list(model.stream(ASK[0]["content"]))
    assert "Paris" in "".join(c.text for c in chunks)


@pytest.mark.parametrize(
    ("body", "status", "kind", "says"),
    [
        ({"messages": ASK}, 400, "invalid_request_error", "max_tokens"),
        ({"max_tokens": 10**6, "messages": ASK}, 400, "invalid_request_error", "max_new_tokens"),
        (
            {"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            400,
            "invalid_request_error",
            "'image' block",
        ),
        (
            {"max_tokens": 8, "messages": [{"role": "user", "content": "word " * 2000}]},
            413,
            "request_too_large",
            "tokens",
        ),
        (
            {"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            400,
            "invalid_request_error",
            "tool_use_id",
        ),
    ],
)
def test_bad_input_is_anthropics_error_naming_the_fix(served, body, status, kind, says):
    answer = httpx.post(f"{served.url}/v1/messages", json={"model": "m", **body})
    error = answer.json()
    assert answer.status_code == status and error["type"] == "error"
    assert error["error"]["type"] == kind and says in error["error"]["message"]


def test_the_client_raises_its_own_typed_errors(client):
    with pytest.raises(anthropic.BadRequestError, match="image"):
        client.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}]
        )
    with pytest.raises(anthropic.APIStatusError) as too_long:
        client.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "word " * 2000}]
        )
    assert too_long.value.status_code == 413 and "tokens" in too_long.value.message
