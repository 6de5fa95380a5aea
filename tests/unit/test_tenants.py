"""Keys, scopes, quotas and usage (SQLite and PostgreSQL), and the app over fake models with two tenants:
what one tenant stores, another cannot read, change or delete; scopes give 403; quotas give 429."""

import logging
import time

import pytest
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from sqlalchemy import select

from chains.database import Database
from chains.errors import Forbidden, InvalidInput, NotFound, QuotaExceeded
from chains.sessions import SessionStore
from chains.settings import load_settings
from chains.tenants.caller import Caller, caller_of, tenant_of, with_caller
from chains.tenants.keys import KeyStore, keys
from chains.tenants.meter import Meter, MeterCallback
from chains.tenants.quotas import Quotas, duration
from server.app import create_app
from tests.unit.fakes import fake_backend

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """The service's database on SQLite, and on a fresh database of a real PostgreSQL server."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path}/hfchain.db")
    else:
        db = Database(request.getfixturevalue("postgres").new_database())
    yield db
    db.close()


def test_a_key_is_stored_only_as_a_hash_and_shown_once(database):
    store = KeyStore(database)
    assert not store.required()
    secret, record = store.create("alice", requests_per_minute=5)
    assert secret.startswith("hfc_") and len(secret) > 40 and "key" not in record
    with database.connect() as conn:
        stored = [str(value) for row in conn.execute(select(keys)).all() for value in row]
    assert secret not in stored and all(secret not in value for value in stored)
    assert record["tenant"] == "alice" and record["scope"] == "user" and record["hint"] == secret[:8] + "..."
    assert store.lookup(secret.encode()) == Caller("alice", "alice", "user", 5, None, "database")
    assert store.lookup(b"hfc_not-a-key") is None and store.required()
    assert [k["name"] for k in store.list()] == ["alice"]


def test_names_are_checked_and_stay_taken(database):
    store = KeyStore(database)
    store.create("alice")
    with pytest.raises(InvalidInput, match="exists"):
        store.create("alice")
    for bad in ("", "-x", "a b", "x" * 65):
        with pytest.raises(InvalidInput, match="1-64 characters"):
            store.create(bad)
    with pytest.raises(InvalidInput, match="scope"):
        store.create("bob", scope="root")
    with pytest.raises(InvalidInput, match="whole number from 1"):
        store.create("bob", tokens_per_day=0)
    store.revoke("alice")
    with pytest.raises(InvalidInput, match="exists"):
        store.create("alice")


def test_a_revoked_key_is_refused_here_at_once_and_elsewhere_within_the_cache_time(database):
    here, there = KeyStore(database, cache_seconds=0.5), KeyStore(database, cache_seconds=0.5)
    secret, _ = here.create("alice", tenant="team")
    assert there.lookup(secret.encode()).tenant == "team"  # cached by the other replica now
    here.revoke("alice")
    assert here.lookup(secret.encode()) is None
    deadline = time.monotonic() + 60  # a hang's bound: the cache lasts 0.5 s
    while there.lookup(secret.encode()) is not None:
        assert time.monotonic() < deadline, "the other replica still accepts a revoked key"
        time.sleep(0.1)
    with pytest.raises(NotFound, match="already revoked"):
        here.revoke("alice")
    with pytest.raises(NotFound, match="no key named"):
        here.revoke("bob")
    assert here.required(), "revoking the last key must not open the service"


def test_env_keys_are_admin_keys_of_the_default_tenant(database):
    store = KeyStore(database, ["env-secret"])
    caller = store.lookup(b"env-secret")
    assert caller.scope == "admin" and caller.tenant == "default" and caller.name.startswith("env-")
    assert "env-secret" not in caller.name and store.required() and store.count() == 0


def test_requests_per_minute_hold_across_stores_and_reset_each_minute(database):
    first, second = Quotas(database), Quotas(database)
    caller = Caller("alice", "alice", "user", requests_per_minute=3)
    minute = 1_800_000_000 // 60 * 60 + 10.0
    assert first.admit(caller, minute).requests == (3, 2, 50.0)
    second.admit(caller, minute + 1)
    first.admit(caller, minute + 2)
    with pytest.raises(QuotaExceeded) as refused:
        second.admit(caller, minute + 3)
    assert refused.value.details["retry_after"] == 47
    assert (b"x-ratelimit-remaining-requests", b"0") in refused.value.headers
    assert first.admit(caller, minute + 60).requests[1] == 2  # the next minute starts again


def test_tokens_per_day_count_prompt_and_completion_until_midnight(database):
    quotas = Quotas(database)
    caller = Caller("bob", "bob", "user", tokens_per_day=100)
    noon = 1_800_000_000 // 86400 * 86400 + 43200.0
    quotas.admit(caller, noon)
    quotas.record(caller, 60, 30, noon)
    assert quotas.admit(caller, noon).tokens == (100, 10, 43200.0)
    quotas.record(caller, 5, 5, noon)
    with pytest.raises(QuotaExceeded, match="100 tokens today") as refused:
        quotas.admit(caller, noon + 1)
    assert refused.value.details["retry_after"] == 43199
    assert quotas.admit(caller, noon + 43200).tokens[1] == 100  # a new day
    day = quotas.usage("bob", since_days=100_000)
    assert [(d["requests"], d["prompt_tokens"], d["completion_tokens"]) for d in day] == [(2, 65, 35)]


def test_reset_durations_read_as_openai_writes_them():
    assert [duration(s) for s in (0.2, 1, 59.5, 60, 361, 7384)] == [
        "1s",
        "1s",
        "1m0s",
        "1m0s",
        "6m1s",
        "2h3m4s",
    ]


def test_scopes_are_ordered_and_a_refusal_names_the_scope_needed():
    user = Caller("u", "t", "user")
    assert user.allows("inference") and user.allows("user") and not user.allows("admin")
    with pytest.raises(Forbidden, match="needs a key with scope 'admin'") as refused:
        user.require("admin", "GET /admin/keys")
    assert refused.value.details == {"required_scope": "admin"}
    config = with_caller({"configurable": {"temperature": 0}}, user)
    assert caller_of(config) is user and tenant_of(config) == "t" and tenant_of(None) == "default"


def test_the_meter_takes_reported_usage_and_counts_when_there_is_none():
    meter = Meter()
    callback = MeterCallback(meter, lambda text: len(text.split()))
    reported = AIMessage(
        "two words", usage_metadata={"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}
    )
    callback.on_chat_model_start({}, [[AIMessage("x")]], run_id="r1")
    callback.on_llm_end(LLMResult(generations=[[ChatGeneration(message=reported)]]), run_id="r1")
    callback.on_llm_start({}, ["one two three"], run_id="r2")
    callback.on_llm_end(LLMResult(generations=[[Generation(text="four five")]]), run_id="r2")
    callback.on_custom_event("hfchain_usage", {"prompt_tokens": 4}, run_id="r3")
    assert (meter.prompt_tokens, meter.completion_tokens) == (7 + 3 + 4, 2 + 2)


# the app over fake models: two tenants and their keys


@pytest.fixture
def tenants(tmp_path):
    """An app with an admin env key and two user keys (tenants alice and bob) plus an inference key."""
    sessions = SessionStore(f"sqlite:///{tmp_path}/sessions.db")
    settings = load_settings(api_keys="root-key", data_dir=tmp_path, keys_cache_seconds=0)
    app = create_app(settings, fake_backend(["ok"]), sessions)
    made = {
        name: app.state.keys.create(name, scope, requests_per_minute=rpm)[0]
        for name, scope, rpm in [("alice", "user", None), ("bob", "user", 2), ("reader", "inference", None)]
    }
    with TestClient(app) as client:
        yield client, {"root": "root-key", **made}


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def chat(client, key: str, session: str, text: str = "hi"):
    body = {"input": {"messages": [{"role": "user", "content": text}], "session_id": session}}
    return client.post("/chat/invoke", json=body, headers=auth(key))


def test_a_session_is_its_tenants_alone(tenants):
    client, key = tenants
    assert chat(client, key["alice"], "team-1", "My secret word is PELICAN.").status_code == 200
    for method in ("GET", "DELETE"):
        answer = client.request(method, "/sessions/team-1", headers=auth(key["bob"]))
        assert answer.status_code == 404, answer.text
        missing = client.request(method, "/sessions/never-made", headers=auth(key["bob"])).json()
        assert answer.json()["detail"] == missing["detail"].replace("never-made", "team-1")
    assert chat(client, key["bob"], "team-1", "hello").status_code == 200  # bob's own team-1
    mine = client.get("/sessions/team-1", headers=auth(key["alice"])).json()
    assert [m["content"] for m in mine["messages"]] == ["My secret word is PELICAN.", "ok"]
    theirs = client.get("/sessions/team-1", headers=auth(key["bob"])).json()
    assert "PELICAN" not in str(theirs) and theirs["turns"] == 1
    as_admin = {**auth(key["root"]), "X-Hfchain-Tenant": "alice"}
    assert client.get("/sessions/team-1", headers=as_admin).json()["turns"] == 1
    assert client.delete("/sessions/team-1", headers=auth(key["bob"])).json()["deleted_messages"] == 2
    assert client.get("/sessions/team-1", headers=auth(key["alice"])).json()["turns"] == 1


def test_the_openai_route_keeps_sessions_per_tenant(tenants):
    client, key = tenants
    body = {"model": "m", "messages": USER, "user": "shared-name"}
    assert client.post("/v1/chat/completions", json=body, headers=auth(key["alice"])).status_code == 200
    assert client.get("/sessions/shared-name", headers=auth(key["bob"])).status_code == 404
    # an inference key's `user` is a label, not a session; an explicit session is a 403
    assert client.post("/v1/chat/completions", json=body, headers=auth(key["reader"])).status_code == 200
    explicit = {**auth(key["reader"]), "x-session-id": "s1"}
    refused = client.post("/v1/chat/completions", json=body, headers=explicit)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize(
    ("key", "method", "path", "scope"),
    [
        ("reader", "GET", "/sessions/x", "user"),
        ("reader", "GET", "/classifiers", "user"),
        ("alice", "GET", "/admin/keys", "admin"),
        ("alice", "POST", "/admin/keys", "admin"),
        ("alice", "DELETE", "/admin/keys/bob", "admin"),
        ("alice", "GET", "/metrics", "admin"),
    ],
)
def test_a_request_outside_its_scope_is_a_403_naming_the_scope(tenants, key, method, path, scope):
    client, keys_ = tenants
    answer = client.request(
        method, path, headers=auth(keys_[key]), json={"name": "x"} if method == "POST" else None
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["required_scope"] == scope and f"scope {scope!r}" in answer.json()["detail"]


def test_a_user_key_cannot_act_in_another_tenant(tenants):
    client, key = tenants
    answer = client.get("/sessions/x", headers={**auth(key["alice"]), "X-Hfchain-Tenant": "bob"})
    assert answer.status_code == 403 and answer.json()["required_scope"] == "admin"
    bad = client.get("/sessions/x", headers={**auth(key["root"]), "X-Hfchain-Tenant": "no spaces"})
    assert bad.status_code == 400 and "X-Hfchain-Tenant" in bad.json()["detail"]


def test_keys_over_http_and_the_audit_trail(tenants, caplog):
    client, key = tenants
    caplog.set_level(logging.INFO, "hfchain.audit")
    made = client.post("/admin/keys", json={"name": "carol", "tokens_per_day": 50}, headers=auth(key["root"]))
    assert made.status_code == 201 and made.json()["tenant"] == "carol"
    secret = made.json()["key"]
    assert (
        client.post("/generate/invoke", json={"input": {"prompt": "x"}}, headers=auth(secret)).status_code
        == 200
    )
    listed = client.get("/admin/keys", headers=auth(key["root"])).json()["keys"]
    assert {k["name"] for k in listed} == {"alice", "bob", "reader", "carol"}
    assert secret not in str(listed)
    assert client.delete("/admin/keys/carol", headers=auth(key["root"])).status_code == 200
    refused = client.post("/generate/invoke", json={"input": {"prompt": "x"}}, headers=auth(secret))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert client.post("/admin/keys", json={"name": "bad name"}, headers=auth(key["root"])).status_code == 422
    assert client.delete("/admin/keys/nobody", headers=auth(key["root"])).status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "hfchain.audit"]
    assert any("key.created" in line and "'carol'" in line for line in lines)
    assert any("key.revoked" in line and "'carol'" in line for line in lines)
    assert not any(secret in line for line in lines)


def test_quota_429_names_the_limit_and_usage_shows_the_callers_own(tenants):
    client, key = tenants
    for _ in range(2):
        assert (
            client.post(
                "/v1/chat/completions", json={"model": "m", "messages": USER}, headers=auth(key["bob"])
            ).status_code
            == 200
        )
    refused = client.post(
        "/v1/chat/completions", json={"model": "m", "messages": USER}, headers=auth(key["bob"])
    )
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert (
        refused.headers["x-ratelimit-limit-requests"] == "2"
        and refused.json()["error"]["type"] == "rate_limit_exceeded"
    )
    assert client.get("/sessions/x", headers=auth(key["bob"])).status_code == 404  # GETs are not counted
    own = client.get("/usage", headers=auth(key["bob"])).json()
    assert own["key"]["name"] == "bob" and [d["requests"] for d in own["usage"]] == [2]
    assert own["usage"][0]["prompt_tokens"] > 0 and own["usage"][0]["completion_tokens"] > 0
    every = client.get("/usage", headers=auth(key["root"])).json()["usage"]
    assert {d["key"] for d in every} == {"bob"}
    metrics = client.get("/metrics", headers=auth(key["root"])).text
    assert 'hfchain_key_requests_total{key="bob"} 2.0' in metrics and "root-key" not in metrics


def test_without_keys_nothing_changes_and_no_key_rows_are_made(tmp_path):
    sessions = SessionStore(f"sqlite:///{tmp_path}/sessions.db")
    app = create_app(load_settings(data_dir=tmp_path), fake_backend(["ok"]), sessions)
    with TestClient(app) as client:
        assert chat(client, "", "s1").status_code == 200
        assert client.get("/sessions/s1").json()["turns"] == 1
        assert client.get("/metrics").status_code == 200
        refused = client.post("/admin/keys", json={"name": "x"})
        assert refused.status_code == 403 and "hfchain keys create" in refused.json()["detail"]
        assert client.get("/usage").status_code == 404
        assert "hfchain_key_requests_total{" not in client.get("/metrics").text
    assert app.state.keys.count() == 0 and app.state.quotas.usage() == []


def test_sessions_stored_before_tenants_are_the_default_tenants(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as it was before tenants
        conn.execute(
            "CREATE TABLE hfchain_session_turns (id INTEGER PRIMARY KEY, session_id VARCHAR(128) NOT NULL, "
            "messages TEXT NOT NULL, created_at DATETIME NOT NULL)"
        )
        row = '[{"type": "human", "data": {"content": "old", "type": "human"}}]'
        conn.execute("INSERT INTO hfchain_session_turns VALUES (1, 's1', ?, '2026-01-01 00:00:00')", (row,))
    store = SessionStore(f"sqlite:///{path}")
    assert [m.content for m in store.history("s1")] == ["old"]
    assert store.history("s1", "alice") == [] and store.export("s1", "alice") is None
    store.close()


def test_a_batch_is_metered_for_every_input(tenants):
    client, key = tenants
    body = {"inputs": [{"prompt": "one two three"}, {"prompt": "four five six seven"}]}
    assert client.post("/generate/batch", json=body, headers=auth(key["alice"])).status_code == 200
    single = {"input": {"prompt": "one two three"}}
    assert client.post("/generate/invoke", json=single, headers=auth(key["bob"])).status_code == 200
    used = {d["key"]: d for d in client.get("/usage", headers=auth(key["root"])).json()["usage"]}
    assert used["alice"]["prompt_tokens"] > used["bob"]["prompt_tokens"] > 0
    assert used["alice"]["completion_tokens"] == 2 * used["bob"]["completion_tokens"] > 0


def test_a_stream_cut_short_still_counts_its_prompt():
    meter = Meter()
    callback = MeterCallback(meter, lambda text: len(text.split()))
    callback.on_llm_start({}, ["a b c d"], run_id="r1")
    partial = LLMResult(generations=[[Generation(text="e f")]])
    callback.on_llm_error(RuntimeError("client left"), run_id="r1", response=partial)
    assert (meter.prompt_tokens, meter.completion_tokens) == (4, 2)


def test_a_cross_site_post_with_the_browsers_login_is_refused(tenants):
    import base64

    client, key = tenants
    basic = {"Authorization": "Basic " + base64.b64encode(f"x:{key['alice']}".encode()).decode()}
    body = {"input": {"messages": USER, "session_id": "csrf"}}
    forged = client.post("/chat/invoke", json=body, headers={**basic, "Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403 and "another site" in forged.json()["detail"]
    own_page = client.post("/chat/invoke", json=body, headers={**basic, "Sec-Fetch-Site": "same-origin"})
    assert own_page.status_code == 200
    bearer = {**auth(key["alice"]), "Sec-Fetch-Site": "cross-site"}  # a script with the key: not CSRF
    assert client.post("/chat/invoke", json=body, headers=bearer).status_code == 200
