"""Two hfchain replicas on one real PostgreSQL: a session's turns go to either; none is lost or doubled."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.conftest import free_port, hfchain_server, metric, wait_for
from tests.postgres import running


@pytest.fixture(scope="module")
def database():
    """A PostgreSQL server of this module's own (a test stops and restarts it)."""
    with running(free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(database, embedded_backend):
    """Replicas a and b, started at the same time on the empty database (schema creation must not race)."""
    url, started = database.new_database(), []
    try:
        for name in ("a", "b"):
            env = {"HFCHAIN_SESSIONS_URL": url, "HFCHAIN_REPLICA_ID": name, "HFCHAIN_MAX_NEW_TOKENS": "8"}
            started.append(hfchain_server(**env))
        for replica in started:
            replica.wait("/ready")
        yield started
    finally:
        for replica in started:
            replica.stop()


def client(replica) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{replica.url}/v1", api_key="unused", max_retries=0, timeout=120)


def turn(replica, content: str, session: str | None) -> str:
    """One /v1 turn through the openai client, in `session` when given."""
    headers = {"x-session-id": session} if session else None
    reply = client(replica).chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}], max_tokens=4, extra_headers=headers
    )
    return reply.choices[0].message.content


def stored(replica, session: str) -> dict:
    return httpx.get(f"{replica.url}/sessions/{session}", timeout=30).json()


def test_alternating_turns_build_one_history_seen_by_both(replicas):
    session = f"alt-{uuid.uuid4().hex}"
    for i in range(6):
        turn(replicas[i % 2], f"turn {i}", session)
    for replica in replicas:
        exported = stored(replica, session)
        assert exported["turns"] == 6
        assert [m["content"] for m in exported["messages"][::2]] == [f"turn {i}" for i in range(6)]
        assert [m["role"] for m in exported["messages"]] == ["user", "assistant"] * 6


def test_concurrent_turns_over_both_replicas_are_each_stored_once(replicas):
    session = f"busy-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda i: turn(replicas[i % 2], f"question {i}", session), range(10)))
    messages = stored(replicas[0], session)["messages"]
    assert len(messages) == 20 and [m["role"] for m in messages] == ["user", "assistant"] * 10
    assert sorted(m["content"] for m in messages[::2]) == sorted(f"question {i}" for i in range(10))


def test_each_replica_names_itself_in_its_logs_and_metrics(replicas):
    for replica, name in zip(replicas, ("a", "b"), strict=True):
        runtime = httpx.get(f"{replica.url}/ready").json()["runtime"]  # auto: onnx-fp32 here
        assert runtime in ("torch", "onnx-fp32")
        info = f'hfchain_replica_info{{model="SmolLM2-135M-Instruct",replica="{name}",runtime="{runtime}"}}'
        assert metric(replica.url, info) == 1
        request_id = uuid.uuid4().hex
        httpx.get(f"{replica.url}/health", headers={"x-request-id": request_id})
        line, log = f"[{name} {request_id}]", replica.log
        assert wait_for(lambda: line in log.read_text())  # noqa: B023 - logged just after the reply


def test_the_database_going_away_fails_session_turns_only_and_they_recover(replicas, database):
    session = f"outage-{uuid.uuid4().hex}"
    turn(replicas[1], "before", session)
    database.stop()
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": "during"}], "max_tokens": 4}
        refused = httpx.post(
            f"{replicas[1].url}/v1/chat/completions", json=body, headers={"x-session-id": session}, timeout=60
        )
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "sessions database postgresql+psycopg://" in refused.json()["error"]["message"]
        assert turn(replicas[0], "no session", None)  # chat without a session is unaffected
    finally:
        database.start()
    turn(replicas[1], "after", session)  # no restart: the pools reconnect
    assert [m["content"] for m in stored(replicas[0], session)["messages"][::2]] == ["before", "after"]


def test_an_agent_thread_paused_on_one_replica_is_resumed_on_the_other(replicas):
    from langgraph_sdk import get_sync_client

    first, second = (get_sync_client(url=r.url, api_key=None) for r in replicas)
    thread_id = first.threads.create()["thread_id"]
    ask = {"messages": [{"role": "user", "content": "What is 12 times 7?"}]}
    tools = [t["name"] for t in httpx.get(f"{replicas[0].url}/agent/tools").json()["tools"]]
    calls = {"tool_choice": "required", "max_steps": 2, "max_new_tokens": 40, "require_approval": tools}
    paused = first.runs.wait(thread_id, "agent", input=ask, config={"configurable": calls})
    assert paused["__interrupt__"]  # whichever tool it called waits for approval
    assert second.threads.get(thread_id)["status"] == "interrupted"
    done = second.runs.wait(thread_id, "agent", command={"resume": {"decisions": [{"type": "approve"}]}})
    assert [m["type"] for m in done["messages"]] == ["human", "ai", "tool", "ai"]
    more = {"messages": [{"role": "user", "content": "Thanks."}]}
    again = first.runs.wait(thread_id, "agent", input=more, config={"configurable": {"max_steps": 1}})
    assert len(again["messages"]) == 6  # the first replica reads what the second added


def test_a_replica_killed_mid_stream_loses_no_stored_turn(replicas):  # last: replica a stays dead
    session = f"killed-{uuid.uuid4().hex}"
    turn(replicas[0], "kept", session)
    body = {"model": "m", "messages": [{"role": "user", "content": "Write a long story."}], "stream": True}
    body["max_tokens"] = 400
    headers = {"x-session-id": session}
    with httpx.stream(
        "POST", f"{replicas[0].url}/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        lines = response.iter_lines()
        while not next(lines).startswith("data: "):
            pass  # the reply is streaming: the turn is in flight on replica a
        replicas[0].proc.kill()
        replicas[0].proc.wait()
    exported = stored(replicas[1], session)
    assert exported["turns"] == 1 and exported["messages"][0]["content"] == "kept"  # abandoned: not stored
    turn(replicas[1], "on b", session)  # the other replica keeps answering the session
    assert [m["content"] for m in stored(replicas[1], session)["messages"][::2]] == ["kept", "on b"]
