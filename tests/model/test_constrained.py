"""Grammar-constrained decoding with the embedded model: every call and structured reply is valid."""

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from chains.backends.engine import GenerationParams
from chains.errors import InvalidInput
from chains.tools.calls import parse_calls
from chains.tools.grammar import json_grammar, tools_grammar

QUESTION = "What is the weather in Paris?"


@tool
def get_weather(city: str, days: int = 1) -> str:
    """The weather forecast for a city."""
    return "sunny"


@tool
def get_time(timezone: str) -> str:
    """The current time in a timezone."""
    return "12:00"


class City(BaseModel):
    name: str
    country: str
    population_millions: float = Field(ge=0)


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int = Field(ge=0, le=150)


def model(backend, tokens: int = 48):
    return backend.chat_model.model_copy(update={"max_new_tokens": tokens})


def test_required_and_named_tool_choice_give_valid_calls(embedded_backend):
    for choice, names in [("required", {"get_weather", "get_time"}), ("get_time", {"get_time"})]:
        reply = (
            model(embedded_backend).bind_tools([get_weather, get_time], tool_choice=choice).invoke(QUESTION)
        )
        assert reply.response_metadata["finish_reason"] == "tool_calls" and len(reply.tool_calls) == 1
        call = reply.tool_calls[0]
        assert call["name"] in names and call["id"].startswith("call_")
        schema = {get_weather.name: get_weather, get_time.name: get_time}[call["name"]].args_schema
        schema.model_validate(call["args"])  # the arguments follow the tool's schema


def test_streamed_calls_arrive_as_tool_call_chunks(embedded_backend):
    chunks = list(model(embedded_backend).bind_tools([get_weather], tool_choice="required").stream(QUESTION))
    assert any(c.tool_call_chunks for c in chunks)
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert [c["name"] for c in total.tool_calls] == ["get_weather"] and total.content == ""
    assert total.response_metadata["finish_reason"] == "tool_calls"


def test_a_limit_below_the_shortest_call_is_refused_up_front(embedded_backend):
    bound = model(embedded_backend, 6).bind_tools([get_weather], tool_choice="required")
    with pytest.raises(InvalidInput, match="at least") as refused:
        bound.invoke(QUESTION)
    minimum = refused.value.details["minimum_tokens"]
    reply = (
        model(embedded_backend, minimum).bind_tools([get_weather], tool_choice="required").invoke(QUESTION)
    )
    assert reply.response_metadata["finish_reason"] == "tool_calls" and len(reply.tool_calls) == 1
    assert reply.usage_metadata["output_tokens"] <= minimum and reply.content == ""
    get_weather.args_schema.model_validate(reply.tool_calls[0]["args"])


def test_a_tight_limit_closes_the_structure_in_time(embedded_backend):
    engine = embedded_backend.engine
    schema = City.model_json_schema()
    prompt = engine.tokens.chat_ids([{"role": "user", "content": "Describe Paris in JSON."}])
    minimum = engine.engine.grammars.constraint(json_grammar(schema)).minimum
    limits = [minimum, minimum + 3, minimum + 12]
    jobs = [engine.engine.submit(prompt, GenerationParams(max_new_tokens=n, grammar=json_grammar(schema)))
            for n in limits]  # fmt: skip
    for job, limit in zip(jobs, limits, strict=True):
        *_, completion = job.events()
        assert completion.finish_reason == "stop" and completion.completion_tokens <= limit
        City.model_validate_json(completion.text)


def test_structured_output_by_every_method(embedded_backend):
    text = "Alice is 31 years old. Extract the person."
    for method in ("json_schema", "function_calling"):
        person = model(embedded_backend).with_structured_output(Person, method=method).invoke(text)
        assert isinstance(person, Person)
    raw = (
        model(embedded_backend)
        .with_structured_output(None, method="json_mode", include_raw=True)
        .invoke(text)
    )
    assert isinstance(raw["parsed"], dict) and raw["parsing_error"] is None and raw["raw"].content


def test_rows_without_a_grammar_are_untouched_and_grammars_are_cached(embedded_backend):
    engine = embedded_backend.engine
    prompt = engine.tokens.chat_ids([{"role": "user", "content": "Name a colour."}])
    free = GenerationParams(max_new_tokens=12)
    alone = engine.generate([prompt], free)[0].text
    grammar = json_grammar(Person.model_json_schema())
    compiled = engine.engine.grammars.compiled
    jobs = [
        engine.engine.submit(prompt, GenerationParams(max_new_tokens=40, grammar=grammar)) for _ in range(2)
    ]
    beside = engine.generate([prompt], free)[0].text  # shares the batch with the constrained rows
    for job in jobs:
        *_, completion = job.events()
        Person.model_validate_json(completion.text)
    assert beside == alone
    assert engine.engine.grammars.compiled - compiled <= 1  # one compile for the two rows


SCALARS = st.sampled_from(
    [
        {"type": "string"},
        {"type": "string", "maxLength": 12},
        {"type": "string", "minLength": 3},
        {"type": "integer", "minimum": 0, "maximum": 1000},
        {"type": "integer"},
        {"type": "boolean"},
        {"type": "number", "minimum": -10, "maximum": 10},
        {"type": "number"},
        {"enum": ["red", "green", "blue"]},
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 3},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
    ]
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, min_size=1, max_size=2).map(
            lambda props: {"type": "object", "properties": props, "required": sorted(props)}
        )
        | inner.map(lambda item: {"type": "array", "items": item})
    ),
    max_leaves=4,
)
SCHEMAS = st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), VALUES, min_size=1, max_size=3).map(
    lambda props: {"type": "object", "properties": props, "required": sorted(props)[:2]}
)


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    cases=st.lists(
        st.tuples(SCHEMAS, st.integers(min_value=1, max_value=48), st.booleans()), min_size=4, max_size=4
    )
)
def test_every_constrained_reply_validates_or_is_refused_up_front(embedded_backend, cases):
    """Random schemas under random small limits, as response formats or as a forced tool's arguments, four
    rows at a time in one batch: each reply is whole and valid within its limit, or its request was refused
    before any work."""
    engine = embedded_backend.engine
    jobs = []
    for schema, limit, as_call in cases:
        tool = {"type": "function", "function": {"name": "record", "parameters": schema}}
        grammar = tools_grammar([tool], forced=True) if as_call else json_grammar(schema)
        prompt = engine.tokens.chat_ids(
            [{"role": "user", "content": f"Reply with JSON for {json.dumps(schema)}"}]
        )
        try:
            job = engine.engine.submit(prompt, GenerationParams(max_new_tokens=limit, grammar=grammar))
        except InvalidInput as refused:
            assert refused.details["minimum_tokens"] > limit
            continue
        jobs.append((job, schema, limit, as_call))
    for job, schema, limit, as_call in jobs:
        *_, reply = job.events()
        assert reply.finish_reason == "stop" and reply.completion_tokens <= limit, reply
        if as_call:
            _, calls = parse_calls(reply.text)
            assert [c["name"] for c in calls] == ["record"], reply
            jsonschema.validate(calls[0]["args"], schema)
        else:
            jsonschema.validate(json.loads(reply.text), schema)
