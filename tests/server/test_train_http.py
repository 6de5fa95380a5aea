"""Training over HTTP on a real server: an upload starts a worker process, its progress can be followed,
the result is served at once; one training at a time; bad data is a 422; a restart marks the interrupted."""

from __future__ import annotations

import csv
import json

import httpx
import pytest

from tests.conftest import ROOT, hfchain_server, wait_for

REVIEWS = ROOT / "tests" / "fixtures" / "reviews.csv"
ONE, CSV = {"text": "a", "label": "x"}, b"review,sentiment\na,b\n"
FORM = {"text_column": "review", "label_column": "sentiment", "epochs": "1", "eval_fraction": "0.25"}


def rows() -> list[dict]:
    with REVIEWS.open(newline="") as handle:
        return [{"text": r["review"], "label": r["sentiment"]} for r in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def trainer_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("train-data")
    proc = hfchain_server(HFCHAIN_DATA_DIR=str(data), HFCHAIN_TRAIN_MAX_ROWS="100").wait("/ready")
    yield proc, data
    proc.stop()


def done(url: str, name: str) -> dict:
    assert wait_for(lambda: httpx.get(f"{url}/classifiers/{name}").json().get("status") != "training", 600)
    return httpx.get(f"{url}/classifiers/{name}").json()


def test_an_upload_trains_in_a_worker_and_is_served_at_once(trainer_server):
    server, _ = trainer_server
    with REVIEWS.open("rb") as handle:
        files = {"file": ("reviews.csv", handle, "text/csv")}
        started = httpx.post(
            f"{server.url}/classifiers", data={**FORM, "name": "up"}, files=files, timeout=120
        )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "training" and started.json()["pid"] > 0
    busy = httpx.post(f"{server.url}/classifiers", json={"name": "second", "rows": rows()}, timeout=60)
    assert busy.status_code == 429 and "up" in busy.json()["detail"] and busy.headers["retry-after"]
    final = done(server.url, "up")
    assert final["status"] == "done" and final["labels"] == ["negative", "positive"], final
    assert final["data"]["eval_rows"] == 12 and 0 <= final["metrics"]["accuracy"] <= 1
    body = {"input": {"text": "A wonderful film.", "model": "up"}}
    answer = httpx.post(f"{server.url}/classify/invoke", json=body, timeout=120)
    assert answer.status_code == 200 and set(answer.json()["output"]["scores"]) == {"negative", "positive"}
    listed = httpx.get(f"{server.url}/classifiers").json()
    assert [c["name"] for c in listed["classifiers"]] == ["up"] and listed["trainings"] == []


def test_json_rows_train_too_and_progress_is_visible_and_an_export_is_served(trainer_server):
    server, _ = trainer_server
    body = {"name": "rows", "rows": rows(), "epochs": 2, "export": "onnx-int8"}
    started = httpx.post(f"{server.url}/classifiers", json=body, timeout=60)
    assert started.status_code == 202, started.text
    seen = []

    def progressed() -> bool:
        state = httpx.get(f"{server.url}/classifiers/rows").json()
        seen.append(state)
        return state["status"] != "training"

    assert wait_for(progressed, 600)
    assert seen[-1]["status"] == "done" and seen[-1]["options"]["epochs"] == 2
    assert seen[-1]["runtime"] == "onnx-int8"
    assert set(seen[-1]["onnx"]["runtimes"]) == {"torch", "onnx", "onnx-int8"}
    assert any(s.get("progress", {}).get("stage") == "exporting" for s in seen)
    answer = httpx.post(f"{server.url}/classify/invoke", json={"input": {"text": "Fine.", "model": "rows"}})
    assert answer.status_code == 200 and set(answer.json()["output"]["scores"]) == {"negative", "positive"}
    assert httpx.delete(f"{server.url}/classifiers/rows").json()["deleted"] is True


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"json": {"name": "bad", "rows": [ONE, {"text": "b", "label": "x"}]}}, "labels"),
        ({"json": {"name": "bad", "rows": []}}, "rows"),
        ({"json": {"name": "bad name", "rows": [ONE]}}, "name"),
        ({"json": {"name": "bad", "rows": [ONE] * 101}}, "HFCHAIN_TRAIN_MAX_ROWS"),
        ({"data": {"name": "bad", "text_column": "body"}, "files": {"file": ("r.csv", CSV)}}, "columns are"),
        ({"data": {"name": "bad"}, "files": {"file": ("r.xlsx", b"PK")}}, ".csv, .jsonl or .parquet"),
        ({"data": {"name": "bad"}}, "file"),
        ({"json": {"name": "up", "rows": rows()}}, "exists"),
        ({"json": {"name": "bad", "rows": rows(), "export": "tflite"}}, "onnx-int8"),
    ],
)  # fmt: skip
def test_bad_training_requests_get_422_naming_the_fix(trainer_server, kwargs, says):
    server, data = trainer_server
    response = httpx.post(f"{server.url}/classifiers", timeout=60, **kwargs)
    assert response.status_code == 422, response.text
    assert says in response.text
    assert not list((data / "uploads").glob("*"))  # a refused upload leaves nothing behind


def test_a_restart_marks_an_interrupted_training_failed(tmp_path):
    jobs = tmp_path / "classifiers" / ".jobs"
    jobs.mkdir(parents=True)
    (jobs / "lost.json").write_text(json.dumps({"name": "lost", "status": "training", "pid": 2**22 + 1}))
    proc = hfchain_server(HFCHAIN_DATA_DIR=str(tmp_path)).wait("/health")
    try:
        state = httpx.get(f"{proc.url}/classifiers/lost").json()
        assert state["status"] == "failed" and "interrupted" in state["error"]
        assert httpx.delete(f"{proc.url}/classifiers/lost").json()["deleted"] is True
        assert httpx.get(f"{proc.url}/classifiers/lost").status_code == 404
    finally:
        proc.stop()
