"""Documents on two replicas over one PostgreSQL with pgvector, behind keys: a collection filled through one
replica is searched and cited on the other, a delete on one is gone from the other's search at once, a job's
progress shows on both, and tenants never see each other's collections."""

from __future__ import annotations

import httpx
import pytest
from langserve import RemoteRunnable

from tests.conftest import free_port, started_replicas, wait_for
from tests.fixtures.documents import pdf_bytes
from tests.postgres import running

ROOT_KEY = "documents-root-key"
GUIDE = [
    "Chapter one. The lighthouse keeper Tobias Renn climbs 212 steps every evening.",
    "Chapter two. In storms the lamp is checked every forty minutes.",
]


@pytest.fixture(scope="module")
def replicas(embedded_backend):
    with running(free_port(), vector=True) as database:
        url = database.new_database()
        env = {"HFCHAIN_SESSIONS_URL": url, "HFCHAIN_API_KEYS": ROOT_KEY, "HFCHAIN_KEYS_CACHE_SECONDS": "1"}
        with started_replicas(env) as started:
            yield started


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keys(replicas):
    made = {}
    for name, body in {
        "alice": {"name": "alice"},
        "bob": {"name": "bob"},
        "alice-bot": {"name": "alice-bot", "tenant": "alice", "scope": "inference"},
    }.items():
        reply = httpx.post(f"{replicas[0].url}/admin/keys", json=body, headers=auth(ROOT_KEY))
        assert reply.status_code == 201, reply.text
        made[name] = reply.json()["key"]
    return made


@pytest.fixture(scope="module")
def guide(replicas, keys):
    a = replicas[0]
    headers = auth(keys["alice"])
    assert httpx.post(f"{a.url}/collections", json={"name": "guide"}, headers=headers).status_code == 201
    files = [("files", ("lighthouse.pdf", pdf_bytes(GUIDE)))]
    reply = httpx.post(f"{a.url}/collections/guide/documents", files=files, headers=headers, timeout=120)
    assert reply.status_code == 200 and reply.json()["added"] == 1, reply.text
    return "guide"


def search(replica, key, query, **body):
    return httpx.post(
        f"{replica.url}/collections/guide/search",
        json={"query": query, **body},
        headers=auth(key),
        timeout=60,
    )


def test_a_collection_filled_on_one_replica_is_searched_and_cited_on_the_other(replicas, keys, guide):
    b = replicas[1]
    described = httpx.get(f"{b.url}/collections/guide", headers=auth(keys["alice"])).json()
    assert described["store"] == "pgvector" and described["documents"] == 1 and described["chunks"] == 2
    [hit] = search(b, keys["alice"], "Tobias Renn steps", k=1).json()["results"]
    assert hit["page"] == 1 and "212" in hit["text"]
    ask = RemoteRunnable(f"{b.url}/ask/", headers=auth(keys["alice"]))
    out = ask.invoke({"question": "How often is the lamp checked in a storm?", "collection": "guide"})
    assert out["citations"] and out["citations"][0]["page"] == 2 and "forty minutes" in out["answer"]


def test_a_delete_on_one_replica_is_gone_from_the_others_search(replicas, keys, guide):
    a, b = replicas
    headers = auth(keys["alice"])
    body = [{"id": "temp", "text": "The spare bulbs are stored in the oil room."}]
    assert httpx.post(f"{a.url}/collections/guide/documents", json=body, headers=headers).status_code == 200
    assert search(b, keys["alice"], "spare bulbs oil room", k=1).json()["results"][0]["document_id"] == "temp"
    assert httpx.delete(f"{b.url}/collections/guide/documents/temp", headers=headers).status_code == 200
    found = search(a, keys["alice"], "spare bulbs oil room", k=5).json()["results"]
    assert "temp" not in {h["document_id"] for h in found}


def test_a_jobs_progress_shows_on_both_replicas(replicas, keys, guide):
    a, b = replicas
    headers = auth(keys["alice"])
    body = [{"id": f"log-{i}", "text": f"Logbook entry {i}: the weather was calm."} for i in range(20)]
    reply = httpx.post(f"{a.url}/collections/guide/documents?wait=false", json=body, headers=headers)
    assert reply.status_code == 202
    job = reply.json()["job"]["id"]

    def done_on_b():
        seen = httpx.get(f"{b.url}/collections/guide", headers=headers).json()["job"]
        return seen["id"] == job and seen["state"] == "done"

    assert wait_for(done_on_b, timeout=120)
    assert httpx.get(f"{b.url}/collections/guide", headers=headers).json()["documents"] == 21


def test_tenants_never_see_each_others_collections(replicas, keys, guide):
    a, b = replicas
    bob = auth(keys["bob"])
    assert httpx.get(f"{b.url}/collections", headers=bob).json() == {"collections": []}
    assert httpx.get(f"{b.url}/collections/guide", headers=bob).status_code == 404
    assert search(b, keys["bob"], "Tobias").status_code == 404
    asked = {"input": {"question": "Who keeps the lighthouse?", "collection": "guide"}}
    assert httpx.post(f"{a.url}/ask/invoke", json=asked, headers=bob).status_code == 404
    retrieve = {"input": {"query": "lighthouse", "collection": "guide"}}
    assert httpx.post(f"{a.url}/retrieve/invoke", json=retrieve, headers=bob).status_code == 404
    # bob's own "guide" is another collection
    assert httpx.post(f"{a.url}/collections", json={"name": "guide"}, headers=bob).status_code == 201
    assert httpx.get(f"{b.url}/collections/guide", headers=bob).json()["documents"] == 0
    assert httpx.get(f"{b.url}/collections/guide", headers=auth(keys["alice"])).json()["documents"] >= 1


def test_an_inference_key_reads_its_tenants_documents_but_cannot_change_them(replicas, keys, guide):
    a, _ = replicas
    bot = auth(keys["alice-bot"])
    assert search(a, keys["alice-bot"], "lamp storm").status_code == 200
    retrieve = {"input": {"query": "lamp", "collection": "guide", "k": 1}}
    assert httpx.post(f"{a.url}/retrieve/invoke", json=retrieve, headers=bot).status_code == 200
    body = [{"id": "x", "text": "nope"}]
    refused = httpx.post(f"{a.url}/collections/guide/documents", json=body, headers=bot)
    assert refused.status_code == 403 and "user" in refused.json()["detail"]
    assert httpx.delete(f"{a.url}/collections/guide", headers=bot).status_code == 403
    assert httpx.get(f"{a.url}/collections/guide").status_code == 401


def test_the_embedded_tokens_count_for_the_uploaders_usage(replicas, keys, guide):
    a, b = replicas
    carol = httpx.post(f"{a.url}/admin/keys", json={"name": "carol"}, headers=auth(ROOT_KEY)).json()["key"]
    assert httpx.post(f"{a.url}/collections", json={"name": "notes"}, headers=auth(carol)).status_code == 201
    body = [{"id": "n1", "text": "Carol's note about the lighthouse lamp and the storm schedule."}]
    stored = httpx.post(f"{a.url}/collections/notes/documents", json=body, headers=auth(carol)).json()
    assert stored["tokens"] > 0

    def counted():
        rows = httpx.get(f"{b.url}/usage", headers=auth(carol)).json()["usage"]
        return sum(r["prompt_tokens"] for r in rows) >= stored["tokens"]

    assert wait_for(counted, timeout=30)
