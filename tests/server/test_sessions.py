"""Server-side sessions on a real server: memory across turns, restarts, and concurrent turns."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from langserve import RemoteRunnable

from tests.conftest import hfchain_server

FACT, QUESTION = "The secret word is banana.", "What is the secret word?"


def ask(client: openai.OpenAI, content: str, session: str | None = None, **kwargs) -> str:
    headers = {"x-session-id": session} if session else None
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}], extra_headers=headers, **kwargs
    )
    return reply.choices[0].message.content


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_a_later_turn_uses_an_earlier_one(client):
    session = uuid.uuid4().hex
    ask(client, FACT, session)
    assert "banana" in ask(client, QUESTION, session).lower()
    assert "banana" not in ask(client, QUESTION).lower()  # the same question without the session


def test_chat_route_sessions_through_remote_runnable(server):
    chat = RemoteRunnable(f"{server.url}/chat/")
    session = f"lc-{uuid.uuid4().hex}"
    chat.invoke({"messages": [{"role": "user", "content": FACT}], "session_id": session})
    reply = chat.invoke({"messages": [{"role": "user", "content": QUESTION}], "session_id": session})
    assert "banana" in reply.content.lower() and reply.response_metadata["session_id"] == session
    exported = httpx.get(f"{server.url}/sessions/{session}").json()
    assert exported["turns"] == 2 and [m["role"] for m in exported["messages"]] == ["user", "assistant"] * 2
    assert httpx.delete(f"{server.url}/sessions/{session}").json()["deleted_messages"] == 4
    assert httpx.get(f"{server.url}/sessions/{session}").status_code == 404


def test_the_openai_route_and_the_chat_route_share_sessions(server, client):
    session = f"shared-{uuid.uuid4().hex}"
    ask(client, FACT, session)
    chat = RemoteRunnable(f"{server.url}/chat/")
    reply = chat.invoke({"messages": [{"role": "user", "content": QUESTION}], "session_id": session})
    assert "banana" in reply.content.lower()


def test_twenty_concurrent_turns_on_one_session_keep_every_message(server, client):
    session = f"busy-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda i: ask(client, f"question {i}", session, max_tokens=4), range(20)))
    messages = httpx.get(f"{server.url}/sessions/{session}").json()["messages"]
    assert len(messages) == 40
    assert [m["role"] for m in messages] == ["user", "assistant"] * 20
    assert sorted(m["content"] for m in messages[::2]) == sorted(f"question {i}" for i in range(20))


def test_sessions_survive_a_restart(tmp_path, embedded_backend):
    env = {"HFCHAIN_SESSIONS_URL": f"sqlite:///{tmp_path}/sessions.db", "HFCHAIN_MAX_NEW_TOKENS": "24"}
    session = "restart-1"
    first = hfchain_server(**env).wait("/ready")
    try:
        ask(openai.OpenAI(base_url=f"{first.url}/v1", api_key="x", max_retries=0), FACT, session)
        before = httpx.get(f"{first.url}/sessions/{session}").json()
    finally:
        first.stop()
    second = hfchain_server(**env).wait("/ready")
    try:
        assert httpx.get(f"{second.url}/sessions/{session}").json()["messages"] == before["messages"]
        client = openai.OpenAI(base_url=f"{second.url}/v1", api_key="x", max_retries=0, timeout=120)
        assert "banana" in ask(client, QUESTION, session).lower()
    finally:
        second.stop()
