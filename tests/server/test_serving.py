"""Serving under load on a real server: batching, 429s, cancellation, API keys, and a short soak."""

import queue
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from langchain_huggingface import HuggingFaceEndpoint
from langserve import RemoteRunnable

from tests.conftest import hfchain_server, metric, wait_for

LONG = {"messages": [{"role": "user", "content": "Write a very long essay about the sea."}]}
OUT = 'hfchain_tokens_total{direction="out"}'  # tokens the server generated


@pytest.fixture(scope="module")
def small(embedded_backend):
    """A server that admits 3 requests at once, so that overload is cheap to reach."""
    proc = hfchain_server(HFCHAIN_MAX_CONCURRENT_REQUESTS="3", HFCHAIN_MAX_NEW_TOKENS="32").wait("/ready")
    yield proc
    proc.stop()


def test_concurrent_requests_share_batches(small):
    def shared_steps() -> float:  # decoding steps that ran more than one request
        single = metric(small.url, 'hfchain_batch_size_bucket{le="1.0"}')
        return metric(small.url, "hfchain_batch_size_count") - single

    before = shared_steps()
    body = {"messages": LONG["messages"], "max_tokens": 24}
    with ThreadPoolExecutor(3) as pool:
        replies = list(
            pool.map(
                lambda _: httpx.post(f"{small.url}/v1/chat/completions", json=body, timeout=120), range(3)
            )
        )
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert shared_steps() - before >= 10  # the three overlapping requests decoded together


def test_overload_gets_429_before_admission_and_the_rest_succeed(small):
    rejected = 'hfchain_rejected_total{reason="concurrent_requests"}'
    refused_before, generated = metric(small.url, rejected), metric(small.url, OUT)
    body = {"messages": LONG["messages"], "max_tokens": 32}
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: httpx.post(f"{small.url}/v1/chat/completions", json=body, timeout=120), range(8)
            )
        )
    refused = [r for r in results if r.status_code == 429]
    served = [r for r in results if r.status_code == 200]
    assert len(refused) >= 1 and len(served) >= 3 and len(refused) + len(served) == 8
    for response in refused:  # refused at the door (admission), not after waiting for the model
        assert response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["type"] == "overloaded" and "HFCHAIN_MAX_CONCURRENT_REQUESTS" in error["message"]
    assert metric(small.url, rejected) - refused_before == len(refused)
    # the model generated exactly the served replies' tokens: none for a refused request
    assert metric(small.url, OUT) - generated == sum(r.json()["usage"]["completion_tokens"] for r in served)


def test_a_dropped_stream_frees_its_slot(small):
    cancelled, generated = metric(small.url, "hfchain_cancellations_total"), metric(small.url, OUT)
    body = {**LONG, "max_tokens": 2000, "stream": True}
    with (
        httpx.Client(base_url=small.url, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        for i, _ in enumerate(response.iter_lines()):
            if i > 6:
                break  # leave mid-stream: the connection closes with the block
    assert wait_for(lambda: metric(small.url, "hfchain_cancellations_total") == cancelled + 1)
    assert wait_for(lambda: metric(small.url, "hfchain_batch_running") == 0)
    assert wait_for(lambda: metric(small.url, "hfchain_requests_in_flight") == 0)
    dropped = metric(small.url, OUT) - generated  # what the dropped stream generated before it stopped
    assert 1 <= dropped < 1000  # far short of its 2000 tokens
    quick = {"messages": LONG["messages"], "max_tokens": 2}
    reply = httpx.post(f"{small.url}/v1/chat/completions", json=quick, timeout=60)
    assert reply.status_code == 200
    assert metric(small.url, OUT) - generated - dropped == reply.json()["usage"]["completion_tokens"] <= 2


def test_a_client_that_gives_up_on_a_plain_request_cancels_it(small):
    cancelled = metric(small.url, "hfchain_cancellations_total")
    body = {
        "input": {"prompt": "A very long essay about the sea:"},
        "config": {"configurable": {"max_new_tokens": 2000}},
    }
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{small.url}/generate/invoke", json=body, timeout=2)
    assert wait_for(lambda: metric(small.url, "hfchain_cancellations_total") > cancelled)
    assert wait_for(lambda: metric(small.url, "hfchain_requests_in_flight") == 0)


@pytest.fixture(scope="module")
def keyed(embedded_backend):
    proc = hfchain_server(HFCHAIN_API_KEYS="secret-1,secret-2", HFCHAIN_MAX_NEW_TOKENS="8").wait("/ready")
    yield proc
    proc.stop()


def test_keys_protect_every_route_for_real_clients(keyed):
    assert httpx.get(f"{keyed.url}/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0).models.list()
    ok = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="secret-2", max_retries=0)
    assert ok.chat.completions.create(model="m", messages=LONG["messages"], max_tokens=2).choices
    with pytest.raises(httpx.HTTPStatusError) as refused:
        RemoteRunnable(f"{keyed.url}/chat/").invoke(LONG)
    assert refused.value.response.status_code == 401
    chat = RemoteRunnable(f"{keyed.url}/chat/", headers={"Authorization": "Bearer secret-1"})
    assert chat.invoke(LONG).content
    for path in ("/sessions/x", "/metrics", "/generate/playground/"):
        assert httpx.get(f"{keyed.url}{path}").status_code == 401
    auth = {"headers": {"Authorization": "Bearer secret-1"}}  # the HF token is never sent to other hosts
    llm = HuggingFaceEndpoint(
        endpoint_url=keyed.url,
        server_kwargs=auth,
        max_new_tokens=4,
        temperature=None,
        top_p=None,
        typical_p=None,
    )
    assert llm.invoke("The capital of France is")


def test_an_hfchain_endpoint_backend_reaches_a_keyed_hfchain(keyed):
    env = {"HFCHAIN_BACKEND": "endpoint", "HFCHAIN_ENDPOINT_URL": keyed.url}
    for key, status in (("secret-2", 200), ("wrong", 502)):
        proc = hfchain_server(**env, HFCHAIN_ENDPOINT_API_KEY=key).wait("/ready")
        try:
            body = {"input": LONG, "config": {"configurable": {"max_new_tokens": 4}}}
            response = httpx.post(f"{proc.url}/chat/invoke", json=body, timeout=60)
            assert response.status_code == status, response.text
        finally:
            proc.stop()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


SOAK_ROUTES = [
    ("/v1/chat/completions", {"messages": LONG["messages"], "max_tokens": 16, "stream": True}),
    ("/v1/chat/completions", {"messages": LONG["messages"], "max_tokens": 16}),
    ("/generate/stream", {"input": {"prompt": "Once upon a time"}}),
    ("/generate/invoke", {"input": {"prompt": "The sea is"}}),
    ("/chat/stream", {"input": LONG}),
    ("/", {"inputs": "The capital of France is", "parameters": {"max_new_tokens": 8}}),
]


def test_short_soak_with_mixed_routes_and_early_disconnects(embedded_backend):
    """A fixed plan of 54 mixed requests from 6 clients, ~30% of them leaving early: only 200s and 429s."""
    rng = random.Random(0)  # the plan is the same on every run: (route, body, leave_early)
    plan = [(*rng.choice(SOAK_ROUTES), rng.random() < 0.3) for _ in range(54)]
    planned_leavers = sum(leave for *_, leave in plan)
    assert 5 < planned_leavers < len(plan) - 20 and {p for p, *_ in plan} == {p for p, _ in SOAK_ROUTES}
    outcomes: dict[int, int | str] = {}  # plan index -> status, or "left" for a client that left early
    proc = hfchain_server(HFCHAIN_MAX_CONCURRENT_REQUESTS="4", HFCHAIN_MAX_NEW_TOKENS="16").wait("/ready")
    try:

        def one(client: httpx.Client, path: str, body: dict, leave_early: bool) -> int | str:
            try:
                with client.stream("POST", path, json=body, timeout=0.3 if leave_early else 60) as response:
                    assert response.status_code in {200, 429}, (path, response.status_code)
                    for _ in response.iter_bytes():
                        if leave_early:
                            break  # a client that leaves after the first bytes
                    return "left" if leave_early else response.status_code
            except httpx.TimeoutException:
                assert leave_early, path  # a client that gives up before any reply
                return "left"

        with httpx.Client(base_url=proc.url) as warm:
            for path, body in SOAK_ROUTES:  # every route once, so that its first-use memory is counted
                assert one(warm, path, body, False) == 200, path
        start_rss = rss_mb(proc.proc.pid)
        work: queue.SimpleQueue = queue.SimpleQueue()
        for item in enumerate(plan):
            work.put(item)

        def worker(_):
            with httpx.Client(base_url=proc.url) as client:
                while True:
                    try:
                        i, (path, body, leave_early) = work.get_nowait()
                    except queue.Empty:
                        return
                    outcomes[i] = one(client, path, body, leave_early)

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(worker, range(6)))
        assert sorted(outcomes) == list(range(len(plan)))  # every planned request is accounted for
        statuses = [o for o in outcomes.values() if o != "left"]
        assert set(statuses) <= {200, 429}, sorted(set(statuses))
        assert statuses.count(200) >= 1
        assert list(outcomes.values()).count("left") == planned_leavers
        assert wait_for(lambda: metric(proc.url, "hfchain_queue_depth") == 0)
        assert wait_for(lambda: metric(proc.url, "hfchain_batch_running") == 0)
        assert wait_for(lambda: metric(proc.url, "hfchain_requests_in_flight") == 0)
        assert rss_mb(proc.proc.pid) - start_rss < 200, (start_rss, rss_mb(proc.proc.pid))
        assert "Traceback" not in proc.log.read_text()
    finally:
        proc.stop()


def test_a_request_that_waits_past_the_queue_timeout_gets_503(embedded_backend):
    proc = hfchain_server(HFCHAIN_MAX_BATCH_SIZE="1", HFCHAIN_QUEUE_TIMEOUT="1").wait("/ready")
    try:
        long = {**LONG, "max_tokens": 2000, "stream": True}  # far longer than the queue timeout
        with (
            httpx.Client(base_url=proc.url, timeout=60) as client,
            client.stream("POST", "/v1/chat/completions", json=long) as busy,
        ):
            lines = busy.iter_lines()  # kept: closing the iterator would close the connection
            while '"content": "' not in (line := next(lines)) or '"content": ""' in line:
                pass  # until it generates: the only batch slot is taken
            body = {**LONG, "max_tokens": 4}  # from another client: this one's connection stays busy
            waiting = httpx.post(f"{proc.url}/v1/chat/completions", json=body, timeout=60)
            # answered while the busy one still holds the slot: it did not wait for it to finish
            assert metric(proc.url, "hfchain_batch_running") == 1
            assert metric(proc.url, "hfchain_queue_depth") == 0  # and it left the queue
        assert waiting.status_code == 503 and waiting.headers["retry-after"]  # a 200 would have waited
        assert "HFCHAIN_QUEUE_TIMEOUT" in waiting.json()["error"]["message"]
    finally:
        proc.stop()
