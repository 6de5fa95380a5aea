"""OnnxCausalLM: an exported decoder graph in an ONNX Runtime session, shaped for hfchain's engine.

The graph (onnxruntime-genai's builder) takes input_ids, attention_mask and each layer's past keys and
values, and returns the last position's logits and the present keys and values. Its attention
(GroupQueryAttention) reads each row's length from the mask and applies rotary positions itself, so
every row's tokens sit at the start of its cache: rows are right-padded (decoder.py).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def check_provider(provider: str) -> None:
    """Fail at once, naming the package, when onnxruntime lacks the execution provider asked for."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if PROVIDERS[provider] not in available:
        raise RuntimeError(
            f"HFCHAIN_ONNX_PROVIDER={provider} needs {PROVIDERS[provider]}, which this onnxruntime lacks "
            f"(it has {', '.join(available)}): pip install onnxruntime-gpu for CUDA, or use cpu"
        )


class OnnxCausalLM:
    """What the engine needs from a model (config, generation config, device), run by ONNX Runtime."""

    def __init__(
        self,
        folder: Path,
        source: str,
        *,
        precision: str,
        provider: str = "cpu",
        threads: int | None = None,
        batch_invariant: bool = True,
    ) -> None:
        import onnxruntime as ort
        import torch
        from transformers import AutoConfig, GenerationConfig

        check_provider(provider)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # its warnings about unused initializers are noise in server logs
        # an arena keeps its high-water mark for good and creeps with every new shape (+90 MiB over 1,000
        # decode shapes); without it memory follows the batch, at no measurable cost (RESULTS.md)
        options.enable_cpu_mem_arena = False
        providers = list(dict.fromkeys([PROVIDERS[provider], "CPUExecutionProvider"]))
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=providers)
        self.config = AutoConfig.from_pretrained(source)
        self.generation_config = GenerationConfig.from_model_config(self.config)
        with contextlib.suppress(OSError):  # without generation_config.json: the config's eos/bos ids
            self.generation_config = GenerationConfig.from_pretrained(source)
        self.device = torch.device("cpu")  # logits come back to the host: sampling runs there
        self.precision, self.provider, self.folder, self.source = precision, provider, folder, source
        inputs = {i.name: i for i in self.session.get_inputs()}
        layers = sum(name.startswith("past_key_values.") for name in inputs) // 2
        self.past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
        self.present_names = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
        # float32 on CPU; the builder's CUDA graphs take float16 keys and values
        self.kv_dtype = np.float16 if "float16" in inputs[self.past_names[0]].type else np.float32
        self.kv_element_size = np.dtype(self.kv_dtype).itemsize
        config = self.config.get_text_config()
        self.kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        # int4 matmuls with int8 activations take another kernel when only one row is computed, so a
        # row's logits would depend on what else is in the batch: never compute exactly one row.
        self.min_rows = 2 if batch_invariant and precision == "int4" else 1

    def empty(self, rows: int) -> list[np.ndarray]:
        """Past keys and values holding no tokens, for `rows` rows."""
        return [np.zeros((rows, self.kv_heads, 0, self.head_dim), self.kv_dtype) for _ in self.past_names]

    def forward(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list]:
        """(last position's logits (rows, vocab), present keys and values) for ids (rows, new tokens)."""
        logits, present = self.forward_positions(ids, mask, past, 1)
        return logits[:, -1, :], present

    def forward_positions(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray], count: int):
        """(logits of the last `count` positions (rows, count, vocab), present keys and values)."""
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        feed["logits_positions"] = np.arange(-count, 0, dtype=np.int64)
        feed.update(zip(self.past_names, map(np.ascontiguousarray, past), strict=True))
        logits, *present = self.session.run(["logits", *self.present_names], feed)
        return logits.astype(np.float32, copy=False), present

    def prefill(self, tokens: list[int], past: list[np.ndarray] | None = None, reused: int = 0):
        """One row's prompt (after `reused` tokens already in `past`): its logits and present."""
        new = np.asarray([tokens[reused:]], np.int64)
        past = past if past is not None else self.empty(1)
        if new.size < self.min_rows:  # a one-token prompt: computed as two identical rows
            logits, present = self.forward(
                np.repeat(new, 2, 0), np.ones((2, len(tokens)), np.int64), [np.repeat(p, 2, 0) for p in past]
            )
            return logits[:1], [p[:1] for p in present]
        return self.forward(new, np.ones((1, len(tokens)), np.int64), past)

    def label_logprobs(self, prefix: list[int], labels: list[list[int]]) -> list[float]:
        """Mean log-probability of each label's tokens after `prefix` (the llm /classify method)."""
        last, past = self.prefill(prefix)
        scores = []
        for ids in labels:
            logits, state, seen = [last[0]], past, len(prefix)
            for token in ids[:-1]:  # one position's logits per call: the label goes in a token at a time
                seen += 1
                step, state = self.forward(np.asarray([[token]]), np.ones((1, seen), np.int64), state)
                logits.append(step[0])
            table = np.stack(logits).astype(np.float64)
            table -= table.max(-1, keepdims=True)
            logp = table - np.log(np.exp(table).sum(-1, keepdims=True))
            scores.append(float(logp[np.arange(len(ids)), ids].mean()))
        return scores

    def new_decoder(self, pad_token_id: int, store: Any) -> Any:
        """The engine's decoder for this model (right-padded rows over numpy caches)."""
        from chains.backends.onnx.decoder import OnnxDecoder

        return OnnxDecoder(self, pad_token_id, store)
