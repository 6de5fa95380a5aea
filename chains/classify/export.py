"""ONNX graphs of sequence classifiers: exported with torch.onnx (its dynamo exporter), optionally
int8-quantized with onnxruntime's dynamic quantizer, and run with onnxruntime.

A classifier folder holding `onnx/model.onnx` (and `onnx/model_int8.onnx`) can be served by either runtime;
`runtimes` says which it has.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from chains.errors import InvalidInput

log = logging.getLogger(__name__)

Runtime = Literal["torch", "onnx", "onnx-int8"]
RUNTIMES: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
ONNX_DIR = "onnx"
FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
SAMPLE = ["An example sentence to trace the graph with.", "Two texts, so the batch axis stays free."]


def onnx_path(folder: Path, runtime: str) -> Path:
    """Where a folder keeps the graph of an ONNX runtime."""
    return Path(folder) / ONNX_DIR / FILES[runtime]


def runtimes(folder: Path) -> list[str]:
    """The runtimes a classifier folder can be served by (torch when it has weights)."""
    folder = Path(folder)
    found = [r for r in FILES if onnx_path(folder, r).is_file()]
    weights = any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))
    return (["torch"] if weights else []) + found


def chosen_runtime(source: str, card: dict[str, Any] | None = None) -> str:
    """The runtime a classifier is served by: its card's choice, else torch where it has weights, else its
    int8 graph, else its float graph (a folder that `hfchain export-onnx --output` wrote)."""
    if card and card.get("runtime") in RUNTIMES:
        return card["runtime"]
    available = runtimes(Path(source)) if Path(source).is_dir() else []
    if not available or "torch" in available:
        return "torch"
    return "onnx-int8" if "onnx-int8" in available else "onnx"


def export_onnx(source: str, folder: Path, int8: bool = False) -> dict[str, Any]:
    """Write `folder/onnx/model.onnx` (and the int8 graph) for the classifier at `source`; what was written.

    The graphs are written in a scratch folder and moved into place in one step, so a server reading the
    folder meanwhile sees the old graphs or the new ones, never half of one.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source).eval()
    except (OSError, ValueError) as error:
        raise InvalidInput(f"cannot load a sequence classifier from {source!r}: {error}") from None
    encoded = tokenizer(SAMPLE, padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]
    scratch = Path(folder) / f".partial-onnx-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    try:
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        with _quiet():
            program = torch.onnx.export(
                model,
                kwargs={n: encoded[n] for n in names},
                dynamo=True,
                verbose=False,
                input_names=names,
                output_names=["logits"],
                dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
            )
        program.save(str(scratch / FILES["onnx"]))
        _drop_shapes(scratch / FILES["onnx"])
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            fp32, int8_file = scratch / FILES["onnx"], scratch / FILES["onnx-int8"]
            with _quiet():
                quantize_dynamic(fp32, int8_file, weight_type=QuantType.QInt8)
        _swap(scratch, Path(folder) / ONNX_DIR)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = round(time.perf_counter() - started, 1)
    written = [r for r in FILES if r == "onnx" or int8]
    log.info("exported %s to ONNX (%s) in %.1f s", source, ", ".join(written), seconds)
    return {"runtimes": written, "export_seconds": seconds}


def export_folder(source: str, output: Path, int8: bool = False) -> dict[str, Any]:
    """A classifier folder without weights (config, tokenizer, graphs): served by onnxruntime."""
    from transformers import AutoConfig, AutoTokenizer

    written = export_onnx(source, output, int8)
    AutoConfig.from_pretrained(source).save_pretrained(output)
    AutoTokenizer.from_pretrained(source).save_pretrained(output)
    return written


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the exporter's and quantizer's notes (axis names, deprecations, torchvision not installed,
    "consider pre-processing", which measured no faster here): they are not the user's to act on."""
    torch_onnx = logging.getLogger("torch.onnx")
    level = torch_onnx.level
    drop = logging.Filter("nothing")  # a filter whose name matches no record: drops the root logger's notes
    root = logging.getLogger()
    torch_onnx.setLevel(logging.ERROR)
    root.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(drop)
        torch_onnx.setLevel(level)


def _drop_shapes(path: Path) -> None:
    """Remove the exporter's intermediate shape annotations: onnxruntime's quantizer re-infers them and
    stops where a traced (sample-sized) one disagrees with its own."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def _swap(fresh: Path, target: Path) -> None:
    """Put the folder `fresh` at `target`, replacing what was there."""
    old = target.with_name(f".old-onnx-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.rename(target, old)
    os.rename(fresh, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_onnx(folder: Path) -> bool:
    """Delete a folder's ONNX graphs; whether there were any."""
    target = Path(folder) / ONNX_DIR
    if not target.exists():
        return False
    old = target.with_name(f".old-onnx-{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    shutil.rmtree(old, ignore_errors=True)
    return True


class OnnxModel:
    """An exported classifier graph under onnxruntime: logits for a tokenizer's numpy encoding."""

    def __init__(self, path: Path, providers: list[str] | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.enable_cpu_mem_arena = False  # an arena keeps its peak for good: memory follows the request
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=providers or ["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, encoded: Any) -> list[list[float]]:
        feed = {name: encoded[name].astype("int64") for name in self.inputs}
        return self.session.run(["logits"], feed)[0].astype("float32").tolist()


def compare(folder: Path, texts: list[str], labels: list[str], batch: int = 32) -> dict[str, dict]:
    """Accuracy and texts/s of every runtime the folder has, on the same labelled texts, one after another."""
    from chains.classify.checkpoint import Checkpoint

    report = {}
    for runtime in runtimes(folder):
        checkpoint = Checkpoint(str(folder), runtime)
        names = checkpoint.labels
        started = time.perf_counter()
        predicted = []
        for start in range(0, len(texts), batch):
            rows = checkpoint.logits(texts[start : start + batch])
            predicted += [names[max(range(len(row)), key=row.__getitem__)] for row in rows]
        seconds = time.perf_counter() - started
        right = sum(p == t for p, t in zip(predicted, labels, strict=True))
        report[runtime] = {"accuracy": right / len(texts), "texts_per_s": round(len(texts) / seconds, 1)}
    return report


def export_into(folder: Path, rows: list[tuple[str, str]], int8: bool = False) -> dict[str, Any]:
    """Export the classifier in `folder` there, compare its runtimes on `rows`: the card's new entries."""
    from datetime import UTC, datetime

    written = export_onnx(str(folder), folder, int8)
    report = compare(folder, [t for t, _ in rows], [label for _, label in rows]) if rows else {}
    return {
        "runtime": "onnx-int8" if int8 else "onnx",
        "onnx": {**written, "compared_on": len(rows), "runtimes": report},
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_trained(registry: Any, name: str, int8: bool = False, compare_rows: int = 1000) -> dict[str, Any]:
    """Export a trained classifier in place, compare its runtimes on its held-out rows, serve the export."""
    if registry.card(name) is None:
        raise InvalidInput(f"no trained classifier named {name!r}: see GET /classifiers")
    changes = export_into(registry.path(name), registry.eval_rows(name)[:compare_rows], int8)
    return registry.update_card(name, changes)


def unexport_trained(registry: Any, name: str) -> dict[str, Any]:
    """Serve a trained classifier by torch again and delete its graphs."""
    if registry.card(name) is None:
        raise InvalidInput(f"no trained classifier named {name!r}: see GET /classifiers")
    card = registry.update_card(name, {"runtime": "torch", "onnx": None, "exported_at": None})
    remove_onnx(registry.path(name))
    return card
