"""What the playgrounds need from the schemas: no null types, a chat input, knobs and session declared."""

import json

import pytest
from fastapi.testclient import TestClient

from chains.schemas import drop_nulls
from chains.settings import load_settings
from server.app import create_app
from tests.unit.fakes import fake_backend


@pytest.fixture
def client():
    with TestClient(create_app(load_settings(), fake_backend(["Paris."]))) as test_client:
        yield test_client


def test_drop_nulls_removes_null_types_and_null_defaults():
    schema = {
        "properties": {
            "seed": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "Seed"},
            "pick": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            "nested": {"items": {"anyOf": [{"type": "null"}, {"type": "number"}]}},
        }
    }
    drop_nulls(schema)
    assert schema["properties"]["seed"] == {"type": "integer", "title": "Seed"}
    assert schema["properties"]["pick"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert schema["properties"]["nested"]["items"] == {"type": "number"}


@pytest.mark.parametrize("route", ["generate", "chat", "summarize", "classify"])
def test_playground_schemas_have_no_null_type(client, route):
    for kind in ("input_schema", "config_schema"):
        schema = client.get(f"/{route}/{kind}").json()
        if route == "chat" and kind == "input_schema":  # messages are drawn by the chat widget, not forms
            schema = schema["properties"]
        text = json.dumps(schema)
        assert '{"type": "null"}' not in text and '"default": null' not in text.replace(
            '"configurable": {"$ref": "#/$defs/Configurable", "default": null}', ""
        ), (route, kind)


@pytest.mark.parametrize("route", ["generate", "chat", "summarize"])
def test_knobs_are_under_configure(client, route):
    knobs = client.get(f"/{route}/config_schema").json()["$defs"]["Configurable"]["properties"]
    assert {"max_new_tokens", "temperature", "top_p", "stop", "seed"} <= set(knobs)
    assert ("session_id" in knobs) == (route == "chat")


def test_chat_input_is_one_list_of_messages_drawn_as_a_chat(client):
    schema = client.get("/chat/input_schema").json()
    assert list(schema["properties"]) == ["messages"]
    assert schema["properties"]["messages"]["extra"] == {"widget": {"type": "chat", "input": "messages"}}


def test_knobs_still_validate_and_accept_null(client):
    body = {"input": {"prompt": "x"}, "config": {"configurable": {"seed": None, "stop": None}}}
    assert client.post("/generate/invoke", json=body).status_code == 200
    body["config"]["configurable"] = {"seed": "x"}
    assert client.post("/generate/invoke", json=body).status_code == 422


@pytest.mark.parametrize(
    "message",
    [
        {"type": "ai", "content": "x", "tool_calls": ["not a call"]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "user", "content": [3]},
        {"role": "tool", "content": "x"},
        {"role": "user", "content": [{"type": "text"}]},
    ],
)
def test_malformed_messages_get_422_naming_the_message(client, message):
    body = {"input": {"messages": [{"role": "user", "content": "hi"}, message]}}
    response = client.post("/chat/invoke", json=body)
    assert response.status_code == 422, response.text
    assert "messages[1]" in response.text
    openai = client.post("/v1/chat/completions", json={"model": "m", "messages": body["input"]["messages"]})
    assert openai.status_code == 400 and "messages[1]" in openai.json()["error"]["message"]
