"""LangServe streams answer 429/503 before any event when the model refuses or times out (StreamGate)."""

import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from langchain_core.language_models import FakeListChatModel

from chains.errors import Overloaded, QueueTimeout
from chains.sessions import SessionStore
from chains.settings import load_settings
from server.app import create_app
from server.stream_gate import StreamGate, sse_events
from tests.unit.fakes import KnobFakeChat, KnobFakeLLM, fake_backend

CHAT = {"input": {"messages": [{"role": "user", "content": "hi"}]}}
GENERATE = {"input": {"prompt": "hi"}}
ENGINE_MESSAGE = (
    "the server holds 900 tokens in flight (limit 1000); retry shortly or ask for fewer max_new_tokens"
)
ENDPOINTS = ["stream", "stream_log", "stream_events"]


class RefusingChat(KnobFakeChat):
    """A chat model that raises Overloaded after `after` chunks, as the engine does at submit."""

    after: int = 0

    async def _astream(self, *args, **kwargs):
        sent = 0
        async for chunk in FakeListChatModel._astream(self, *args, **kwargs):
            if sent >= self.after:
                raise Overloaded(ENGINE_MESSAGE, retry_after=1)
            sent += 1
            yield chunk


class TimedOutLLM(KnobFakeLLM):
    """An LLM whose request waited past the queue timeout before its first token."""

    async def astream(self, *args, **kwargs):
        raise QueueTimeout("waited 2 s for the model (HFCHAIN_QUEUE_TIMEOUT=1); retry later", retry_after=5)
        yield ""


def client_for(tmp_path, backend) -> TestClient:
    sessions = SessionStore(f"sqlite:///{tmp_path}/sessions.db")
    return TestClient(create_app(load_settings(), backend, sessions), raise_server_exceptions=False)


def refusing(after: int):
    backend = fake_backend(["hello there"])
    backend.chat_model = RefusingChat(responses=["hello there"], after=after)
    return backend


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_overloaded_before_the_first_chunk_is_a_429_with_retry_after(tmp_path, endpoint):
    with client_for(tmp_path, refusing(0)) as client:
        for path in (f"/chat/{endpoint}", f"/chat/c/N4XyA/{endpoint}"):
            response = client.post(path, json=CHAT, headers={"x-request-id": "r-1"})
            assert response.status_code == 429, (path, response.text)
            assert response.headers["retry-after"] == "1"
            assert response.headers["content-type"] == "application/json"
            assert response.headers["x-request-id"] == "r-1"
            body = response.json()
            assert body == {
                "detail": ENGINE_MESSAGE,
                "type": "overloaded",
                "retry_after": 1,
                "request_id": "r-1",
            }
            assert "event:" not in response.text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_queue_timeout_before_the_first_token_is_a_503(tmp_path, endpoint):
    backend = fake_backend()
    backend.llm = TimedOutLLM(responses=["x"])
    with client_for(tmp_path, backend) as client:
        response = client.post(f"/generate/{endpoint}", json=GENERATE)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["type"] == "queue_timeout"
    assert "HFCHAIN_QUEUE_TIMEOUT" in response.json()["detail"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_overloaded_after_the_first_chunk_stays_an_error_event(tmp_path, endpoint):
    with client_for(tmp_path, refusing(1)) as client:
        response = client.post(f"/chat/{endpoint}", json=CHAT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    assert ("error", json.dumps({"status_code": 500, "message": "Internal Server Error"})) in events
    assert any(name == "data" for name, _ in events)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_normal_stream_is_untouched(tmp_path, endpoint):
    with client_for(tmp_path, fake_backend(["hello there"])) as client:
        response = client.post(f"/chat/{endpoint}", json=CHAT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in sse_events(response.content)]
    assert names[-1] == "end" and "error" not in names
    if endpoint == "stream":
        assert names[0] == "metadata"
        text = "".join(
            json.loads(data)["content"] for name, data in sse_events(response.content) if name == "data"
        )
        assert text == "hello there"


def test_errors_before_a_stream_keep_their_own_status(tmp_path):
    with client_for(tmp_path, fake_backend()) as client:
        bad_knob = client.post("/chat/stream", json={**CHAT, "config": {"configurable": {"temperature": -1}}})
        missing = client.post("/chat/stream", json={"input": {}})
    assert bad_knob.status_code == 422 and missing.status_code == 422


# --- the gate on its own, over a tiny ASGI app --------------------------------------------------------

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
PING = b": ping - 2024-01-01 00:00:00\r\n\r\n"
DATA = b"event: data\r\ndata: {}\r\n\r\n"
ERROR = b'event: error\r\ndata: {"status_code": 500, "message": "Internal Server Error"}\r\n\r\n'
SCOPE = {"type": "http", "method": "POST", "path": "/chat/stream", "headers": [], "query_string": b""}


def body(chunk: bytes, more: bool = True) -> dict:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


async def receive() -> dict:
    await asyncio.Event().wait()  # the client never leaves
    return {"type": "http.disconnect"}


def gated(script, scope=SCOPE) -> tuple[list[dict], BaseException | None]:
    """Run `script(send, sent)` behind the gate; what reached the client, and what was raised."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def app(_scope, _receive, app_send):
        await script(app_send, sent)

    async def run() -> BaseException | None:
        try:
            await StreamGate(app)(scope, receive, send)
        except BaseException as error:  # the test inspects it
            return error
        return None

    return sent, asyncio.run(run())


def test_pings_are_held_and_the_first_event_releases_them():
    seen = {}

    async def script(send, sent):
        await send(START)
        await send(body(PING))
        seen["after ping"] = list(sent)
        await send(body(DATA))
        seen["after data"] = list(sent)
        await send(body(b"event: end\r\n\r\n"))
        await send(body(b"", more=False))

    sent, error = gated(script)
    assert error is None and seen["after ping"] == []
    assert seen["after data"] == [START, body(PING), body(DATA)]  # released at once, not at the end
    assert len(sent) == 5


def test_an_error_after_only_pings_swallows_them_and_the_error_event():
    async def script(send, _sent):
        await send(START)
        await send(body(PING))
        await send(body(ERROR))
        raise ExceptionGroup("task group", [Overloaded(ENGINE_MESSAGE, retry_after=1)])

    sent, error = gated(script)
    assert error is None and sent[0]["status"] == 429
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["detail"] == ENGINE_MESSAGE


def test_an_unexpected_error_before_release_sends_nothing_and_propagates():
    async def script(send, _sent):
        await send(START)
        await send(body(ERROR))
        raise ExceptionGroup("task group", [RuntimeError("boom")])

    sent, error = gated(script)
    assert sent == [] and isinstance(error, ExceptionGroup)  # RequestGuard turns it into its 500


def test_an_error_after_release_propagates_as_today():
    async def script(send, _sent):
        await send(START)
        await send(body(DATA))
        await send(body(ERROR))
        raise Overloaded(ENGINE_MESSAGE)

    sent, error = gated(script)
    assert isinstance(error, Overloaded) and sent == [START, body(DATA), body(ERROR)]


def test_cancellation_while_held_propagates():
    async def script(send, _sent):
        await send(START)
        raise asyncio.CancelledError  # what RequestGuard does when the client disconnects

    sent, error = gated(script)
    assert sent == [] and isinstance(error, asyncio.CancelledError)


def test_stream_log_and_stream_events_wait_for_the_model():
    log = {**SCOPE, "path": "/chat/stream_log"}
    events = {**SCOPE, "path": "/chat/stream_events"}
    before = [
        (log, {"ops": [{"op": "replace", "path": "", "value": {}}]}),
        (log, {"ops": [{"op": "add", "path": "/logs/messages/streamed_output/-", "value": []}]}),
        (events, {"event": "on_chain_start", "parent_ids": []}),
        (events, {"event": "on_chain_stream", "parent_ids": ["root"]}),
        (events, {"event": "on_chat_model_start", "parent_ids": ["root"]}),
    ]
    for scope, item in before:

        async def script(send, _sent, item=item):
            await send(START)
            await send(body(b"event: data\r\ndata: " + json.dumps(item).encode() + b"\r\n\r\n"))
            raise Overloaded(ENGINE_MESSAGE, retry_after=1)

        sent, error = gated(script, scope)
        assert error is None and sent[0]["status"] == 429, item


def test_other_routes_pass_through():
    async def script(send, sent):
        await send(START)
        assert sent == [START]
        await send(body(b"", more=False))

    for scope in ({**SCOPE, "path": "/chat/invoke"}, {**SCOPE, "method": "GET"}):
        sent, error = gated(script, scope)
        assert error is None and len(sent) == 2
