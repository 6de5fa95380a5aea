"""Export a causal LM to ONNX once, with onnxruntime-genai's model builder, into hfchain's cache.

The builder runs in a child process (it loads the whole torch model; the server does not keep that
memory), writes into a scratch folder, and the folder is renamed into place when it is complete, so a
crash mid-export never leaves a half-written model that a later start would load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

log = logging.getLogger(__name__)

BUILDER = "onnxruntime_genai.models.builder"
# Only the last position's logits are computed in a prefill (a 1,000-token prompt: ~20% less work).
EXTRA_OPTIONS = ("prune_lm_head=true",)
# hfchain's edit of the built graph: the pruned head reads the positions an input names (speculation
# checks several drafts in one pass), not only the last one
POSITIONS_INPUT = "logits_positions"
LOG_TAIL = 800


class ExportError(RuntimeError):
    """The builder failed; the message holds what it printed last."""


def builder_version() -> str:
    """The installed onnxruntime-genai (the CPU or the CUDA package)."""
    for package in ("onnxruntime-genai", "onnxruntime-genai-cuda"):
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    raise ExportError("HFCHAIN_RUNTIME=onnx needs onnxruntime-genai's model builder: run `make install`")


def local_folder(source: str) -> str:
    """A folder holding the model's files: `source` itself, or a hub id's snapshot in the Hugging Face cache
    (downloaded once, found offline later; its path names the revision, so a new revision is a new export)."""
    if Path(source).is_dir():
        return source
    from huggingface_hub import snapshot_download

    return snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"])


def export_key(source: str, precision: str, provider: str) -> str:
    """A short digest of what determines the exported graph: the source model, options, builder."""
    parts = {
        "source": source,
        "precision": precision,
        "provider": provider,
        "options": EXTRA_OPTIONS,
        "edits": (POSITIONS_INPUT,),
        "builder": builder_version(),
    }
    folder = Path(source)
    if folder.is_dir():  # a local folder: its config and weight files (size, mtime) stand for its content
        files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors", ".bin"))
        parts["files"] = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def exported_folder(cache_dir: Path, source: str, precision: str, provider: str) -> Path:
    """Where the export of `source` with these options lives in the cache."""
    name = Path(source).name if Path(source).is_dir() else source.replace("/", "--")
    key = export_key(local_folder(source), precision, provider)
    return Path(cache_dir) / "onnx" / f"{name}-{precision}-{provider}-{key}"


def ensure_exported(cache_dir: Path, source: str, precision: str, provider: str) -> Path:
    """The exported model's folder, exporting it first when the cache does not hold it."""
    target = exported_folder(cache_dir, source, precision, provider)
    if (target / "model.onnx").is_file():
        log.info("ONNX model %s (%s, %s) from the cache: %s", source, precision, provider, target)
        return target
    log.info("exporting %s to ONNX (%s, %s) into %s: one time, about 20 s per 100M parameters",
             source, precision, provider, target)  # fmt: skip
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _build(local_folder(source), staging / "model", precision, provider, staging / "scratch")
        try:
            (staging / "model").rename(target)
        except OSError:  # another replica finished first: keep theirs
            if not (target / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    seconds = time.perf_counter() - started
    log.info("exported %s to ONNX %s in %.1f s (%.0f MB)", source, precision, seconds, size)
    return target


def _build(source: str, out: Path, precision: str, provider: str, scratch: Path) -> None:
    """Run the builder in a child process; raise ExportError with its last output when it fails."""
    command = [sys.executable, "-m", BUILDER, "-m", source, "-i", source, "-o", str(out), "-p", precision]
    command += ["-e", provider, "-c", str(scratch), "--extra_options", *EXTRA_OPTIONS]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not (out / "model.onnx").is_file():
        tail = (done.stderr or done.stdout)[-LOG_TAIL:]
        raise ExportError(
            f"exporting {source} to ONNX ({precision}, {provider}) failed: onnxruntime-genai's builder "
            f"exited with {done.returncode}. Use HFCHAIN_RUNTIME=torch for this model, or check that the "
            f"builder supports its architecture. Its last output:\n{tail}"
        )
    select_positions(out / "model.onnx")


def select_positions(path: Path) -> None:
    """Let the pruned LM head compute the logits of the positions named by an input (negative: from the
    end, [-1] for the last one) instead of the last position only; the weights file is not touched."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)
    nodes = {node.name: node for node in model.graph.node}
    gather, unsqueeze = nodes.get("/lm_head/prune/Gather"), nodes.get("/lm_head/prune/Unsqueeze")
    if gather is None or unsqueeze is None:
        raise ExportError(f"{path}: no pruned LM head (prune_lm_head) to edit; the builder changed its graph")
    dropped = {gather.input[1], *unsqueeze.input[1:]}
    gather.input[1] = POSITIONS_INPUT  # Gather(axis=1) with a 1-D index: (batch, positions, hidden)
    unsqueeze.op_type = "Identity"
    del unsqueeze.input[1:]
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name not in dropped - used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    model.graph.input.append(
        helper.make_tensor_value_info(POSITIONS_INPUT, TensorProto.INT64, ["num_logits"])
    )
    edited = {gather.output[0], unsqueeze.output[0]}
    shapes = [info for info in model.graph.value_info if info.name not in edited]  # ranks changed
    del model.graph.value_info[:]
    model.graph.value_info.extend(shapes)
    for output in model.graph.output:
        if output.name == "logits":
            output.type.tensor_type.shape.dim[1].Clear()
            output.type.tensor_type.shape.dim[1].dim_param = "num_logits"
    onnx.save(model, str(path))  # the graph only: its external data keeps the builder's file
