"""Training a classifier on a small labelled file, registering it, serving it through /classify's chain."""

import csv
from pathlib import Path

import pytest

from chains.classify import build_classify_chain, build_classify_methods
from chains.classify.export import (
    RUNTIMES,
    export_folder,
    export_onnx,
    export_trained,
    runtimes,
    unexport_trained,
)
from chains.classify.registry import Registry
from chains.classify.train import TrainOptions, train_classifier
from chains.errors import InvalidInput, NotFound

REVIEWS = Path(__file__).resolve().parent.parent / "fixtures" / "reviews.csv"
COLUMNS = {"text_column": "review", "label_column": "sentiment"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, embedded_backend):
    registry = Registry(tmp_path_factory.mktemp("classifiers"))
    seen: list[dict] = []
    options = TrainOptions(**COLUMNS, epochs=2, eval_fraction=0.25)
    card = train_classifier(REVIEWS, "reviews", registry, options, seen.append)
    return registry, card, seen


def test_training_reports_progress_and_evaluates_on_held_out_rows(trained):
    registry, card, seen = trained
    assert card["labels"] == ["negative", "positive"] and card["method"] == "finetune"
    assert card["data"]["rows"] == 48 and card["data"]["eval_rows"] == 12 and card["data"]["train_rows"] == 36
    metrics = card["metrics"]
    assert 0 <= metrics["accuracy"] <= 1 and set(metrics["per_label"]) == {"negative", "positive"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 12
    assert sum(row["support"] for row in metrics["per_label"].values()) == 12  # stratified: 6 and 6
    assert seen and seen[-1]["step"] == seen[-1]["max_steps"] > 0
    assert any(s.get("eval_accuracy") is not None for s in seen)  # evaluated each epoch
    assert registry.names() == ["reviews"] and (registry.path("reviews") / "model.safetensors").is_file()


def test_a_trained_classifier_is_served_by_name(trained, embedded_backend):
    registry = trained[0]
    chain = build_classify_chain(build_classify_methods(embedded_backend, None, registry))
    result = chain.invoke({"text": "A wonderful, moving film with a great cast.", "model": "reviews"})
    assert set(result["scores"]) == {"negative", "positive"} and result["method"] == "checkpoint:reviews"
    assert abs(sum(result["scores"].values()) - 1) < 1e-6
    with pytest.raises(InvalidInput, match="reviews"):  # an unknown name lists the known ones
        chain.invoke({"text": "x", "model": "nope"})


def test_a_taken_name_and_deleting(trained, tmp_path):
    registry, _, _ = trained
    with pytest.raises(InvalidInput, match="exists"):
        train_classifier(REVIEWS, "reviews", registry, TrainOptions(**COLUMNS, epochs=1))
    other = Registry(tmp_path)
    train_classifier(REVIEWS, "head-only", other, TrainOptions(**COLUMNS, method="head", epochs=1))
    assert other.card("head-only")["method"] == "head"
    other.delete("head-only")
    assert other.names() == [] and not list(tmp_path.iterdir())  # nothing half-written left behind
    with pytest.raises(NotFound):
        other.delete("head-only")


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([{"body": "a", "label": "x"}, {"body": "b", "label": "y"}], "no column 'text'"),
        ([{"text": "a", "label": "x"}, {"text": "b", "label": "x"}], "two labels or more"),
        (
            [{"text": "a", "label": "x"}, {"text": " ", "label": "y"}, {"text": "c", "label": "y"}],
            "empty text",
        ),
        (
            [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c", "label": "y"}],
            "single row",
        ),
    ],
)
def test_unusable_data_gets_a_message_that_says_what_to_fix(tmp_path, rows, says):
    path = write_csv(tmp_path / "data.csv", rows)
    with pytest.raises(InvalidInput, match=says):
        train_classifier(path, "bad", Registry(tmp_path / "reg"), TrainOptions())


def test_a_file_that_does_not_parse(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{not json\n')
    with pytest.raises(InvalidInput, match="does not parse"):
        train_classifier(path, "bad", Registry(tmp_path / "reg"), TrainOptions())
    with pytest.raises(InvalidInput, match=r"\.csv, \.jsonl or \.parquet"):
        train_classifier(tmp_path / "data.xlsx", "bad", Registry(tmp_path / "reg"), TrainOptions())


SAMPLES = ["A wonderful, moving film with a great cast.", "Dull and far too long.", "It was fine, I guess."]


def scores(chain, model: str) -> list[dict[str, float]]:
    return [r["scores"] for r in chain.batch([{"text": t, "model": model} for t in SAMPLES])]


def test_export_to_onnx_serves_it_by_onnxruntime_and_compares_runtimes(trained, embedded_backend):
    registry = trained[0]
    methods = build_classify_methods(embedded_backend, None, registry)
    chain = build_classify_chain(methods)
    before = scores(chain, "reviews")
    card = export_trained(registry, "reviews", int8=True)
    assert card["runtime"] == "onnx-int8" and set(runtimes(registry.path("reviews"))) == set(RUNTIMES)
    report = card["onnx"]["runtimes"]
    assert set(report) == set(RUNTIMES) and card["onnx"]["compared_on"] == 12  # the held-out rows, kept
    assert report["onnx"]["accuracy"] == report["torch"]["accuracy"] == card["metrics"]["accuracy"]
    assert all(row["texts_per_s"] > 0 and 0 <= row["accuracy"] <= 1 for row in report.values())
    quantized = scores(chain, "reviews")  # the running chain picks the export up
    assert methods["checkpoint"].pick(type("V", (), {"model": "reviews"})).runtime == "onnx-int8"
    for old, new in zip(before, quantized, strict=True):
        assert set(new) == set(old) and abs(sum(new.values()) - 1) < 1e-6
        assert all(abs(new[k] - old[k]) < 0.05 for k in old)  # int8 moves scores a little, not far
    registry.update_card("reviews", {"runtime": "onnx"})
    floats = scores(chain, "reviews")  # float32 ONNX: the same scores as torch
    assert all(abs(new[k] - old[k]) < 1e-4 for old, new in zip(before, floats, strict=True) for k in old)
    unexport_trained(registry, "reviews")
    assert runtimes(registry.path("reviews")) == ["torch"] and registry.card("reviews")["runtime"] == "torch"
    assert scores(chain, "reviews") == before


def test_an_onnx_folder_of_a_configured_classifier_is_served_without_torch_weights(
    trained, embedded_backend, tmp_path
):
    folder = tmp_path / "reviews-onnx"
    written = export_folder(str(trained[0].path("reviews")), folder)
    assert written["runtimes"] == ["onnx"] and runtimes(folder) == ["onnx"]  # no weights: onnx only
    chain = build_classify_chain(build_classify_methods(embedded_backend, f"onnx-reviews={folder}", None))
    result = chain.invoke({"text": SAMPLES[0], "model": "onnx-reviews"})
    assert set(result["scores"]) == {"negative", "positive"} and result["method"] == "checkpoint:onnx-reviews"
    with pytest.raises(InvalidInput, match="cannot load"):
        export_onnx(str(tmp_path / "missing"), tmp_path / "out")
