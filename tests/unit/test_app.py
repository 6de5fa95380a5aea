"""The app over fake models (in-process): routes, knobs, and 4xx for every kind of bad input."""

import pytest
from fastapi.testclient import TestClient

from chains.settings import load_settings
from server.app import create_app
from tests.unit.fakes import KnobFakeLLM, fake_backend


@pytest.fixture
def client():
    app = create_app(load_settings(max_new_tokens_limit=512), fake_backend(["Paris."]))
    with TestClient(app) as test_client:
        yield test_client


def test_health_ready_and_request_id(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["status"] == "ready"
    assert client.get("/health", headers={"x-request-id": "abc"}).headers["x-request-id"] == "abc"


def test_generate_and_chat_invoke(client):
    assert (
        client.post("/generate/invoke", json={"input": {"prompt": "Capital?"}}).json()["output"] == "Paris."
    )
    reply = client.post("/chat/invoke", json={"input": {"messages": [{"role": "user", "content": "x"}]}})
    assert reply.json()["output"]["type"] == "ai" and reply.json()["output"]["content"] == "Paris."


def test_config_schema_lists_the_knobs(client):
    schema = client.get("/generate/config_schema").json()
    assert set(schema["$defs"]["Configurable"]["properties"]) == {
        "max_new_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "speculation",
        "logprobs",
    }


BAD = [
    ("/generate/invoke", b"", 422),
    ("/generate/invoke", b"{not json", 400),
    ("/generate/invoke", b"[" * 100_000, 400),
    ("/generate/invoke", b'{"input": {"prompt": "x", "n": 20839275189991423936898053261230080}}', 400),
    ("/generate/invoke", b'{"input": {"prompt": "x", "n": ' + b"9" * 5000 + b"}}", 400),
    ("/generate/invoke", b'{"input": {"prompt": "\xff"}}', 400),
    ("/generate/invoke", b'{"input": {}}', 422),
    ("/generate/invoke", b'{"input": {"prompt": 5}}', 422),
    ("/generate/invoke", b'{"input": {"prompt": ""}}', 422),
    ("/generate/invoke", b'{"input": {"prompt": "x", "extra": 1}}', 422),
    ("/generate/invoke", b'{"config": {}}', 422),
    ("/generate/invoke", b"[1, 2]", 422),
    ("/generate/invoke", b'{"input": {"prompt": "x"}, "config": "abc"}', 422),
    (
        "/generate/invoke",
        b'{"input": {"prompt": "x"}, "config": {"configurable": {"temperature": "hot"}}}',
        422,
    ),
    ("/generate/invoke", b'{"input": {"prompt": "x"}, "config": {"configurable": {"temperature": 7}}}', 422),
    (
        "/generate/invoke",
        b'{"input": {"prompt": "x"}, "config": {"configurable": {"max_new_tokens": 513}}}',
        422,
    ),
    ("/generate/invoke", b'{"input": {"prompt": "x"}, "config": {"configurable": {"top_p": 0}}}', 422),
    ("/generate/stream", b'{"input": {"prompt": "x"}, "config": {"configurable": {"seed": -4}}}', 422),
    ("/generate/batch", b'{"inputs": "x"}', 422),
    ("/generate/batch", b'{"inputs": [{"prompt": 1}]}', 422),
    ("/generate/batch", b'{"inputs": [{"prompt": "x"}], "config": [null]}', 422),
    ("/chat/invoke", b'{"input": {"messages": []}}', 422),
    ("/chat/invoke", b'{"input": {"messages": [{"role": "wizard", "content": "x"}]}}', 422),
    ("/chat/stream", b'{"input": {"messages": "hi"}}', 422),
]


@pytest.mark.parametrize(("path", "body", "status"), BAD)
def test_bad_input_gets_a_4xx_with_a_message(client, path, body, status):
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_config_null_is_accepted(client):
    response = client.post("/generate/invoke", json={"input": {"prompt": "x"}, "config": None})
    assert response.status_code == 200 and response.json()["output"] == "Paris."


def test_oversized_body_gets_413(client):
    response = client.post("/generate/invoke", json={"input": {"prompt": "x" * 3_000_000}})
    assert response.status_code == 413 and "bytes" in response.json()["detail"]


def test_not_ready_gives_503_with_retry_after():
    app = create_app(load_settings(), fake_backend(ready=False))
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 503
        response = client.post("/generate/invoke", json={"input": {"prompt": "x"}})
        assert response.status_code == 503 and response.headers["retry-after"] == "2"
        assert "loading" in response.json()["detail"]


@pytest.fixture
def small_client():
    app = create_app(load_settings(), fake_backend(["ok"], context_window=256))
    with TestClient(app) as test_client:
        yield test_client


LONG = "word " * 2000


@pytest.mark.parametrize("path", ["/generate/invoke", "/generate/stream", "/generate/batch"])
def test_over_budget_prompt_gets_413_with_the_numbers(small_client, path):
    body = {"inputs": [{"prompt": LONG}]} if path.endswith("batch") else {"input": {"prompt": LONG}}
    body["config"] = {"configurable": {"max_new_tokens": 64}}
    response = small_client.post(path, json=body)
    assert response.status_code == 413, response.text
    detail = response.json()
    assert detail["context_window"] == 256 and detail["max_new_tokens"] == 64
    assert detail["budget"] == 256 - 64 - 16 and detail["prompt_tokens"] > detail["budget"]
    assert detail["counting"] == "estimate" and "/summarize" in detail["detail"]


@pytest.mark.parametrize("path", ["/chat/invoke", "/chat/stream"])
def test_over_budget_chat_message_gets_413(small_client, path):
    body = {"input": {"messages": [{"role": "user", "content": LONG}]}}
    response = small_client.post(path, json=body)
    assert response.status_code == 413 and response.json()["prompt_tokens"] > response.json()["budget"]


def test_long_history_is_trimmed_not_refused(small_client):
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x " * 40}
        for i in range(20)
    ]
    history.append({"role": "user", "content": "last question"})
    body = {"input": {"messages": history}, "config": {"configurable": {"max_new_tokens": 32}}}
    response = small_client.post("/chat/invoke", json=body)
    assert response.status_code == 200, response.text
    metadata = response.json()["output"]["response_metadata"]
    assert metadata["dropped_messages"] > 0 and metadata["token_counting"] == "estimate"


def test_batch_with_a_config_per_input_checks_each_input_with_its_own(small_client):
    body = {
        "inputs": [{"prompt": "word " * 30}, {"prompt": "hi"}],  # ~56 tokens: fits with 8, not with 200
        "config": [{"configurable": {"max_new_tokens": 8}}, {"configurable": {"max_new_tokens": 200}}],
    }
    assert small_client.post("/generate/batch", json=body).status_code == 200


@pytest.mark.parametrize(
    "message", [5, None, {"role": "tool", "content": "x"}, {"type": "ai", "content": "x", "tool_calls": 5}]
)
def test_odd_messages_get_422_not_500(client, message):
    for route in ("/chat/invoke", "/chat/stream"):
        response = client.post(route, json={"input": {"messages": [message]}})
        assert response.status_code == 422, response.text


class BrokenLLM(KnobFakeLLM):
    """A model that fails in an unexpected way."""

    def _call(self, *args, **kwargs):
        raise RuntimeError("boom")

    async def _acall(self, *args, **kwargs):
        raise RuntimeError("boom")


def test_unexpected_error_is_a_500_with_the_request_id():
    backend = fake_backend()
    backend.llm = BrokenLLM(responses=["x"])
    with TestClient(create_app(load_settings(), backend), raise_server_exceptions=False) as client:
        response = client.post(
            "/generate/invoke", json={"input": {"prompt": "x"}}, headers={"x-request-id": "r1"}
        )
    assert response.status_code == 500 and response.headers["x-request-id"] == "r1"
    body = response.json()
    assert body["request_id"] == "r1" and body["detail"].startswith("internal server error (request r1)")
