"""Documents on a real server: upload files and JSON, search, cited answers through RemoteRunnable, a
LangChain chain over /retrieve, the agent's search tool, ingestion jobs, and bad uploads refused with a
4xx that names the file while the collection stays as it was."""

from __future__ import annotations

import httpx
import pytest
from langchain_core.runnables import RunnableLambda
from langserve import RemoteRunnable

from tests.conftest import ROOT, hfchain_server, wait_for
from tests.fixtures.documents import docx_bytes, html_bytes, pdf_bytes, zip_bomb_docx

HAMLET = (ROOT / "tests" / "fixtures" / "hamlet_excerpt.txt").read_bytes()
MANUAL = [
    "Installing the pump. Bolt the frame to the floor before you connect any hose.",
    "Servicing. Replace the impeller gasket every 1,800 operating hours; model KX-41 uses part 7730.",
]
HANDBOOK = ["Holidays: every employee gets 27 days of paid leave a year.", "Expenses go to Margarethe Olsen."]


@pytest.fixture(scope="module")
def served(embedded_backend, tmp_path_factory):
    data = tmp_path_factory.mktemp("documents")
    proc = hfchain_server(
        HFCHAIN_DATA_DIR=str(data), HFCHAIN_INGEST_MAX_BYTES="400000", HFCHAIN_INGEST_JOB_BYTES="100000"
    ).wait("/ready")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def library(served):
    """A collection holding a text file, a PDF, a .docx, an .html page and a Markdown note."""
    url = served.url
    assert (
        httpx.post(f"{url}/collections", json={"name": "library", "description": "mixed"}).status_code == 201
    )
    files = [
        ("files", ("hamlet.txt", HAMLET, "text/plain")),
        ("files", ("manual.pdf", pdf_bytes(MANUAL), "application/pdf")),
        ("files", ("handbook.docx", docx_bytes(HANDBOOK), "application/octet-stream")),
        (
            "files",
            (
                "page.html",
                html_bytes("<h1>Parking</h1><p>Visitors park on level minus two.</p>"),
                "text/html",
            ),
        ),
        ("files", ("note.md", b"# Wi-Fi\n\nThe guest network password is heron-lantern.", "text/markdown")),
    ]
    reply = httpx.post(f"{url}/collections/library/documents", files=files, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()


def search(url, query, **body):
    reply = httpx.post(f"{url}/collections/library/search", json={"query": query, **body}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()["results"]


def test_uploaded_files_are_counted_and_listed(served, library):
    assert library["added"] == 5 and library["unchanged"] == 0
    described = httpx.get(f"{served.url}/collections/library").json()
    assert described["documents"] == 5 and described["chunks"] >= 5 and described["store"] == "sqlite"
    listed = httpx.get(f"{served.url}/collections/library/documents").json()["documents"]
    assert sorted(d["id"] for d in listed) == [
        "hamlet.txt",
        "handbook.docx",
        "manual.pdf",
        "note.md",
        "page.html",
    ]
    assert [c["name"] for c in httpx.get(f"{served.url}/collections").json()["collections"]] == ["library"]


def test_search_finds_names_and_numbers_with_their_page(served, library):
    [hit] = search(served.url, "KX-41 gasket part number", k=1)
    assert hit["document_id"] == "manual.pdf" and hit["page"] == 2 and "7730" in hit["text"]
    assert search(served.url, "Margarethe Olsen", k=1, mode="text")[0]["document_id"] == "handbook.docx"
    assert search(served.url, "where can visitors leave their car", k=1)[0]["document_id"] == "page.html"
    only = search(served.url, "password", k=5, filter={"document_id": "note.md"})
    assert {h["document_id"] for h in only} == {"note.md"}


def test_ask_cites_the_chunk_that_holds_the_answer(served, library):
    ask = RemoteRunnable(f"{served.url}/ask/")
    out = ask.invoke({"question": "What is the guest Wi-Fi password?", "collection": "library"})
    assert out["found"] and out["style"] == "quote" and 1 <= out["sources_used"] <= out["retrieved"]
    assert out["citations"] and all(f"[{c['n']}]" in out["answer"] for c in out["citations"])
    assert out["citations"][0]["document_id"] == "note.md" and "heron-lantern" in out["answer"]
    numbers = [s["n"] for s in out["sources"]]
    assert numbers == list(range(1, out["sources_used"] + 1))


def test_ask_streams_the_answer_then_the_sources(served, library):
    chunks = list(RemoteRunnable(f"{served.url}/ask/").stream({"question": "How many days of paid leave?",
                                                                "collection": "library"}))  # fmt: skip
    answers = [c["answer"] for c in chunks if c.get("answer")]
    assert len(answers) > 3  # token by token
    assert "citations" in chunks[-1] and chunks[-1]["citations"][0]["document_id"] == "handbook.docx"
    assert "27" in "".join(answers)


def test_a_question_the_documents_do_not_answer_says_so(served, library):
    out = RemoteRunnable(f"{served.url}/ask/").invoke(
        {"question": "What is the boiling point of liquid nitrogen on Jupiter?", "collection": "library"}
    )
    assert not out["found"] and out["citations"] == [] and "do not say" in out["answer"]


def test_retrieve_works_as_a_retriever_in_a_chain(served, library):
    retriever = RemoteRunnable(f"{served.url}/retrieve/")
    chain = retriever | RunnableLambda(
        lambda docs: [(d.metadata["document_id"], d.page_content) for d in docs]
    )
    pairs = chain.invoke({"query": "impeller gasket", "collection": "library", "k": 2})
    assert pairs[0][0] == "manual.pdf" and "impeller" in pairs[0][1]
    docs = retriever.invoke({"query": "Denmark", "collection": "library", "k": 3, "mode": "text"})
    assert docs and all(d.metadata["collection"] == "library" and d.metadata["document_id"] for d in docs)


def test_the_agent_searches_the_documents(served, library):
    agent = RemoteRunnable(f"{served.url}/agent/")
    events = list(
        agent.stream(
            {
                "messages": [
                    {"role": "user", "content": "Search my documents: what is the guest Wi-Fi password?"}
                ]
            },
            config={"configurable": {"tool_choice": "required", "max_steps": 2, "max_new_tokens": 48}},
        )
    )
    text = repr(events)
    assert "search_documents" in text and "heron-lantern" in text


def test_json_documents_replace_by_id_and_deletes_are_immediate(served, library):
    url = f"{served.url}/collections/library"
    first = httpx.post(f"{url}/documents", json=[{"id": "memo", "text": "The canteen opens at 7:30.",
                                                  "metadata": {"kind": "memo"}}]).json()  # fmt: skip
    again = httpx.post(f"{url}/documents", json=[{"id": "memo", "text": "The canteen opens at 7:30.",
                                                  "metadata": {"kind": "memo"}}]).json()  # fmt: skip
    changed = httpx.post(
        f"{url}/documents", json={"documents": [{"id": "memo", "text": "The canteen opens at 8:15."}]}
    )
    assert (first["added"], again["unchanged"], changed.json()["replaced"]) == (1, 1, 1)
    assert (
        "8:15" in search(served.url, "canteen opening time", k=1, filter={"document_id": "memo"})[0]["text"]
    )
    assert httpx.delete(f"{url}/documents/memo").json()["deleted"]
    assert search(served.url, "canteen", k=5, mode="text") == []
    assert httpx.delete(f"{url}/documents/memo").status_code == 404


def test_large_uploads_run_as_a_job_with_progress(served):
    url = f"{served.url}/collections/jobs"
    httpx.post(f"{served.url}/collections", json={"name": "jobs"})
    reply = httpx.post(f"{url}/documents?wait=false", files=[("files", ("hamlet.txt", HAMLET))])
    assert reply.status_code == 202 and reply.json()["job"]["state"] in ("queued", "running")
    assert wait_for(lambda: (httpx.get(url).json()["job"] or {}).get("state") == "done", timeout=120)
    job = httpx.get(url).json()["job"]
    assert job["chunks_done"] == job["chunks_total"] > 0 and job["result"]["added"] == 1
    assert httpx.get(url).json()["documents"] == 1


@pytest.mark.parametrize(
    ("name", "data", "status", "words"),
    [
        ("tool.exe", b"MZ\x90\x00", 415, [".pdf", ".docx", "tool.exe"]),
        ("secret.pdf", pdf_bytes(["classified"], encrypt_with="hunter2"), 422, ["secret.pdf", "encrypted"]),
        ("scan.pdf", pdf_bytes([""]), 422, ["scan.pdf"]),
        ("broken.pdf", b"%PDF-1.4 not really", 422, ["broken.pdf"]),
        ("empty.txt", b"  \n ", 422, ["empty.txt"]),
        ("bomb.docx", zip_bomb_docx(), 413, ["bomb.docx"]),
        ("huge.txt", b"a" * 500_000, 413, ["400000"]),
    ],
)
def test_bad_uploads_name_the_file_and_change_nothing(served, library, name, data, status, words):
    url = f"{served.url}/collections/library"
    before = httpx.get(url).json()
    files = [("files", ("fine.txt", b"A perfectly good note about kayaks.")), ("files", (name, data))]
    reply = httpx.post(f"{url}/documents", files=files, timeout=60)
    assert reply.status_code == status, reply.text
    assert all(word in reply.json()["detail"] for word in words), reply.text
    after = httpx.get(url).json()
    assert (after["documents"], after["chunks"]) == (before["documents"], before["chunks"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/collections", {"name": "library"}, 409),
        ("post", "/collections", {"name": "no spaces allowed"}, 422),
        ("get", "/collections/nope", None, 404),
        ("post", "/collections/nope/search", {"query": "x"}, 404),
        ("post", "/collections/library/search", {"query": "x", "k": 0}, 422),
        ("post", "/collections/library/search", {"query": "x", "mode": "fuzzy"}, 422),
        ("post", "/collections/library/search", {"query": "x", "filter": {"a": {"$gt": 1}}}, 422),
        ("post", "/collections/library/documents", {"text": "not a list"}, 422),
        ("post", "/collections/library/documents", [{"id": "x", "text": ""}], 422),
        ("post", "/collections/library/documents", [{"text": "a", "colour": "red"}], 422),
        ("post", "/ask/invoke", {"input": {"question": "x", "collection": "nope"}}, 404),
        ("post", "/ask/invoke", {"input": {"question": "", "collection": "library"}}, 422),
        ("post", "/retrieve/invoke", {"input": {"query": "x"}}, 422),
    ],
)
def test_bad_requests_get_a_4xx_that_says_what_to_fix(served, library, method, path, body, status):
    reply = getattr(httpx, method)(f"{served.url}{path}", **({"json": body} if body is not None else {}))
    assert reply.status_code == status, reply.text
    assert reply.json().get("detail")


def test_a_server_takes_its_embeddings_from_a_tei_server(served, tmp_path):
    """HFCHAIN_EMBEDDING_URL: the second server embeds through the first one's TEI route (POST /embed)."""
    second = hfchain_server(HFCHAIN_DATA_DIR=str(tmp_path), HFCHAIN_EMBEDDING_URL=served.url).wait("/ready")
    try:
        text = "The pump needs a new gasket."
        here = httpx.post(f"{second.url}/v1/embeddings", json={"input": text}).json()["data"][0]["embedding"]
        there = httpx.post(f"{served.url}/v1/embeddings", json={"input": text}).json()["data"][0]["embedding"]
        assert len(here) == 384 and sum(a * b for a, b in zip(here, there, strict=True)) > 0.9999
        assert httpx.post(f"{second.url}/collections", json={"name": "remote"}).status_code == 201
        body = [{"id": "pump", "text": text}, {"id": "cake", "text": "Bake the sponge for twenty minutes."}]
        assert httpx.post(f"{second.url}/collections/remote/documents", json=body).json()["added"] == 2
        reply = httpx.post(f"{second.url}/collections/remote/search", json={"query": "gasket for the pump"})
        assert reply.json()["results"][0]["document_id"] == "pump"
        assert httpx.get(f"{second.url}/collections/remote").json()["encoder"] == served.url
    finally:
        second.stop()
