"""Two replicas over one real PostgreSQL with keys: a key made through one works on the other, a revoked
key is refused by both within seconds, a quota counts requests over both, tenants stay apart on both."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.conftest import free_port, started_replicas, wait_for
from tests.postgres import running

ROOT_KEY = "replicas-root-key"
CACHE_S = 1


@pytest.fixture(scope="module")
def replicas(embedded_backend):
    with running(free_port()) as database:
        env = {
            "HFCHAIN_SESSIONS_URL": database.new_database(),
            "HFCHAIN_API_KEYS": ROOT_KEY,
            "HFCHAIN_KEYS_CACHE_SECONDS": str(CACHE_S),
            "HFCHAIN_MAX_NEW_TOKENS": "4",
        }
        with started_replicas(env) as started:
            yield started


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def make(replica, name: str, **limits) -> str:
    made = httpx.post(f"{replica.url}/admin/keys", json={"name": name, **limits}, headers=auth(ROOT_KEY))
    assert made.status_code == 201, made.text
    return made.json()["key"]


def generate(replica, key: str) -> httpx.Response:
    body = {"input": {"prompt": "Hello"}}
    return httpx.post(f"{replica.url}/generate/invoke", json=body, headers=auth(key), timeout=120)


def test_a_key_made_on_one_replica_works_on_the_other_and_revocation_reaches_both(replicas):
    a, b = replicas
    name = f"dana-{uuid.uuid4().hex[:6]}"
    key = make(a, name)
    assert generate(b, key).status_code == 200  # b has it cached now
    listed = httpx.get(f"{b.url}/admin/keys", headers=auth(ROOT_KEY)).json()["keys"]
    assert name in [k["name"] for k in listed] and key not in str(listed)
    assert httpx.delete(f"{a.url}/admin/keys/{name}", headers=auth(ROOT_KEY)).status_code == 200
    assert generate(a, key).status_code == 401  # at once where it was revoked
    assert wait_for(lambda: generate(b, key).status_code == 401, timeout=60)  # a hang's bound, not a speed


def test_a_quota_counts_requests_over_both_replicas_and_lets_them_in_after_the_minute(replicas):
    a, b = replicas
    key = make(a, f"erin-{uuid.uuid4().hex[:6]}", requests_per_minute=3)
    if time.time() % 60 > 40:  # the four requests must fall in one minute
        time.sleep(60.5 - time.time() % 60)
    assert [generate(r, key).status_code for r in (a, b, a)] == [200, 200, 200]
    refused = generate(b, key)
    assert refused.status_code == 429 and "3 requests per minute" in refused.json()["detail"]
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= 60
    time.sleep(wait + 0.5)
    assert generate(b, key).status_code == 200
    usage = httpx.get(f"{a.url}/usage", headers=auth(key)).json()["usage"]
    assert usage[0]["requests"] == 4  # the refused one is not counted as used


def test_tenants_stay_apart_over_both_replicas(replicas):
    a, b = replicas
    first, second = make(a, f"fay-{uuid.uuid4().hex[:6]}"), make(b, f"gus-{uuid.uuid4().hex[:6]}")
    session = f"shared-{uuid.uuid4().hex[:6]}"
    body = {"input": {"messages": [{"role": "user", "content": "secret PELICAN"}], "session_id": session}}
    assert httpx.post(f"{a.url}/chat/invoke", json=body, headers=auth(first), timeout=120).status_code == 200
    for replica in (a, b):
        assert httpx.get(f"{replica.url}/sessions/{session}", headers=auth(second)).status_code == 404
        assert httpx.get(f"{replica.url}/sessions/{session}", headers=auth(first)).json()["turns"] == 1
    assert httpx.delete(f"{b.url}/sessions/{session}", headers=auth(second)).status_code == 404
    assert httpx.delete(f"{b.url}/sessions/{session}", headers=auth(first)).json()["deleted_messages"] == 2
