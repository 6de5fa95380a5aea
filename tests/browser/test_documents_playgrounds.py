"""The /ask and /retrieve playgrounds in Chromium over a collection: the answer is shown as text with its
sources under it, the retrieved chunks with their document ids."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.browser.test_playgrounds import assert_clean, fill_form, output_of

NOTE = "# Wi-Fi\n\nThe guest network password is heron-lantern. The printer is on the second floor."


@pytest.fixture(scope="module")
def collection(server) -> str:
    name = f"browser-{uuid.uuid4().hex[:8]}"
    assert httpx.post(f"{server.url}/collections", json={"name": name}).status_code == 201
    files = [("files", ("office.md", NOTE.encode()))]
    assert (
        httpx.post(f"{server.url}/collections/{name}/documents", files=files, timeout=120).status_code == 200
    )
    return name


def test_ask_playground_shows_the_answer_then_its_sources(page, server, collection):
    page.goto(f"{server.url}/ask/playground/")
    fill_form(page, question="What is the guest Wi-Fi password?", collection=collection)
    page.get_by_role("button", name="Start").click()
    text = output_of(page)
    answer, _, sources = text.partition("Sources:")
    assert "heron-lantern" in answer and answer.strip().startswith("[1]")
    assert "[1] office.md" in sources and '{"' not in text  # text a person reads, not JSON
    assert_clean(page)


def test_retrieve_playground_lists_the_chunks_with_their_documents(page, server, collection):
    page.goto(f"{server.url}/retrieve/playground/")
    fill_form(page, query="printer floor", collection=collection)
    page.get_by_role("button", name="Start").click()
    documents = json.loads(output_of(page))
    assert documents and documents[0]["metadata"]["document_id"] == "office.md"
    assert "printer" in documents[0]["page_content"]
    assert_clean(page)
