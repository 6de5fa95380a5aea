"""Two tenants on one real server (SQLite), keys made by the CLI: each tenant's sessions and classifiers
are its own over every route and client; scopes give 403; a quota gives 429 through the openai client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from langserve import RemoteRunnable

from tests.conftest import hfchain_server, wait_for
from tests.server.test_train_http import rows

HFCHAIN = str(Path(sys.executable).parent / "hfchain")
FACT = "My secret word is PELICAN."


def make_key(data: Path, name: str, *options: str) -> str:
    """`KEY=$(hfchain keys create NAME ...)`: the key alone on stdout."""
    env = {**os.environ, "HFCHAIN_DATA_DIR": str(data)}
    done = subprocess.run(
        [HFCHAIN, "keys", "create", name, *options], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "not shown again" in done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, embedded_backend):
    """A server with keys alice and bob (user), reader (inference) and carol (2 requests a minute)."""
    data = tmp_path_factory.mktemp("tenants")
    keys = {
        "alice": make_key(data, "alice"),
        "bob": make_key(data, "bob"),
        "reader": make_key(data, "reader", "--scope", "inference"),
        "carol": make_key(data, "carol", "--requests-per-minute", "2"),
    }
    env = {"HFCHAIN_DATA_DIR": str(data), "HFCHAIN_MAX_NEW_TOKENS": "8", "HFCHAIN_TRAIN_MAX_ROWS": "100"}
    proc = hfchain_server(**env)
    try:
        proc.wait("/ready")
        yield proc, keys
    finally:
        proc.stop()


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def chat(server, key: str) -> RemoteRunnable:
    return RemoteRunnable(f"{server.url}/chat/", headers=auth(key))


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)


def test_a_conversation_is_its_tenants_over_chat_v1_and_sessions(keyed):
    server, key = keyed
    session = f"team-{uuid.uuid4().hex[:8]}"
    chat(server, key["alice"]).invoke(
        {"messages": [{"role": "user", "content": FACT}], "session_id": session}
    )
    url = f"{server.url}/sessions/{session}"
    assert httpx.get(url, headers=auth(key["bob"])).status_code == 404
    assert httpx.delete(url, headers=auth(key["bob"])).status_code == 404
    # bob "continues" the id: his own new conversation, through the openai client
    client(server, key["bob"]).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello"}], extra_headers={"x-session-id": session}
    )
    theirs = httpx.get(url, headers=auth(key["bob"])).json()
    assert theirs["turns"] == 1 and "PELICAN" not in str(theirs)
    mine = httpx.get(url, headers=auth(key["alice"])).json()
    assert mine["turns"] == 1 and mine["messages"][0]["content"] == FACT
    assert httpx.delete(url, headers=auth(key["bob"])).json()["deleted_messages"] == 2
    assert httpx.get(url, headers=auth(key["alice"])).json()["turns"] == 1
    assert "audit session.created tenant='alice' key='alice'" in server.log.read_text()


def test_an_agent_session_is_its_tenants(keyed):
    server, key = keyed
    session = f"agent-{uuid.uuid4().hex[:8]}"
    body = {"input": {"messages": [{"role": "user", "content": "Hello there"}], "session_id": session}}
    config = {"configurable": {"max_new_tokens": 48}}
    answer = httpx.post(
        f"{server.url}/agent/invoke", json={**body, "config": config}, headers=auth(key["alice"]), timeout=300
    )
    assert answer.status_code == 200, answer.text
    assert httpx.get(f"{server.url}/sessions/{session}", headers=auth(key["bob"])).status_code == 404
    assert httpx.get(f"{server.url}/sessions/{session}", headers=auth(key["alice"])).json()["turns"] == 1


def trained(server, key: str, name: str) -> dict:
    url = f"{server.url}/classifiers/{name}"
    assert wait_for(lambda: httpx.get(url, headers=auth(key)).json().get("status") != "training", 600)
    return httpx.get(url, headers=auth(key)).json()


def test_a_classifier_and_its_training_are_its_tenants(keyed):
    server, key = keyed
    body = {"name": "mood", "rows": rows(), "method": "head", "epochs": 1}
    started = httpx.post(f"{server.url}/classifiers", json=body, headers=auth(key["alice"]), timeout=120)
    assert started.status_code == 202, started.text
    busy = httpx.post(f"{server.url}/classifiers", json=body, headers=auth(key["bob"]), timeout=120)
    assert busy.status_code == 429 and "mood" not in busy.json()["detail"]  # not a word of alice's work
    assert trained(server, key["alice"], "mood")["status"] == "done"
    one = f"{server.url}/classifiers/mood"
    assert httpx.get(one, headers=auth(key["bob"])).status_code == 404
    assert httpx.delete(one, headers=auth(key["bob"])).status_code == 404
    assert httpx.get(f"{server.url}/classifiers", headers=auth(key["bob"])).json()["classifiers"] == []
    text = {"input": {"text": "A wonderful film.", "model": "mood"}}
    refused = httpx.post(f"{server.url}/classify/invoke", json=text, headers=auth(key["bob"]), timeout=120)
    assert refused.status_code == 422 and "unknown classifier 'mood'" in refused.json()["detail"]
    used = httpx.post(f"{server.url}/classify/invoke", json=text, headers=auth(key["alice"]), timeout=120)
    assert used.status_code == 200 and set(used.json()["output"]["scores"]) == {"negative", "positive"}
    listed = httpx.get(f"{server.url}/classifiers", headers=auth(key["alice"])).json()["classifiers"]
    assert [c["name"] for c in listed] == ["mood"]
    # the same name in bob's tenant is another classifier (his labels, not hers)
    relabelled = [{**row, "label": {"negative": "bad", "positive": "good"}[row["label"]]} for row in rows()]
    own = {**body, "rows": relabelled}
    assert (
        httpx.post(f"{server.url}/classifiers", json=own, headers=auth(key["bob"]), timeout=120).status_code
        == 202
    )
    assert trained(server, key["bob"], "mood")["labels"] == ["bad", "good"]
    theirs = httpx.post(f"{server.url}/classify/invoke", json=text, headers=auth(key["bob"]), timeout=120)
    assert set(theirs.json()["output"]["scores"]) == {"bad", "good"}
    assert trained(server, key["alice"], "mood")["labels"] == ["negative", "positive"]
    assert httpx.delete(one, headers=auth(key["alice"])).json()["deleted"] is True
    assert "audit classifier.deleted tenant='alice' key='alice'" in server.log.read_text()


def test_scopes_hold_on_a_real_server(keyed):
    server, key = keyed
    reader = key["reader"]
    refused = httpx.get(f"{server.url}/sessions/x", headers=auth(reader))
    assert refused.status_code == 403 and refused.json()["required_scope"] == "user"
    with pytest.raises(Exception, match="403"):
        chat(server, reader).invoke({"messages": [{"role": "user", "content": "hi"}], "session_id": "s"})
    reply = chat(server, reader).invoke({"messages": [{"role": "user", "content": "hi"}]})
    assert reply.content
    assert httpx.get(f"{server.url}/admin/keys", headers=auth(key["alice"])).status_code == 403
    from huggingface_hub import InferenceClient

    assert InferenceClient(server.url, token=reader).text_generation("Hello", max_new_tokens=2)
    with pytest.raises(Exception, match="invalid or revoked API key"):
        InferenceClient(server.url, token="hfc_wrong").text_generation("Hello", max_new_tokens=2)
    assert httpx.get(f"{server.url}/health").status_code == 200
    missing = httpx.get(f"{server.url}/v1/models")
    assert missing.status_code == 401 and "Bearer" in missing.headers["www-authenticate"]


def early_in_a_minute(margin: float = 30) -> None:
    """Wait for the next minute if this one has under `margin` seconds left (quotas count per minute)."""
    if time.time() % 60 > 60 - margin:
        time.sleep(60.5 - time.time() % 60)


def test_a_quota_is_a_429_the_openai_client_reads(keyed):
    server, key = keyed
    carol = client(server, key["carol"])
    ask = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    early_in_a_minute()
    left = [carol.chat.completions.with_raw_response.create(**ask).headers for _ in range(2)]
    assert [h["x-ratelimit-remaining-requests"] for h in left] == ["1", "0"]
    with pytest.raises(openai.RateLimitError) as refused:
        carol.chat.completions.create(**ask)
    headers = refused.value.response.headers
    assert headers["x-ratelimit-limit-requests"] == "2" and 1 <= int(headers["retry-after"]) <= 60
    assert "2 requests per minute" in refused.value.message
    usage = httpx.get(f"{server.url}/usage", headers=auth(key["carol"])).json()
    assert usage["usage"][0]["requests"] == 2 and usage["usage"][0]["completion_tokens"] > 0


def test_anthropics_client_sends_its_key_as_x_api_key(keyed):
    import anthropic

    server, key = keyed
    ask = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    reply = anthropic.Anthropic(base_url=server.url, api_key=key["reader"], max_retries=0).messages.create(
        **ask
    )
    assert reply.usage.output_tokens > 0
    with pytest.raises(anthropic.AuthenticationError, match="invalid or revoked API key"):
        anthropic.Anthropic(base_url=server.url, api_key="hfc_wrong", max_retries=0).messages.create(**ask)


def test_a_stored_response_is_its_tenants(keyed):
    server, key = keyed
    alice, bob = client(server, key["alice"]), client(server, key["bob"])
    made = alice.responses.create(model="m", input="hi", max_output_tokens=2)
    assert alice.responses.retrieve(made.id).id == made.id
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="m", input="hi", previous_response_id=made.id, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(made.id)
    alice.responses.delete(made.id)


def test_an_agent_thread_is_its_tenants(keyed):
    from langgraph_sdk import get_sync_client
    from langgraph_sdk.errors import NotFoundError, PermissionDeniedError

    server, key = keyed
    alice = get_sync_client(url=server.url, api_key=key["alice"])
    bob = get_sync_client(url=server.url, api_key=key["bob"])
    thread_id = alice.threads.create(thread_id=f"plans-{uuid.uuid4().hex[:6]}")["thread_id"]
    ask = {"messages": [{"role": "user", "content": "Say hi."}]}
    said = alice.runs.wait(thread_id, "agent", input=ask, config={"configurable": {"max_steps": 1}})
    assert [m["type"] for m in said["messages"]] == ["human", "ai"]
    with pytest.raises(NotFoundError):
        bob.threads.get_state(thread_id)
    with pytest.raises(httpx.HTTPStatusError) as refused:  # runs.wait raises the untyped error
        bob.runs.wait(thread_id, "agent", input=ask)
    assert refused.value.response.status_code == 404
    assert bob.threads.create(thread_id=thread_id)["thread_id"] == thread_id  # the same id: his own thread
    assert bob.threads.get_state(thread_id)["values"] == {}  # nothing of hers
    assert thread_id not in [t["thread_id"] for t in bob.threads.search(limit=100) if t["status"] != "idle"]
    with pytest.raises(PermissionDeniedError):
        get_sync_client(url=server.url, api_key=key["reader"]).threads.create()


def test_mcp_tools_take_the_key_as_a_bearer_token(keyed):
    import asyncio

    from tests.server.test_mcp_server import listed_and_called

    server, key = keyed
    names, generated, _ = asyncio.run(listed_and_called(server.url, auth(key["alice"])))
    assert "generate" in names and generated
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    accept = {"accept": "application/json, text/event-stream"}
    assert httpx.post(f"{server.url}/mcp", json=hello, headers=accept).status_code == 401
