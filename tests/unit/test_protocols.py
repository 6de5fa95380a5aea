"""The OpenAI and TGI routes and the session routes over fake models: formats, mappings and 4xx bodies."""

import json

import pytest
from fastapi.testclient import TestClient

from chains.errors import Overloaded
from chains.sessions import SessionStore
from chains.settings import load_settings
from server.app import create_app
from server.tgi_api import TgiParameters
from tests.unit.fakes import KnobFakeChat, fake_backend

USER = [{"role": "user", "content": "Capital of France?"}]


def make_client(tmp_path, responses=("Paris.",), **settings):
    backend = fake_backend(list(responses), context_window=settings.pop("context_window", 4096))
    sessions = SessionStore(f"sqlite:///{tmp_path}/sessions.db")
    return TestClient(create_app(load_settings(**settings), backend, sessions))


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as test_client:
        yield test_client


def sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def test_chat_completion_shape(client):
    response = client.post("/v1/chat/completions", json={"model": "any", "messages": USER})
    body = response.json()
    assert response.status_code == 200 and body["object"] == "chat.completion"
    assert body["model"] == "fake-model" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Paris."}
    assert body["choices"][0]["finish_reason"] == "stop"


def test_stream_chunks_follow_openai(client):
    body = {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    data = sse_data(client.post("/v1/chat/completions", json=body).text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    reasons = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert reasons[-1] == "stop" and not any(reasons[:-1])
    assert chunks[-1]["choices"] == [] and "usage" in chunks[-1]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Paris."


def test_models_list_and_lookup(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "fake-model"
    assert client.get("/v1/models/fake-model").status_code == 200
    missing = client.get("/v1/models/other")
    assert missing.status_code == 404 and "fake-model" in missing.json()["error"]["message"]


OPENAI_BAD = [
    (b"{nope", 400, None),
    (b"", 400, None),
    (json.dumps({"messages": []}).encode(), 400, "messages"),
    (json.dumps({"messages": USER, "n": 2}).encode(), 400, None),  # greedy: "set a temperature above 0"
    (json.dumps({"messages": USER, "n": 9, "temperature": 1}).encode(), 400, "n"),
    (json.dumps({"messages": USER, "top_logprobs": 3}).encode(), 400, "top_logprobs"),
    (json.dumps({"messages": USER, "temperature": 3}).encode(), 400, "temperature"),
    (json.dumps({"messages": USER, "max_tokens": 0}).encode(), 400, "max_tokens"),
    (json.dumps({"messages": USER, "max_tokens": 100000}).encode(), 400, None),
    (json.dumps({"messages": USER, "tools": [{"type": "function"}]}).encode(), 400, "tools"),
    (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "messages"),
    (json.dumps({"messages": USER, "stop": 5}).encode(), 400, "stop"),
]


@pytest.mark.parametrize(("body", "status", "param"), OPENAI_BAD)
def test_bad_openai_requests_get_openai_error_bodies(client, body, status, param):
    response = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error" and error["param"] == param


def test_over_budget_is_413_in_openai_format(tmp_path):
    with make_client(tmp_path, context_window=256) as client:
        body = {"messages": [{"role": "user", "content": "word " * 2000}], "stream": True}
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 413 and response.json()["error"]["type"] == "input_too_long"


def test_not_ready_is_503_with_retry_after(tmp_path):
    app = create_app(load_settings(), fake_backend(ready=False), SessionStore(f"sqlite:///{tmp_path}/s.db"))
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json={"messages": USER})
        assert response.status_code == 503 and response.headers["retry-after"] == "2"
        assert "loading" in response.json()["error"]["message"]


def test_session_from_header_or_user_field(tmp_path):
    with make_client(tmp_path, responses=["one", "two", "three"], sessions_from_user=True) as client:
        client.post("/v1/chat/completions", json={"messages": USER}, headers={"x-session-id": "h1"})
        client.post("/v1/chat/completions", json={"messages": USER, "user": "u1"})
        client.post(
            "/v1/chat/completions", json={"messages": USER, "user": "u2"}, headers={"x-session-id": "h1"}
        )
        assert client.get("/sessions/h1").json()["turns"] == 2  # the header wins over user
        assert client.get("/sessions/u1").json()["messages"][1] == {"role": "assistant", "content": "two"}
        assert client.get("/sessions/u2").status_code == 404


def test_the_user_field_is_not_a_session_unless_enabled(tmp_path):
    with make_client(tmp_path) as client:
        reply = client.post("/v1/chat/completions", json={"messages": USER, "user": "any user, any format!"})
        assert reply.status_code == 200 and client.get("/sessions/u1").status_code == 404
        bad = client.post(
            "/v1/chat/completions", json={"messages": USER}, headers={"x-session-id": "bad id!"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "session_id"


class OverloadedChat(KnobFakeChat):
    """A chat model whose engine refuses the work (tokens in flight over the cap)."""

    def _stream(self, *args, **kwargs):
        raise Overloaded("too many tokens in flight", retry_after=1)

    async def _astream(self, *args, **kwargs):
        raise Overloaded("too many tokens in flight", retry_after=1)
        yield


def test_overload_on_a_stream_is_a_429_status_not_an_event(tmp_path):
    backend = fake_backend()
    backend.chat_model = OverloadedChat(responses=["x"])
    app = create_app(load_settings(), backend, SessionStore(f"sqlite:///{tmp_path}/s.db"))
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json={"messages": USER, "stream": True})
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "overloaded"


def test_session_routes(client):
    client.post("/chat/invoke", json={"input": {"messages": USER, "session_id": "lc-1"}})
    exported = client.get("/sessions/lc-1").json()
    assert exported["session_id"] == "lc-1" and exported["turns"] == 1
    assert client.delete("/sessions/lc-1").json() == {"session_id": "lc-1", "deleted_messages": 2}
    gone = client.get("/sessions/lc-1")
    assert gone.status_code == 404 and "lc-1" in gone.json()["detail"]
    assert client.get("/sessions/bad%20id").status_code == 422


def test_tgi_generate_and_stream(client):
    reply = client.post("/", json={"inputs": "The capital", "parameters": {"return_full_text": True}})
    assert reply.json() == [{"generated_text": "The capitalParis."}]
    data = [json.loads(d) for d in sse_data(client.post("/", json={"inputs": "x", "stream": True}).text)]
    assert "".join(d["token"]["text"] for d in data) == "Paris."
    assert [d["generated_text"] for d in data] == [None] * (len(data) - 1) + ["Paris."]
    assert data[-1]["details"]["finish_reason"] in {"eos_token", "length"}


TGI_BAD = [
    ({"inputs": ""}, 422),
    ({"parameters": {}}, 422),
    ({"inputs": "x", "parameters": {"top_k": 5}}, 422),
    ({"inputs": "x", "parameters": {"repetition_penalty": 1.2}}, 422),
    ({"inputs": "x", "parameters": {"best_of": 2}}, 422),
    ({"inputs": "x", "parameters": {"max_new_tokens": 0}}, 422),
    ({"inputs": "x", "parameters": {"max_new_tokens": 100000}}, 422),
]


@pytest.mark.parametrize(("body", "status"), TGI_BAD)
def test_bad_tgi_requests_get_tgi_error_bodies(client, body, status):
    response = client.post("/", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"] and response.json()["error_type"] == "validation"


def test_tgi_over_budget_is_413(tmp_path):
    with make_client(tmp_path, context_window=256) as client:
        response = client.post("/", json={"inputs": "word " * 2000, "stream": True})
    assert response.status_code == 413 and "shorten" in response.json()["error"]


@pytest.mark.parametrize(
    ("params", "knobs"),
    [
        ({}, {"temperature": 0.0}),
        ({"do_sample": True}, {"temperature": 1.0}),
        ({"temperature": 0.7}, {"temperature": 0.7}),
        ({"temperature": 1.0}, {"temperature": 0.0}),
        ({"typical_p": 0.95}, {"temperature": 1.0}),
        ({"top_p": 0.9, "temperature": 0.5}, {"temperature": 0.5, "top_p": 0.9}),
        ({"do_sample": False, "top_p": 0.5}, {"temperature": 1.0, "top_p": 0.5}),
        (
            {"max_new_tokens": 9, "stop": ["\n"], "seed": 3},
            {"temperature": 0.0, "max_new_tokens": 9, "stop": ["\n"], "seed": 3},
        ),
    ],
)
def test_tgi_sampling_follows_tgi(params, knobs):
    assert TgiParameters(**params).knobs() == knobs
