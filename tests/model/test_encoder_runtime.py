"""The packaged encoder on ONNX Runtime: torch's vectors (float32) in the callers' order however the texts
are batched, its limits, a cached export, int8 on request, and torch where the export is not supported."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from chains.backends.encoder import Encoder, encoder_folder
from chains.backends.onnx.encoder import EncoderExportError, OnnxEncoder, ensure_exported
from chains.settings import default_cache_dir

TEXTS = [
    "The cat sat on the mat.",
    "Stock markets fell sharply today after the central bank raised interest rates again. " * 3,
    "ok",
    "word " * 600,  # over the encoder's 256 tokens: cut, as torch cuts it
    "A kitten rested on a rug while the rain kept falling over the quiet town.",
]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return Encoder(runtime="torch").embed(TEXTS)


@pytest.fixture(scope="module")
def onnx_encoder() -> Encoder:
    return Encoder(runtime="onnx")


def test_onnx_fp32_gives_torchs_vectors_in_order_however_batched(onnx_encoder, torch_vectors):
    whole = onnx_encoder.embed(TEXTS)
    assert onnx_encoder.runtime_label == "onnx-fp32"
    assert whole.dtype == np.float32 and whole.shape == torch_vectors.shape
    assert np.abs(whole - torch_vectors).max() < 1e-5
    # a tiny budget: every text in a call of its own, sorted by length, put back in the callers' order
    small = OnnxEncoder(onnx_encoder.onnx.graph, encoder_folder(), batch_tokens=8)
    assert np.abs(small.embed(TEXTS) - whole).max() < 1e-5
    one_by_one = np.concatenate([onnx_encoder.embed([t]) for t in TEXTS])
    assert np.abs(one_by_one - whole).max() < 1e-5
    assert onnx_encoder.embed([]).shape == (0, 384)


def test_limits_and_tokenizer_are_torchs(onnx_encoder):
    torch = Encoder(runtime="torch")
    limits = (onnx_encoder.max_tokens, onnx_encoder.dimensions)
    assert limits == (torch.max_tokens, torch.dimensions) == (254, 384)
    assert onnx_encoder.tokens.count_text(TEXTS[1]) == torch.tokens.count_text(TEXTS[1])


def test_int8_is_opt_in_and_close_to_torch(torch_vectors):
    int8 = Encoder(runtime="onnx-int8")
    vectors = int8.embed(TEXTS)
    assert int8.runtime_label == "onnx-int8"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    cosine = (vectors * torch_vectors).sum(1)
    assert (cosine > 0.8).all() and (cosine < 0.99999).any()  # near torch's, not equal to it
    nearest = (vectors @ torch_vectors.T).argmax(1)
    assert list(nearest) == list(range(len(TEXTS)))  # each text still finds itself


def test_the_export_is_cached_and_reused(onnx_encoder):
    graphs = onnx_encoder.onnx.graph.parent
    stamps = {p.name: p.stat().st_mtime_ns for p in graphs.iterdir()}
    again = ensure_exported(default_cache_dir(), encoder_folder(), onnx_encoder.name)
    assert again == graphs and {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == stamps
    assert sorted(stamps) == ["encoder.onnx", "encoder_int8.onnx"]
    assert not list(graphs.parent.glob(f".{graphs.name}-*"))  # no scratch folder left behind


@pytest.fixture
def cls_pooled(tmp_path):
    """A copy of the packaged encoder that pools by its [CLS] vector: not what the export supports."""
    folder = tmp_path / "cls-encoder"
    shutil.copytree(encoder_folder(), folder)
    config = folder / "1_Pooling" / "config.json"
    pooling = json.loads(config.read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    config.write_text(json.dumps(pooling))
    return folder


def test_auto_serves_an_unsupported_encoder_on_torch_saying_why(cls_pooled, tmp_path, caplog):
    auto = Encoder(str(cls_pooled), runtime="auto", cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="chains.backends.encoder"):
        vectors = auto.embed(["hello there"])
    assert auto.runtime_label == "torch" and vectors.shape == (1, 384)
    assert "runs on torch" in caplog.text and "not mean pooling" in caplog.text
    with pytest.raises(EncoderExportError, match=r"not mean pooling.*HFCHAIN_ENCODER_RUNTIME=auto or torch"):
        Encoder(str(cls_pooled), runtime="onnx", cache_dir=tmp_path / "cache").embed(["hello"])
