"""What the ONNX runtime costs in answers: greedy continuations of a fixed prompt set on ONNX fp32 and int4,
compared token by token with the torch float32 model (in-process, the embedded model, chat template).

Prints, per runtime: the share of prompts whose first N generated tokens equal torch's (N = 1, 8, 16, 32),
the mean length of the common prefix, and a few replies side by side.

    .venv/bin/python benchmarks/onnx_quality.py [--tokens 32] [--examples 3]

The classification and tool-call benchmarks run on a runtime through the environment, e.g.
`HFCHAIN_RUNTIME=onnx .venv/bin/python benchmarks/tools.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chains import build_backend, load_settings
from chains.backends.engine import GenerationParams

PROMPTS = [
    "What is the capital of France?",
    "Name three fruits.",
    "Write a haiku about rain.",
    "How do I boil an egg?",
    "Why is the sky blue?",
    "Give me a tip for learning a new language.",
    "What is photosynthesis?",
    "Explain what a computer program is to a child.",
    "What are the primary colours?",
    "Write one sentence about the ocean.",
    "How many days are in a leap year?",
    "What does a doctor do?",
    "Suggest a name for a pet cat.",
    "What is the boiling point of water?",
    "Describe a sunset in two sentences.",
    "What is the largest planet in the solar system?",
    "How do plants drink water?",
    "Tell me a fun fact about elephants.",
    "What is 12 plus 7?",
    "Write a short greeting for a birthday card.",
    "What is the difference between weather and climate?",
    "Name a famous painter.",
    "How do you make a cup of tea?",
    "What is gravity?",
    "List three things you can do on a rainy day.",
    "What language is spoken in Brazil?",
    "Why do we need sleep?",
    "What is a noun?",
    "Give me a synonym for happy.",
    "How does a bicycle work?",
    "What is the moon made of?",
    "Write a two-line poem about winter.",
    "What is the main ingredient of bread?",
    "Who wrote Romeo and Juliet?",
    "What should I pack for a picnic?",
    "How do bees make honey?",
    "What is a volcano?",
    "Explain recycling in one sentence.",
    "What is the speed of light, roughly?",
    "Give one reason to exercise.",
]
RUNTIMES = {"onnx-fp32": {"runtime": "onnx", "onnx_precision": "fp32"}, "onnx-int4": {"runtime": "onnx"}}


def continuations(overrides: dict, tokens: int) -> tuple[list[list[int]], list[str], float]:
    """Greedy token ids and texts for every prompt (one batch per runtime), and the seconds it took."""
    backend = build_backend(load_settings(backend="local", model=None, kv_cache_bytes=0, **overrides))
    backend.engine.load()
    model = backend.engine
    try:
        prompts = [model.tokens.chat_ids([{"role": "user", "content": p}]) for p in PROMPTS]
        started = time.perf_counter()
        replies = model.generate(prompts, GenerationParams(max_new_tokens=tokens))
        seconds = time.perf_counter() - started
        texts = [r.text for r in replies]
        return [model.tokenizer(t, add_special_tokens=False).input_ids for t in texts], texts, seconds
    finally:
        backend.stop()


def common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--examples", type=int, default=3)
    args = parser.parse_args()
    base_ids, base_texts, base_seconds = continuations({}, args.tokens)
    marks = [n for n in (1, 8, 16, 32) if n <= args.tokens]
    print(f"{len(PROMPTS)} chat prompts, greedy, {args.tokens} new tokens, against torch float32\n")
    print(
        "| runtime | " + " | ".join(f"first {n} equal" for n in marks) + " | mean common prefix | batch s |"
    )
    print("|---|" + "---|" * (len(marks) + 2))
    print("| torch fp32 | " + " | ".join("100%" for _ in marks) + f" | {args.tokens} | {base_seconds:.1f} |")
    samples = {}
    for name, overrides in RUNTIMES.items():
        ids, texts, seconds = continuations(overrides, args.tokens)
        prefixes = [common(a, b) for a, b in zip(base_ids, ids, strict=True)]
        cells = []
        for n in marks:  # replies that end (EOS) before n tokens count when they end at the same token
            equal = sum(a[:n] == b[:n] for a, b in zip(base_ids, ids, strict=True))
            cells.append(f"{100 * equal / len(PROMPTS):.0f}%")
        mean = sum(prefixes) / len(prefixes)
        print(f"| {name} | " + " | ".join(cells) + f" | {mean:.1f} | {seconds:.1f} |")
        samples[name] = texts
    print()
    for i in range(args.examples):
        print(f"- {PROMPTS[i]!r}\n  torch:     {base_texts[i]!r}")
        for name, texts in samples.items():
            print(f"  {name}: {texts[i]!r}")


if __name__ == "__main__":
    main()
