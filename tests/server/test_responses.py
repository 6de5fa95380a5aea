"""OpenAI's Responses API on a real server, through the openai client (create, stream) and LangChain's
ChatOpenAI(use_responses_api=True): text, instructions and input items, limits, a function-call round
trip, JSON output, the semantic stream events, and 4xx that say what to fix."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

QUESTION = "What is the capital of France? Answer in one word."
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
FORCE = {"type": "function", "name": "get_weather"}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_a_response_has_text_status_and_usage(client):
    reply = client.responses.create(model="any", input=QUESTION, max_output_tokens=16, temperature=0)
    assert reply.id.startswith("resp_") and reply.object == "response" and reply.status == "completed"
    assert reply.model == "SmolLM2-135M-Instruct" and "Paris" in reply.output_text
    assert [item.type for item in reply.output] == ["message"]
    assert reply.usage.input_tokens > 10 and 0 < reply.usage.output_tokens <= 16
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    items = [
        {"role": "developer", "content": "Answer in one word."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
    ]
    from_items = client.responses.create(
        model="m", input=items, instructions="Be brief.", max_output_tokens=16
    )
    assert "Paris" in from_items.output_text and from_items.instructions == "Be brief."
    cut = client.responses.create(model="m", input=QUESTION, max_output_tokens=2)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"


def test_a_stream_sends_the_semantic_events_in_order(client):
    with client.responses.stream(model="m", input=QUESTION, max_output_tokens=16, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text and "Paris" in deltas and final.usage.output_tokens > 0


def test_a_function_call_round_trip_plain_and_streamed(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    call = client.responses.create(
        model="m", input=ask, tools=[WEATHER], tool_choice=FORCE, max_output_tokens=48
    )
    item = next(i for i in call.output if i.type == "function_call")
    assert item.name == "get_weather" and isinstance(json.loads(item.arguments)["city"], str)
    result = {"type": "function_call_output", "call_id": item.call_id, "output": "Sunny, 24 degrees."}
    answer = client.responses.create(
        model="m", input=[*ask, item.model_dump(), result], tools=[WEATHER], max_output_tokens=24
    )
    assert answer.output_text.strip() and answer.output[0].type == "message"
    with client.responses.stream(
        model="m", input=ask, tools=[WEATHER], tool_choice=FORCE, max_output_tokens=48
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert (
        "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    )
    streamed = next(i for i in final.output if i.type == "function_call")
    assert json.loads(streamed.arguments) == json.loads(item.arguments)


def test_text_format_json_schema_gives_json_that_follows_it(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    text = {"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}}
    reply = client.responses.create(
        model="m", input="Name a city and its country.", text=text, max_output_tokens=64
    )
    assert set(json.loads(reply.output_text)) == {"city", "country"}


def test_chat_openai_on_the_responses_api_answers_and_calls_tools(server):
    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "Sunny, 24 degrees."

    model = ChatOpenAI(
        model="m", base_url=f"{server.url}/v1", api_key="unused", use_responses_api=True, max_tokens=48
    )
    assert "Paris" in model.invoke(QUESTION).text
    question = HumanMessage("What is the weather in Paris?")
    reply = model.bind_tools([get_weather], tool_choice="get_weather").invoke([question])
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "get_weather"
    call = reply.tool_calls[0]
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    assert model.bind_tools([get_weather]).invoke([question, reply, result]).text.strip()


def test_stored_responses_continue_a_conversation_and_can_be_read_and_deleted(server, client):
    first = client.responses.create(
        model="m", input="My name is Ada. Reply with OK.", max_output_tokens=8, temperature=0
    )
    assert first.store is True and client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(
        model="m",
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=16,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    # the model read the stored turn again: the prompt is exactly the whole conversation
    conversation = [
        {"role": "user", "content": "My name is Ada. Reply with OK."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]
    counted = httpx.post(f"{server.url}/tokenize", json={"messages": conversation}).json()["count"]
    assert second.usage.input_tokens == counted
    alone = client.responses.create(model="m", input="What is my name?", max_output_tokens=1, store=False)
    with pytest.raises(openai.NotFoundError, match="store: false"):
        client.responses.retrieve(alone.id)
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError, match="previous_response_id"):
        client.responses.create(model="m", input="hi", previous_response_id=first.id)


def test_what_is_not_served_is_a_4xx_naming_the_fix(client):
    with pytest.raises(openai.BadRequestError, match="only function tools"):
        client.responses.create(model="m", input="hi", tools=[{"type": "web_search"}])
    image = [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]
    with pytest.raises(openai.BadRequestError, match="input_image"):
        client.responses.create(model="m", input=image)
    with pytest.raises(openai.NotFoundError, match="no stored response"):
        client.responses.retrieve("resp_123")


def test_an_openai_agents_sdk_agent_calls_a_function_tool_and_answers(server):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # its traces would go to OpenAI's servers
    calls = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return "Sunny, 24 degrees."

    model = OpenAIResponsesModel(
        model="m", openai_client=AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    )
    agent = Agent(
        name="weather",
        instructions="Answer questions about the weather with the get_weather tool.",
        tools=[get_weather],
        model=model,
        model_settings=ModelSettings(tool_choice="get_weather", max_tokens=48, temperature=0),
    )
    result = Runner.run_sync(agent, "What is the weather in Paris?", max_turns=4)
    assert len(calls) == 1 and calls[0]  # the forced call ran once; then the choice went back to auto
    assert isinstance(result.final_output, str) and result.final_output.strip()
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"] and kinds[-1] == "message_output_item"
