"""Serving controls over fake models: API keys, admission (429), limits, metrics, logs, CORS, playground."""

import asyncio
import base64
import json
import logging

import httpx
import pytest
from fastapi.testclient import TestClient
from langchain_core.language_models import FakeListChatModel

from chains.sessions import SessionStore
from chains.settings import load_settings
from server.app import create_app
from server.logs import JsonFormatter, RequestIdFilter
from tests.unit.fakes import KnobFakeChat, fake_backend

USER = [{"role": "user", "content": "hi"}]
PROTECTED = [
    ("POST", "/generate/invoke", {"input": {"prompt": "x"}}),
    ("POST", "/chat/stream", {"input": {"messages": USER}}),
    ("POST", "/v1/chat/completions", {"messages": USER}),
    ("GET", "/v1/models", None),
    ("POST", "/", {"inputs": "x"}),
    ("GET", "/sessions/abc", None),
    ("DELETE", "/sessions/abc", None),
    ("GET", "/metrics", None),
    ("GET", "/chat/playground/", None),
    ("GET", "/generate/config_schema", None),
]


def app_for(tmp_path, backend=None, **settings):
    sessions = SessionStore(f"sqlite:///{tmp_path}/sessions.db")
    return create_app(load_settings(**settings), backend or fake_backend(["ok"]), sessions)


@pytest.fixture
def keyed(tmp_path):
    with TestClient(app_for(tmp_path, api_keys="key-one,key-two")) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_route_needs_a_key(keyed, method, path, body):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Token key-one"}):
        response = keyed.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert "Bearer" in response.headers["www-authenticate"] and "API key" in response.text
    response = keyed.request(method, path, json=body, headers={"authorization": "Bearer key-two"})
    assert response.status_code not in (401, 403), response.text


def test_health_and_ready_stay_open_and_errors_use_each_protocol(keyed):
    assert keyed.get("/health").status_code == 200 and keyed.get("/ready").status_code == 200
    v1 = keyed.post("/v1/chat/completions", json={"messages": USER}).json()
    assert v1["error"]["type"] == "authentication_error"
    assert keyed.post("/", json={"inputs": "x"}).json()["error_type"]


def test_basic_auth_with_the_key_as_password_works_for_browsers(keyed):
    token = base64.b64encode(b"anyone:key-one").decode()
    assert keyed.get("/chat/playground/", headers={"authorization": f"Basic {token}"}).status_code == 200


def test_keys_file(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nfile-key\n\n")
    with TestClient(app_for(tmp_path, api_keys_file=keys)) as client:
        assert client.get("/v1/models", headers={"authorization": "Bearer file-key"}).status_code == 200
        assert client.get("/v1/models").status_code == 401


class SlowChat(KnobFakeChat):
    """A chat model that takes a while, so that requests overlap."""

    async def _agenerate(self, *args, **kwargs):
        await asyncio.sleep(0.5)
        return await FakeListChatModel._agenerate(self, *args, **kwargs)


def test_requests_beyond_the_limit_get_429_at_once(tmp_path):
    backend = fake_backend(["ok"])
    backend.chat_model = SlowChat(responses=["ok"])
    app = app_for(tmp_path, backend, max_concurrent_requests=2)

    async def run() -> list[tuple[int, float, dict]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def one():
                started = asyncio.get_running_loop().time()
                response = await client.post("/v1/chat/completions", json={"messages": USER})
                return response.status_code, asyncio.get_running_loop().time() - started, response

            return await asyncio.gather(*[one() for _ in range(6)])

    with TestClient(app):  # runs the lifespan
        results = asyncio.run(run())
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 429, 429, 429, 429]
    for status, seconds, response in results:
        if status == 429:
            assert seconds < 0.4 and response.headers["retry-after"] == "1"
            assert "HFCHAIN_MAX_CONCURRENT_REQUESTS" in response.json()["error"]["message"]


def test_max_input_tokens_gives_413_naming_the_setting(tmp_path):
    from chains.backends import build_backend

    local = build_backend(load_settings(backend="local", max_input_tokens=50))
    assert local.engine.max_input_tokens == 50  # the real backend takes the setting
    with TestClient(app_for(tmp_path, fake_backend(["ok"], max_input=50))) as client:
        response = client.post("/generate/invoke", json={"input": {"prompt": "word " * 200}})
        assert response.status_code == 413 and "HFCHAIN_MAX_INPUT_TOKENS=50" in response.json()["detail"]
        assert client.post("/generate/invoke", json={"input": {"prompt": "short"}}).status_code == 200


def test_body_size_is_a_setting(tmp_path):
    with TestClient(app_for(tmp_path, max_body_bytes=2048)) as client:
        response = client.post("/generate/invoke", json={"input": {"prompt": "x" * 4000}})
        assert response.status_code == 413 and "2048 bytes" in response.json()["detail"]


def test_metrics_count_requests_by_route_and_status(tmp_path):
    with TestClient(app_for(tmp_path)) as client:
        client.post("/generate/invoke", json={"input": {"prompt": "x"}})
        client.post("/generate/invoke", json={"input": {}})
        text = client.get("/metrics").text
    assert 'hfchain_requests_total{method="POST",route="/generate/invoke",status="200"} 1.0' in text
    assert 'hfchain_requests_total{method="POST",route="/generate/invoke",status="422"} 1.0' in text
    for name in (
        "hfchain_request_duration_seconds_bucket",
        "hfchain_queue_depth",
        "hfchain_requests_in_flight",
        "hfchain_time_to_first_token_seconds",
        "hfchain_batch_size",
        "hfchain_rejected_total",
        "hfchain_cancellations_total",
        "hfchain_tokens_total",
    ):
        assert name in text, name


def test_made_up_http_methods_share_one_metrics_series(tmp_path):
    with TestClient(app_for(tmp_path)) as client:
        for method in ("XYZZY1", "XYZZY2", "X" * 200):
            client.request(method, "/health")
        text = client.get("/metrics").text
    assert "XYZZY" not in text and "X" * 200 not in text
    assert 'hfchain_requests_total{method="other",route="/health",status="405"} 3.0' in text


def test_cors_origins_and_preflight(tmp_path):
    with TestClient(app_for(tmp_path, cors_origins="https://app.example", api_keys="k")) as client:
        preflight = client.options(
            "/v1/chat/completions",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        other = client.get("/health", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_playground_can_be_disabled(tmp_path):
    with TestClient(app_for(tmp_path, playground=False)) as client:
        assert client.get("/chat/playground/").status_code == 404
        assert client.post("/chat/invoke", json={"input": {"messages": USER}}).status_code == 200


def test_json_log_lines_carry_the_request_id():
    record = logging.LogRecord("hfchain.access", logging.INFO, __file__, 1, "POST %s", ("/x",), None)
    record.status = 200
    RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "POST /x" and line["status"] == 200 and "request_id" in line
