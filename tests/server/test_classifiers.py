"""A classifier trained with the CLI while the server runs: served at once by /classify, exported to ONNX
and served by onnxruntime without a restart, listed, deleted."""

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT

HFCHAIN = str(Path(sys.executable).parent / "hfchain")
REVIEWS = ROOT / "tests" / "fixtures" / "reviews.csv"


def test_train_with_the_cli_then_classify_list_and_delete_on_the_running_server(server):
    args = ["train-classifier", str(REVIEWS), "--name", "cli-reviews", "--text-column", "review",
            "--label-column", "sentiment", "--epochs", "1", "--eval-fraction", "0.25"]  # fmt: skip
    run = subprocess.run([HFCHAIN, *args], capture_output=True, text=True, timeout=600)  # same data dir
    assert run.returncode == 0, run.stderr
    assert "accuracy" in run.stdout and "negative" in run.stdout and "positive" in run.stdout
    body = {"input": {"text": "What a wonderful, moving film.", "model": "cli-reviews"}}
    answer = httpx.post(f"{server.url}/classify/invoke", json=body, timeout=120)  # no restart
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["output"]["scores"]) == {"negative", "positive"}
    export = [HFCHAIN, "export-onnx", "cli-reviews"]
    exported = subprocess.run(export, capture_output=True, text=True, timeout=600)
    assert exported.returncode == 0, exported.stderr
    assert "torch" in exported.stdout and "onnx" in exported.stdout and "<- serving" in exported.stdout
    assert httpx.get(f"{server.url}/classifiers/cli-reviews").json()["runtime"] == "onnx"
    onnx = httpx.post(f"{server.url}/classify/invoke", json=body, timeout=120).json()["output"]["scores"]
    assert all(abs(onnx[k] - v) < 1e-4 for k, v in answer.json()["output"]["scores"].items())
    listed = httpx.get(f"{server.url}/classifiers").json()["classifiers"]
    card = next(c for c in listed if c["name"] == "cli-reviews")
    assert card["labels"] == ["negative", "positive"] and card["data"]["eval_rows"] == 12
    assert httpx.get(f"{server.url}/classifiers/cli-reviews").json()["metrics"] == card["metrics"]
    again = subprocess.run([HFCHAIN, *args], capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "exists" in again.stderr  # a name is taken once
    assert httpx.delete(f"{server.url}/classifiers/cli-reviews").json()["deleted"] is True
    gone = httpx.post(f"{server.url}/classify/invoke", json=body, timeout=60)
    assert gone.status_code == 422 and "cli-reviews" in gone.text
    assert httpx.get(f"{server.url}/classifiers/cli-reviews").status_code == 404
    assert httpx.delete(f"{server.url}/classifiers/cli-reviews").status_code == 404
    assert httpx.get(f"{server.url}/classifiers/bad%20name").status_code == 422
