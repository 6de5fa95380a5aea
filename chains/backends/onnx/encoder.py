"""Sentence encoders on ONNX Runtime: the transformer, its mean pooling and the normalisation exported as
one graph (torch.onnx), cached like the decoder's export, and run in length-sorted batches.

The export runs in a child process (`python -m chains.backends.onnx.encoder SOURCE TARGET`): the exporter's
imports and the traced model do not stay in the server's memory. It is written into a scratch folder and
renamed into place, so a crash mid-export never leaves half a graph for a later start to load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FILES = {"onnx": "encoder.onnx", "onnx-int8": "encoder_int8.onnx"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SAMPLE = ["An example sentence to trace the graph with.", "Two texts, so the batch axis stays free."]
LOG_TAIL = 800
BROWSER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
BATCH_TOKENS = 2048  # padded tokens per call: 8 full-length inputs; larger calls measured no faster


class EncoderExportError(RuntimeError):
    """The encoder cannot be exported (its pooling is not mean pooling, or the exporter failed)."""


def unsupported(folder: Path) -> str | None:
    """Why the sentence-transformers folder cannot run on ONNX here (None when it can): the graph holds a
    transformer followed by mean pooling, the pipeline all-MiniLM and most sentence encoders use."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return "it has no modules.json (not a sentence-transformers folder)"
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads(modules_file.read_text())]
    if modules[:2] != ["Transformer", "Pooling"] or set(modules[2:]) - {"Normalize"}:
        return f"its modules are {' -> '.join(modules)}, not Transformer -> Pooling (mean) [-> Normalize]"
    pooling_file = next((folder / m["path"] / "config.json" for m in json.loads(modules_file.read_text())
                         if m["type"].endswith("Pooling")), None)  # fmt: skip
    pooling = json.loads(pooling_file.read_text()) if pooling_file and pooling_file.is_file() else {}
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        return f"its pooling is {', '.join(modes) or 'unknown'}, not mean pooling"
    config = folder / "sentence_bert_config.json"
    if not config.is_file() or not json.loads(config.read_text()).get("max_seq_length"):
        return "its sentence_bert_config.json names no max_seq_length"
    return None


def max_seq_length(folder: Path) -> int:
    """Tokens per input the sentence-transformers pipeline reads (its max_seq_length, as torch's uses)."""
    config = folder / "sentence_bert_config.json"
    length = json.loads(config.read_text()).get("max_seq_length") if config.is_file() else None
    if not length:
        raise EncoderExportError(f"{folder} names no max_seq_length in sentence_bert_config.json")
    return int(length)


def export_key(folder: Path) -> str:
    """A short digest of what determines the graph: the folder's files (size, mtime) and the exporter."""
    kinds = (".json", ".safetensors", ".bin")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in kinds)
    parts = {
        "files": [(str(p.relative_to(folder)), p.stat().st_size, int(p.stat().st_mtime)) for p in files],
        "torch": version("torch"),
        "onnxruntime": version("onnxruntime"),
        "graph": "mean-pooled, normalised",
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def exported_folder(cache_dir: Path, folder: Path, name: str) -> Path:
    """Where the export of the encoder `name` (its files in `folder`) lives in the cache."""
    return Path(cache_dir) / "onnx" / f"encoder-{name.replace('/', '--')}-{export_key(folder)}"


def ensure_exported(cache_dir: Path, folder: Path, name: str) -> Path:
    """The folder holding the encoder's float32 and int8 graphs, exporting them first when missing."""
    folder = Path(folder)
    reason = unsupported(folder)
    if reason:
        raise EncoderExportError(
            f"the encoder in {folder} cannot run on ONNX: {reason}; set HFCHAIN_ENCODER_RUNTIME=auto or "
            "torch to serve it on torch"
        )
    target = exported_folder(cache_dir, folder, name)
    if all((target / file).is_file() for file in FILES.values()):
        return target
    log.info("exporting the encoder %s to ONNX into %s: one time, about 20 s", name, target)
    started = time.perf_counter()
    _export_in_child(
        target,
        lambda staging: [str(folder), str(staging)],
        FILES.values(),
        f"exporting the encoder {folder} to ONNX failed; set HFCHAIN_ENCODER_RUNTIME=torch to serve it "
        "on torch",
    )
    log.info("exported the encoder %s to ONNX in %.1f s", name, time.perf_counter() - started)
    return target


def _export_in_child(
    target: Path,
    args: Callable[[Path], list[str]],
    outputs: Collection[str | Path],
    failure: str,
    copy: tuple[Path, ...] = (),
) -> None:
    """Run this module with `args(staging)` in a child process, then move the staging folder to `target`
    once every file in `outputs` is in it (an export that finished first elsewhere is kept)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's folder is private; the export is a cache anyone may read
        done = subprocess.run(
            [sys.executable, "-m", __name__, *args(staging)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not all((staging / file).is_file() for file in outputs):
            tail = (done.stderr or done.stdout)[-LOG_TAIL:]
            raise EncoderExportError(f"{failure} (exit {done.returncode}). Last output:\n{tail}")
        for file in copy:
            shutil.copyfile(file, staging / file.name)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not all((target / file).is_file() for file in outputs):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export(folder: Path, out: Path) -> None:
    """Write `out/encoder.onnx` (float32) and `out/encoder_int8.onnx` (dynamic int8) for `folder`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _trace(folder, _MeanPooled, "embeddings", out / FILES["onnx"])
    quantize_dynamic(out / FILES["onnx"], out / FILES["onnx-int8"], weight_type=QuantType.QInt8)


def export_hidden(folder: Path, out: Path) -> None:
    """Write the encoder's transformer alone (token vectors as `last_hidden_state`) to `out`."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    _trace(folder, _Hidden, "last_hidden_state", out)


def _trace(folder: Path, wrap: Any, output: str, out: Path) -> None:
    """Export `wrap(model)` for the encoder in `folder` to `out`, batch and sequence axes left free."""
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer

    warnings.simplefilter("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # eager attention exports as plain MatMul/Softmax, which ONNX Runtime runs faster than the exported SDPA
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    encoded = tokenizer(SAMPLE, padding=True, return_tensors="pt")
    names = [n for n in INPUTS if n in encoded]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    program = torch.onnx.export(
        wrap(model),
        kwargs={n: encoded[n] for n in names},
        dynamo=True,
        verbose=False,
        input_names=names,
        output_names=[output],
        dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
    )
    program.save(str(out))


def _MeanPooled(model: Any) -> Any:
    import torch

    class MeanPooled(torch.nn.Module):
        """The transformer, the mean of its token vectors over the mask, scaled to unit length."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return MeanPooled()


def ensure_browser_export(cache_dir: Path, folder: Path, name: str) -> Path:
    """The encoder laid out as transformers.js loads a model (config.json, tokenizer files, onnx/model.onnx
    giving `last_hidden_state`; the page pools and normalises), exporting it first when missing."""
    folder = Path(folder)
    target = Path(cache_dir) / "onnx" / f"browser-encoder-{name.replace('/', '--')}-{export_key(folder)}"
    if (target / "onnx" / "model.onnx").is_file():
        return target
    log.info("exporting the encoder %s for the browser into %s: one time, about 15 s", name, target)
    graph = Path("onnx") / "model.onnx"
    _export_in_child(
        target,
        lambda staging: ["--hidden", str(folder), str(staging / graph)],
        [graph],
        f"exporting the encoder {folder} for the browser failed",
        copy=tuple(folder / file for file in BROWSER_FILES if (folder / file).is_file()),
    )
    return target


def _Hidden(model: Any) -> Any:
    import torch

    class Hidden(torch.nn.Module):
        """The transformer's token vectors (one output, so the exported graph has one)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    return Hidden()


def load_onnx_encoder(folder: Path, cache_dir: Path, runtime: str, name: str) -> OnnxEncoder:
    """The encoder in `folder` on ONNX Runtime: float32 for `auto` and `onnx`, int8 for `onnx-int8`."""
    graphs = ensure_exported(cache_dir, folder, name)
    precision = "onnx-int8" if runtime == "onnx-int8" else "onnx"
    return OnnxEncoder(graphs / FILES[precision], folder)


class OnnxEncoder:
    """Unit vectors from an exported encoder graph; texts are tokenized, sorted by length and run in
    batches of at most `batch_tokens` padded tokens (less padding, and each call's memory is bounded)."""

    def __init__(self, graph: Path, folder: Path, batch_tokens: int = BATCH_TOKENS) -> None:
        import onnxruntime as ort
        from transformers import AutoConfig, AutoTokenizer

        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = False  # memory follows the batch (as the decoder's sessions)
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.max_tokens = max_seq_length(folder) - 2  # text tokens: less [CLS] and [SEP]
        self.dimensions = AutoConfig.from_pretrained(folder).hidden_size  # mean pooling keeps the width
        self.label = "onnx-int8" if graph.name == FILES["onnx-int8"] else "onnx-fp32"
        self.batch_tokens, self.graph = batch_tokens, graph
        self._lock = threading.Lock()  # the tokenizer's padding and truncation state is not thread-safe

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids with the special tokens, cut at the encoder's input length."""
        with self._lock:
            return self.tokenizer(texts, truncation=True, max_length=self.max_tokens + 2)["input_ids"]

    def embed(self, texts: list[str]) -> np.ndarray:
        """A (len(texts), dim) float32 array of unit vectors, in the order of `texts`."""
        ids = self.ids(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        vectors: list[np.ndarray | None] = [None] * len(ids)
        for batch in _batches(order, ids, self.batch_tokens):
            for i, vector in zip(batch, self._run([ids[i] for i in batch]), strict=True):
                vectors[i] = vector
        return np.stack(vectors).astype(np.float32)

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)], mask[i, : len(row)] = row, 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        return self.session.run(["embeddings"], {n: feed[n] for n in self.inputs})[0]


def _batches(order: list[int], ids: list[list[int]], budget: int) -> list[list[int]]:
    """Consecutive runs of `order` (sorted by length) whose padded size stays within `budget` tokens."""
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * len(ids[i]) <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


if __name__ == "__main__":  # the child process of ensure_exported and ensure_browser_export
    if sys.argv[1] == "--hidden":
        export_hidden(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        export(Path(sys.argv[1]), Path(sys.argv[2]))
