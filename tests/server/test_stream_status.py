"""LangServe streams on a real server: overload and queue timeout are HTTP 429/503, not a 200 stream."""

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from langserve import RemoteRunnable

from tests.conftest import hfchain_server, metric, wait_for

ESSAY = {"messages": [{"role": "user", "content": "Write a very long essay about the sea."}]}
SHORT = {"messages": [{"role": "user", "content": "Say hi."}]}


def idle(url: str) -> bool:
    """Wait until the engine runs and queues nothing (a stream closed before is cancelled by then)."""
    return wait_for(
        lambda: metric(url, "hfchain_batch_running") == 0 and metric(url, "hfchain_queue_depth") == 0
    )


def knobs(max_new_tokens: int) -> dict:
    return {"configurable": {"max_new_tokens": max_new_tokens, "temperature": 0}}


@pytest.fixture(scope="module")
def tight(embedded_backend):
    """One batch slot, a 1 s queue timeout, and room for one long generation's tokens only."""
    proc = hfchain_server(
        HFCHAIN_MAX_BATCH_SIZE="1", HFCHAIN_QUEUE_TIMEOUT="1", HFCHAIN_MAX_TOKENS_IN_FLIGHT="1500"
    ).wait("/ready")
    yield proc
    proc.stop()


@contextmanager
def busy(url: str) -> Iterator[None]:
    """A long /chat/stream that holds the only batch slot (and 1000+ tokens) while the block runs."""
    assert idle(url)
    body = {"input": ESSAY, "config": knobs(1000)}
    with (
        httpx.Client(base_url=url, timeout=60) as client,
        client.stream("POST", "/chat/stream", json=body) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: closing the iterator would close the connection
        while next(lines) != "event: data":
            pass  # the gate sends the first bytes with the first token: the job is generating
        yield


@pytest.mark.parametrize(
    "path", ["/chat/stream", "/chat/stream_log", "/chat/stream_events", "/generate/stream"]
)
def test_an_overloaded_langserve_stream_is_a_429_before_any_event(tight, path):
    body = {"input": {"prompt": "Write an essay."} if path.startswith("/generate") else ESSAY}
    with busy(tight.url):
        refused = httpx.post(f"{tight.url}{path}", json={**body, "config": knobs(1000)}, timeout=60)
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/json"
    error = refused.json()
    assert error["type"] == "overloaded" and error["retry_after"] == 1
    assert "tokens in flight (limit 1500)" in error["detail"] and error["request_id"]


@pytest.mark.parametrize("path", ["/generate/stream", "/chat/stream_log", "/chat/stream_events"])
def test_a_langserve_stream_that_waits_past_the_queue_timeout_is_a_503(tight, path):
    body = {"input": {"prompt": "Hi."} if path.startswith("/generate") else SHORT, "config": knobs(4)}
    with busy(tight.url):
        waiting = httpx.post(f"{tight.url}{path}", json=body, timeout=60)
    assert waiting.status_code == 503, waiting.text
    assert waiting.headers["retry-after"] == "5"
    error = waiting.json()
    assert error["type"] == "queue_timeout" and "HFCHAIN_QUEUE_TIMEOUT=1" in error["detail"]


def test_remote_runnable_stream_raises_http_status_error_for_429(tight):
    chat = RemoteRunnable(f"{tight.url}/chat/", timeout=60)
    with busy(tight.url), pytest.raises(httpx.HTTPStatusError) as raised:
        list(chat.stream(ESSAY, config=knobs(1000)))
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["retry-after"] == "1"


def test_a_stream_that_gets_its_turn_is_a_normal_event_stream(tight):
    chat = RemoteRunnable(f"{tight.url}/chat/", timeout=60)
    chunks = list(chat.stream(SHORT, config=knobs(8)))
    assert chunks and "".join(chunk.content for chunk in chunks).strip()


def test_a_client_that_leaves_a_held_stream_cancels_its_queued_job(tight):
    before = metric(tight.url, "hfchain_cancellations_total")
    body = {"input": SHORT, "config": knobs(4)}
    with busy(tight.url):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{tight.url}/chat/stream", json=body, timeout=0.3)  # leaves before any byte
        # while the busy stream still runs: the count is the queued job's
        wait_for(lambda: metric(tight.url, "hfchain_cancellations_total") != before, timeout=30)
        assert metric(tight.url, "hfchain_cancellations_total") == before + 1
    assert idle(tight.url)
