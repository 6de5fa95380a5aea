"""Prefill of one long prompt in process: ONNX fp32 (the default) against torch, and where ONNX spends it.

For each prompt length: the time to the first token's logits on each runtime (best of `--rounds`,
alternating), their ratio, ONNX Runtime's time per operator (its profiler), the share of the matrix
products, and the prompt fed in chunks over the cache (same logits? how fast?). The embedded model, 2
threads each. No server: this isolates the model from HTTP and the engine.

Usage: .venv/bin/python benchmarks/prefill.py [--lengths 1000,2000] [--rounds 3] [--chunks 512,256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THREADS = 2


def load(cache_dir: Path):
    """(ONNX folder, torch model) for the embedded model, converting and exporting it when needed."""
    import torch
    from transformers import AutoModelForCausalLM

    from chains.backends.embedded import ensure_converted
    from chains.backends.onnx.export import ensure_exported

    source = str(ensure_converted(cache_dir))
    folder = ensure_exported(cache_dir, source, "fp32", "cpu")
    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    return folder, model


def session(folder: Path, profile: bool = False):
    """An ONNX Runtime session set up as the service sets it up (no arena), optionally profiling."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.enable_cpu_mem_arena = THREADS, False
    options.log_severity_level, options.enable_profiling = 3, profile
    return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])


def onnx_prefill(sess, ids: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """Last position's logits for ids (1, n), fed `chunk` tokens at a time over the cache."""
    names = [i.name for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    past = [np.zeros((1, 3, 0, 64), np.float32) for _ in names]  # the embedded model's kv heads and dim
    chunk, done = chunk or ids.shape[1], 0
    while done < ids.shape[1]:
        new = ids[:, done : done + chunk]
        done += new.shape[1]
        feed = {"input_ids": new, "attention_mask": np.ones((1, done), np.int64)}
        feed["logits_positions"] = np.array([-1], np.int64)
        feed.update(zip(names, past, strict=True))
        logits, *past = sess.run(["logits", *(n.replace("past_key_values", "present") for n in names)], feed)
    return logits[0, -1]


def torch_prefill(model, ids: np.ndarray) -> np.ndarray:
    """Last position's logits for ids (1, n) on torch (sdpa attention)."""
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(ids), use_cache=True, logits_to_keep=1).logits[0, -1].numpy()


def best(fn, rounds: int) -> float:
    """Fastest of `rounds` calls, in seconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def operator_split(folder: Path, ids: np.ndarray) -> dict[str, float]:
    """Seconds per ONNX operator type for one prefill (after a warm-up run)."""
    sess = session(folder, profile=True)
    onnx_prefill(sess, ids)
    onnx_prefill(sess, ids)
    report = Path(sess.end_profiling())
    events = json.loads(report.read_text())
    report.unlink()
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    start, end = runs[-1]["ts"], runs[-1]["ts"] + runs[-1]["dur"]
    split: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and start <= e["ts"] <= end:
            split[e["args"]["op_name"]] += e["dur"] / 1e6
    return dict(split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1000,2000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", default="512,256")
    args = parser.parse_args()
    from chains.settings import default_cache_dir

    folder, model = load(Path(os.environ.get("HFCHAIN_CACHE_DIR") or default_cache_dir()))
    sess = session(folder)
    vocab = model.config.vocab_size
    print("| prompt tokens | torch s | ONNX fp32 s | ONNX / torch | MatMul share | attention share |"
          + "".join(f" chunks of {c}: s, same logits |" for c in args.chunks.split(",")))  # fmt: skip
    print("|---|---|---|---|---|---|" + "---|" * len(args.chunks.split(",")))
    for length in map(int, args.lengths.split(",")):
        ids = np.random.RandomState(length).randint(0, vocab, (1, length)).astype(np.int64)
        whole = onnx_prefill(sess, ids)
        torch_prefill(model, ids)
        onnx_s = best(lambda ids=ids: onnx_prefill(sess, ids), args.rounds)
        torch_s = best(lambda ids=ids: torch_prefill(model, ids), args.rounds)
        split = operator_split(folder, ids)
        total = sum(split.values())
        cells = []
        for chunk in map(int, args.chunks.split(",")):
            same = np.array_equal(onnx_prefill(sess, ids, chunk), whole)
            seconds = best(lambda ids=ids, chunk=chunk: onnx_prefill(sess, ids, chunk), args.rounds)
            cells.append(f" {seconds:.2f}, {'yes' if same else 'no'} |")
        print(f"| {length:,} | {torch_s:.2f} | {onnx_s:.2f} | {onnx_s / torch_s:.2f} | "
              f"{split.get('MatMul', 0) / total:.0%} | {split.get('GroupQueryAttention', 0) / total:.0%} |"
              + "".join(cells))  # fmt: skip
        print(
            f"  ONNX without attention at all would take >= {split.get('MatMul', 0):.2f} s "
            f"= {split.get('MatMul', 0) / torch_s:.2f}x torch (MatMul alone)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
