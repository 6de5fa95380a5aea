"""The files transformers.js asks for: a classifier's in its layout (the int8 graph under its name), nothing
outside the listed files, and a 404 that says how to get what is missing."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chains.classify.jobs import Trainings
from chains.classify.registry import CARD, Registry
from chains.errors import HfchainError
from chains.settings import Settings
from server.errors import domain_error


@pytest.fixture
def client(tmp_path):
    registry = Registry(tmp_path / "classifiers")
    folder = registry.path("sentiment")
    (folder / "onnx").mkdir(parents=True)
    (folder / CARD).write_text(json.dumps({"name": "sentiment", "labels": ["neg", "pos"]}))
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "onnx" / "model_int8.onnx").write_bytes(b"int8 graph")
    (registry.path("plain")).mkdir(parents=True)
    (registry.path("plain") / CARD).write_text(json.dumps({"name": "plain"}))
    from server.ops import classifiers_router

    app = FastAPI()
    app.add_exception_handler(HfchainError, domain_error)
    app.include_router(classifiers_router(registry, Trainings(registry), Settings(data_dir=tmp_path)))
    return TestClient(app)


def test_a_classifier_is_served_in_transformers_js_layout(client):
    assert client.get("/classifiers/sentiment/model/config.json").json() == {"model_type": "bert"}
    assert client.get("/classifiers/sentiment/model/onnx/model_quantized.onnx").content == b"int8 graph"


def test_what_is_missing_is_a_404_that_says_how_to_get_it(client):
    missing = client.get("/classifiers/plain/model/onnx/model.onnx")
    assert missing.status_code == 404 and "export 'onnx'" in missing.json()["detail"]
    unknown = client.get("/classifiers/nobody/model/config.json")
    assert unknown.status_code == 404 and "GET /classifiers" in unknown.json()["detail"]


@pytest.mark.parametrize("file", ["card.json", "eval.jsonl", "../plain/card.json", "onnx/model_int8.onnx"])
def test_only_the_listed_files_are_served(client, file):
    assert client.get(f"/classifiers/sentiment/model/{file}").status_code in (404, 422)
