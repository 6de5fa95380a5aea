"""Grammar-constrained decoding with the embedded model: every call and structured reply is valid."""

import json

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from chains.backends.engine import GenerationParams
from chains.tools.grammar import json_grammar

QUESTION = "What is the weather in Paris?"


@tool
def get_weather(city: str, days: int = 1) -> str:
    """The weather forecast for a city."""
    return "sunny"


@tool
def get_time(timezone: str) -> str:
    """The current time in a timezone."""
    return "12:00"


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


def test_a_call_cut_by_max_tokens_is_not_a_call(embedded_backend):
    reply = model(embedded_backend, 6).bind_tools([get_weather], tool_choice="required").invoke(QUESTION)
    assert reply.tool_calls == [] and reply.response_metadata["finish_reason"] == "length"


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
        {"type": "string", "maxLength": 12},
        {"type": "integer", "minimum": 0, "maximum": 1000},
        {"type": "boolean"},
        {"type": "number", "minimum": -10, "maximum": 10},
        {"enum": ["red", "green", "blue"]},
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 3},
    ]
)
SCHEMAS = st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), SCALARS, min_size=1, max_size=3).map(
    lambda props: {
        "type": "object",
        "properties": props,
        "required": sorted(props),
        "additionalProperties": False,
    }
)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(schema=SCHEMAS)
def test_every_constrained_reply_validates(embedded_backend, schema):
    engine = embedded_backend.engine
    prompt = engine.tokens.chat_ids(
        [{"role": "user", "content": f"Reply with JSON for {json.dumps(schema)}"}]
    )
    reply = engine.generate([prompt], GenerationParams(max_new_tokens=120, grammar=json_grammar(schema)))[0]
    assert reply.finish_reason == "stop", reply
    jsonschema.validate(json.loads(reply.text), schema)
