"""The console at / in Chromium, as a person uses it: documents uploaded by drag and drop, searched and asked;
a classifier trained from the CSV fixture with its progress shown, its card drawn, and run in this browser
with transformers.js (WebAssembly here) giving the server's probabilities; the agent's tool calls approved;
the service's plots drawn. No console error, no request leaving 127.0.0.1, on a laptop and a phone width."""

from __future__ import annotations

import json
import math
import uuid

import httpx
import pytest

from tests.browser.conftest import open_page
from tests.browser.test_playgrounds import assert_clean
from tests.conftest import ROOT

REVIEWS = ROOT / "tests" / "fixtures" / "reviews.csv"
NOTE = "# Wi-Fi\n\nThe guest network password is heron-lantern. The printer is on the second floor."
TEXTS = ["A gorgeous, moving film.", "Tedious and dull from start to finish.", "It was fine, I suppose."]
# Records every value the training bar takes (a poll could miss steps between two reads).
WATCH_PROGRESS = """() => {
  window.progressSeen = [];
  const bar = document.getElementById('train-progress');
  new MutationObserver(() => window.progressSeen.push([bar.value, bar.max]))
    .observe(bar, {attributes: true});
  const status = document.getElementById('train-status');
  window.statusSeen = [];
  new MutationObserver(() => window.statusSeen.push(status.textContent))
    .observe(status, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def trained(browser, server) -> dict:
    """A classifier trained in the console from the fixture CSV; what the page showed while it trained."""
    name = f"reviews-{uuid.uuid4().hex[:6]}"
    with open_page(browser, "console-classifiers-train") as page:
        page.goto(f"{server.url}/#classifiers")
        page.locator("#train-file").set_input_files(str(REVIEWS))
        page.locator("#train-preview p").filter(has_text="48 rows").wait_for()  # read in the page
        assert page.locator("#train-preview tbody tr").count() == 5
        assert page.locator("#text-column").input_value() == "review"
        assert page.locator("#label-column").input_value() == "sentiment"
        page.locator("#classifier-name").fill("Not a name!")  # the API's own message is shown
        page.get_by_role("button", name="Train").click()
        page.locator("#classifiers .error").filter(has_text="422").wait_for()
        page.log.errors.clear()  # Chromium logs the refused request: that one was asked for
        page.locator("#classifier-name").fill(name)
        page.locator("#epochs").fill("2")
        page.evaluate(WATCH_PROGRESS)
        page.get_by_role("button", name="Train").click()
        page.locator("#train-status").filter(has_text="Trained: accuracy").wait_for(timeout=300_000)
        page.locator("#confusion-matrix").wait_for()
        seen = {
            "progress": page.evaluate("window.progressSeen"),
            "status": page.evaluate("window.statusSeen"),
            "cells": page.locator("#confusion-matrix rect.cell").evaluate_all(
                "cells => cells.map(c => Number(c.dataset.count))"
            ),
            "per_label": page.locator("#per-label tbody tr").count(),
        }
        assert_clean(page)
    return {"name": name, **seen}


def test_training_shows_its_progress_then_the_card_with_a_confusion_matrix(server, trained):
    card = httpx.get(f"{server.url}/classifiers/{trained['name']}").json()
    assert card["status"] == "done" and card["onnx"]  # the console asks for the export
    steps = [value for value, top in trained["progress"] if top > 1]
    assert len(set(steps)) >= 2 and steps == sorted(steps)  # the bar moved forward
    assert any("epoch" in s for s in trained["status"]) and any("loss" in s for s in trained["status"])
    matrix = card["metrics"]["confusion_matrix"]
    assert trained["cells"] == [count for row in matrix for count in row]  # 2 labels: 4 cells
    assert sum(trained["cells"]) == card["data"]["eval_rows"] and trained["per_label"] == 2


def test_the_classifier_runs_in_this_browser_as_on_the_server(browser, server, trained):
    name = trained["name"]
    with open_page(browser, "console-classifiers-in-browser") as page:
        page.goto(f"{server.url}/#classifiers")
        page.get_by_role("button", name=name).click()
        page.locator("#try-text").fill(TEXTS[0])
        page.get_by_role("button", name="Classify").click()
        page.locator("#try-where").filter(has_text="on the server").wait_for()
        page.locator("#in-browser").check()
        page.get_by_role("button", name="Classify").click()
        page.locator("#try-where").filter(has_text="in this browser (wasm)").wait_for()
        assert page.locator("#try-result .bar").count() == 2
        for text in TEXTS:
            local = page.evaluate("([n, t]) => window.hfchain.classifyInBrowser(n, t)", [name, text])
            body = {"input": {"text": text, "model": name}}
            served = httpx.post(f"{server.url}/classify/invoke", json=body, timeout=60).json()["output"]
            assert local.keys() == served["scores"].keys()
            assert all(abs(local[label] - p) <= 1e-3 for label, p in served["scores"].items()), (
                local,
                served,
            )
        vectors = page.evaluate("t => window.hfchain.embedInBrowser(t)", TEXTS)
        body = {"input": TEXTS, "model": "m"}
        served = httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=60).json()["data"]
        for mine, theirs in zip(vectors, served, strict=True):
            assert len(mine) == len(theirs["embedding"]) == 384
            assert math.isclose(math.fsum(x * x for x in mine), 1.0, abs_tol=1e-4)
            assert all(abs(a - b) <= 1e-3 for a, b in zip(mine, theirs["embedding"], strict=True))
        assert_clean(page)


def test_documents_are_dropped_searched_and_asked_with_clickable_citations(page, server):
    name = f"console-{uuid.uuid4().hex[:6]}"
    page.goto(server.url)
    page.locator("#new-collection").fill(name)
    page.get_by_role("button", name="Create").click()
    page.locator("#collection-summary").filter(has_text="0 documents").wait_for()
    page.locator("#drop").evaluate(  # a file dropped on the zone, as a person drags one from their desktop
        """(zone, text) => {
            const data = new DataTransfer();
            data.items.add(new File([text], 'office.md', {type: 'text/markdown'}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        NOTE,
    )
    page.locator("#upload-status").filter(has_text="Stored: 1 added").wait_for()
    assert page.locator("#upload-progress").evaluate("bar => bar.value === bar.max && bar.max > 0")
    page.locator("#collection-summary").filter(has_text="1 document,").wait_for()
    page.locator("#search-query").fill("guest network password")
    page.get_by_role("button", name="Search").click()
    hit = page.locator("#search-results .hit").first
    hit.wait_for()
    assert "heron-lantern" in hit.inner_text() and "office.md" in hit.locator(".source").inner_text()
    assert hit.locator("mark").all_inner_texts()[:3] == ["guest", "network", "password"]
    page.locator("#question").fill("What is the guest Wi-Fi password?")
    page.get_by_role("button", name="Ask").click()
    cite = page.locator("#answer a.cite").first
    cite.wait_for()
    cite.click()
    source = page.locator("#source-1")
    assert source.evaluate("node => node === document.activeElement") and "office.md" in source.inner_text()
    assert "heron-lantern" in page.locator("#answer").inner_text()
    assert_clean(page)


def test_the_agent_shows_its_call_waits_for_approval_then_shows_the_result(page, server):
    page.goto(f"{server.url}/#agent")
    page.locator("#agent-tools input").first.wait_for()
    for box in page.locator("#agent-tools input").all():
        box.check()  # every tool waits for approval
    page.locator("#tool-choice").select_option("required")
    page.locator("#agent-input").fill("What is 12 times 7?")
    page.get_by_role("button", name="Send").click()
    approval = page.get_by_role("group", name="Approval needed")
    approval.wait_for()
    asked = approval.inner_text()
    assert "The agent wants to run" in asked
    assert page.locator("#agent-chat .msg.tool").count() == 0  # nothing ran yet
    approval.get_by_role("button", name="Approve").click()
    page.locator("#agent-chat .msg.tool").first.wait_for()
    page.wait_for_function("!document.querySelector('#agent form button[type=submit]').disabled")
    calls = page.locator("#agent-chat .msg.tool-call").all_inner_texts()
    results = page.locator("#agent-chat .msg.tool").all_inner_texts()
    assert len(calls) == len(results) >= 1  # each call shown once, even after the run resumed
    tool = calls[0].removeprefix("calls ").split("(")[0]
    assert tool in asked and results[0].startswith(f"{tool} →")
    assert page.locator("#agent-chat .msg.human").all_inner_texts() == ["What is 12 times 7?"]
    assert_clean(page)


def test_the_service_panel_plots_what_metrics_counts(page, server):
    httpx.post(f"{server.url}/generate/invoke", json={"input": "Hello"}, timeout=60)
    page.goto(f"{server.url}/#service")
    page.wait_for_function(
        "document.querySelectorAll('#service .plot polyline').length === 6", timeout=30_000
    )
    stats = page.locator("#service-stats").inner_text()
    assert "SmolLM2-135M-Instruct" in stats and "onnx-fp32" in stats
    assert page.locator("#service .plot").count() == 6
    assert_clean(page)


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_every_tab_reads_on_a_laptop_and_a_phone_and_works_from_the_keyboard(browser, server, width, height):
    with open_page(browser, f"console-{width}x{height}") as page:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(server.url)
        page.get_by_role("tab", name="Documents").focus()
        for name in ("Classifiers", "Agent", "Service"):
            page.keyboard.press("ArrowRight")
            assert page.evaluate("document.activeElement.textContent") == name
            assert page.get_by_role("tab", name=name).get_attribute("aria-selected") == "true"
            assert page.get_by_role("tabpanel").count() == 1  # the others are hidden
            page.wait_for_timeout(300)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} is wider than a {width}px screen by {overflow}px"
            page.screenshot(path=str(_shot(f"console-{name.lower()}-{width}x{height}")))
        page.keyboard.press("Home")
        assert page.get_by_role("tab", name="Documents").get_attribute("aria-selected") == "true"
        assert_clean(page)


def test_the_console_opens_behind_keys_with_the_browsers_login(browser, tmp_path_factory, embedded_backend):
    from tests.conftest import hfchain_server
    from tests.server.test_tenants import make_key

    data = tmp_path_factory.mktemp("console-keys")
    key = make_key(data, "alice")
    proc = hfchain_server(HFCHAIN_DATA_DIR=str(data)).wait("/ready")
    try:
        login = {"http_credentials": {"username": "alice", "password": key}}
        with open_page(browser, "console-with-a-key", **login) as page:
            page.goto(proc.url)
            page.locator("#new-collection").fill("alices")
            page.get_by_role("button", name="Create").click()
            page.locator("#collection-summary").filter(has_text="0 documents").wait_for()
            page.get_by_role("tab", name="Service").click()  # /metrics needs an admin key: its message shows
            page.locator("#service .error").filter(has_text="403").wait_for()
            assert "admin" in page.locator("#service .error").inner_text()
        listed = httpx.get(f"{proc.url}/collections", headers={"Authorization": f"Bearer {key}"}).json()
        assert [c["name"] for c in listed["collections"]] == ["alices"]
    finally:
        proc.stop()


def _shot(name: str):
    from tests.browser.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


def test_every_script_and_model_file_the_page_loads_is_served_by_hfchain(server):
    """No CDN: the console's modules, transformers.js and the encoder's files come from hfchain."""
    scripts = ("app.js", "util.js", "inbrowser.js", "vendor/transformers.min.js")
    for path in (f"/console/{name}" for name in scripts):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 200 and "javascript" in response.headers["content-type"], path
    assert json.loads(httpx.get(f"{server.url}/encoder/model/config.json").text)["model_type"] == "bert"


def test_the_pages_csv_reader_and_error_messages_handle_what_people_send(page, server):
    page.goto(server.url)
    text = 'text,label\r\n"Good, really",pos\r\n"She said ""no""",neg\n"two\nlines",neg\n\n'
    rows = page.evaluate("t => import('/console/util.js').then(m => m.parseCsv(t))", text)
    expected = [["text", "label"], ["Good, really", "pos"], ['She said "no"', "neg"], ["two\nlines", "neg"]]
    assert rows == expected
    messages = page.evaluate(
        """() => import('/console/util.js').then(m => [
            m.messageOf(422, {detail: [{loc: ['body', 'name'], msg: 'String should match pattern'}]}),
            m.messageOf(404, {detail: 'no classifier named x'}),
            m.messageOf(401, {error: {message: 'missing API key'}}),
            m.messageOf(502, '')])"""
    )
    assert messages == [
        "name: String should match pattern",
        "no classifier named x",
        "missing API key",
        "the server answered 502 with no message",
    ]
    assert_clean(page)
