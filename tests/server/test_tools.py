"""Tool calling and structured output over /v1 with real clients: openai, ChatOpenAI, create_agent."""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import wrap_model_call
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.conftest import metric

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class City(BaseModel):
    name: str
    country: str


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_a_required_call_then_its_result_in_the_history(client):
    first = client.chat.completions.create(
        model="m", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=64
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and isinstance(
        json.loads(call.function.arguments)["city"], str
    )
    history = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    second = client.chat.completions.create(model="m", messages=history, tools=[WEATHER], max_tokens=24)
    assert second.choices[0].finish_reason in {"stop", "length", "tool_calls"}


def test_streamed_tool_call_deltas(client):
    named = {"type": "function", "function": {"name": "get_weather"}}
    stream = client.chat.completions.create(
        model="m", messages=ASK, tools=[WEATHER], tool_choice=named, stream=True, max_tokens=64
    )
    deltas, reasons = [], []
    for chunk in stream:
        deltas += chunk.choices[0].delta.tool_calls or []
        reasons.append(chunk.choices[0].finish_reason)
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].function.arguments == ""
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert "city" in json.loads(arguments) and reasons[-1] == "tool_calls"


def test_parse_with_a_pydantic_response_format_and_a_strict_tool(client):
    parsed = client.chat.completions.parse(
        model="m",
        messages=[{"role": "user", "content": "Paris is in France. Give the city."}],
        response_format=City,
        max_tokens=48,
    )
    assert isinstance(parsed.choices[0].message.parsed, City)
    tool_reply = client.chat.completions.parse(
        model="m",
        messages=[{"role": "user", "content": "Paris is in France. Record the city."}],
        tools=[openai.pydantic_function_tool(City)],
        tool_choice="required",
        max_tokens=48,
    )
    assert isinstance(tool_reply.choices[0].message.tool_calls[0].function.parsed_arguments, City)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
        ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "not both"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "schema"),
        ({"messages": [*ASK, {"role": "tool", "tool_call_id": "zz", "content": "x"}]}, "tool_call_id"),
    ],
)
def test_bad_tool_requests_get_400_naming_the_field(client, extra, field):
    body = {"model": "m", "messages": ASK, "max_tokens": 8, **extra}
    with pytest.raises(openai.BadRequestError, match=field):
        client.chat.completions.create(**body)


def test_create_agent_over_chat_openai_runs_a_tool_loop(server):
    added = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        added.append((a, b))
        return a + b

    @wrap_model_call
    def call_first(request, handler):  # the 135M model rarely chooses a tool by itself
        if not any(isinstance(m, ToolMessage) for m in request.messages):
            request = request.override(tool_choice="required")
        return handler(request)

    llm = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model="m", temperature=0, max_tokens=48)
    agent = create_agent(llm, tools=[add], middleware=[call_first])
    result = agent.invoke({"messages": [{"role": "user", "content": "What is 2 + 3?"}]})
    kinds = [m.type for m in result["messages"]]
    assert kinds[:3] == ["human", "ai", "tool"] and kinds[-1] == "ai" and len(added) == 1
    assert result["messages"][2].content == str(sum(added[0]))
    structured = llm.with_structured_output(City, method="json_schema").invoke("Paris is in France.")
    assert isinstance(structured, City)


def test_tgi_grammar_constrains_text_generation(server):
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import ValidationError

    tgi = InferenceClient(base_url=server.url)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
        "additionalProperties": False,
    }
    text = tgi.text_generation(
        "The weather in Paris, as JSON:", max_new_tokens=40, grammar={"type": "json", "value": schema}
    )
    data = json.loads(text)
    assert set(data) == {"city", "sunny"} and isinstance(data["sunny"], bool)
    digits = tgi.text_generation(
        "Pick a number:", max_new_tokens=8, grammar={"type": "regex", "value": "[0-9]{3}"}
    )
    assert len(digits) == 3 and digits.isdigit()
    with pytest.raises(ValidationError, match="not valid JSON"):  # huggingface_hub's typed 422
        tgi.text_generation("x", max_new_tokens=4, grammar={"type": "json", "value": "{not json"})


CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}


class Facts(BaseModel):
    name: str
    country: str
    population_millions: float = Field(ge=0)


def test_a_named_tool_on_an_unrelated_message_is_a_whole_call(client):
    named = {"type": "function", "function": {"name": "calculator"}}
    hello = [{"role": "user", "content": "Hello there"}]
    reply = client.chat.completions.create(
        model="m", messages=hello, tools=[CALCULATOR], tool_choice=named, max_tokens=64
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert isinstance(json.loads(choice.message.tool_calls[0].function.arguments)["expression"], str)
    with pytest.raises(openai.BadRequestError, match="at least") as refused:
        client.chat.completions.create(
            model="m", messages=hello, tools=[CALCULATOR], tool_choice=named, max_tokens=8
        )
    minimum = int(re.search(r"at least (\d+)", str(refused.value)).group(1))  # the message names it
    stream = client.chat.completions.create(
        model="m",
        messages=hello,
        tools=[CALCULATOR],
        tool_choice=named,
        max_tokens=minimum or 32,
        stream=True,
    )
    chunks = list(stream)
    arguments = "".join(
        d.function.arguments or "" for c in chunks for d in c.choices[0].delta.tool_calls or []
    )
    assert "expression" in json.loads(arguments) and chunks[-1].choices[0].finish_reason == "tool_calls"


def test_parse_and_with_structured_output_finish_within_the_limit(client, server):
    prompts = ["Describe Paris.", "Give me facts on Lagos.", "Describe Berlin.", "Tell me about Tokyo."]

    def parse(prompt: str) -> Facts:
        messages = [{"role": "user", "content": prompt}]
        reply = client.chat.completions.parse(
            model="m", messages=messages, response_format=Facts, max_tokens=200
        )
        return reply.choices[0].message.parsed

    with ThreadPoolExecutor(len(prompts)) as pool:  # one batch on the server
        assert all(isinstance(facts, Facts) for facts in pool.map(parse, prompts))
    guarded = metric(server.url, "hfchain_guard_tokens_total")
    tight = client.chat.completions.parse(
        model="m", messages=[{"role": "user", "content": prompts[0]}], response_format=Facts, max_tokens=24
    )
    assert isinstance(tight.choices[0].message.parsed, Facts) and tight.usage.completion_tokens <= 24
    assert metric(server.url, "hfchain_guard_tokens_total") > guarded  # its 38-token reply had to close early
    llm = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model="m", temperature=0, max_tokens=200)
    assert isinstance(
        llm.with_structured_output(Facts, method="json_schema").invoke("Describe Berlin."), Facts
    )


def test_tgi_grammar_closes_within_a_small_limit(server):
    from huggingface_hub import InferenceClient

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    text = InferenceClient(base_url=server.url).text_generation(
        "Describe Paris at length, as JSON:", max_new_tokens=9, grammar={"type": "json", "value": schema}
    )
    assert isinstance(json.loads(text)["city"], str)
