"""The console in headless Chromium: the page's load (time, bytes), then a trained classifier and the
sentence encoder run in the page with transformers.js (WebAssembly) against the server's routes called
from the same page one text at a time (texts/s), and what the first in-browser run downloads.

Usage: .venv/bin/python benchmarks/console.py [--texts 40]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_api import start_server  # noqa: E402
from benchmarks.startup import stop  # noqa: E402
from tests.browser.conftest import CHROMIUM_ARGS, chromium_path  # noqa: E402

REVIEWS = ROOT / "tests" / "fixtures" / "reviews.csv"
BYTES = "performance.getEntries().reduce((sum, e) => sum + (e.transferSize || 0), 0)"
LOOP = """async ([texts, run]) => {
  const times = [];
  for (const text of texts) {
    const started = performance.now();
    await run(text);
    times.push(performance.now() - started);
  }
  return times;
}"""
RUNS = {
    "in this browser (transformers.js, wasm)": "t => window.hfchain.classifyInBrowser(NAME, t)",
    "server /classify/invoke (fetch)": """t => fetch('/classify/invoke', {method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({input: {text: t, model: NAME}})}).then(r => r.json())""",
}
EMBEDS = {
    "in this browser (transformers.js, wasm)": "t => window.hfchain.embedInBrowser([t])",
    "server /v1/embeddings (fetch)": """t => fetch('/v1/embeddings', {method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({input: [t], model: 'm'})}).then(r => r.json())""",
}


def train(url: str) -> str:
    """A classifier trained on the fixture and exported to ONNX (as the console trains it)."""
    name = "bench-reviews"
    rows = [{"text": r["review"], "label": r["sentiment"]} for r in csv.DictReader(REVIEWS.open())]
    body = {"name": name, "rows": rows, "epochs": 2, "export": "onnx"}
    httpx.post(f"{url}/classifiers", json=body, timeout=60).raise_for_status()
    while (state := httpx.get(f"{url}/classifiers/{name}").json())["status"] == "training":
        time.sleep(1)
    assert state["status"] == "done", state
    return name


def throughput(page, runs: dict[str, str], name: str, texts: list[str]) -> None:
    for label, run in runs.items():
        function = page.evaluate_handle(f"NAME => ({run})", name)
        page.evaluate(LOOP, [texts[:2], function])  # warm: loaded, compiled
        times = page.evaluate(LOOP, [texts, function])
        rate = len(times) / (sum(times) / 1000)
        print(f"| {label} | {rate:.1f} | {statistics.median(times):.1f} |")


def _without_isolation(route) -> None:
    response = route.fetch()
    headers = {k: v for k, v in response.headers.items() if not k.startswith("cross-origin-")}
    route.fulfill(response=response, headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=40)
    parser.add_argument("--no-isolation", action="store_true", help="serve / without COOP/COEP headers")
    args = parser.parse_args()
    texts = [r["review"] for r in csv.DictReader(REVIEWS.open())][: args.texts]
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as data:
        proc, url = start_server(data, 16)
        try:
            name = train(url)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                loads = []
                for _ in range(5):  # fresh contexts: nothing cached
                    page = browser.new_context().new_page()
                    if args.no_isolation:  # the page without COOP/COEP: WebAssembly runs on one thread
                        page.route(f"{url}/", _without_isolation)
                    started = time.perf_counter()
                    page.goto(url)
                    page.locator("#collection-summary").filter(has_text="No collection").wait_for()
                    loads.append(time.perf_counter() - started)
                ready = statistics.median(loads)
                loaded, isolated = page.evaluate(BYTES), page.evaluate("crossOriginIsolated")
                started = time.perf_counter()
                page.evaluate("n => window.hfchain.classifyInBrowser(n, 'warm up')", name)
                first = time.perf_counter() - started
                after_classifier = page.evaluate(BYTES)
                started = time.perf_counter()
                page.evaluate("() => window.hfchain.embedInBrowser(['warm up'])")
                first_embed = time.perf_counter() - started
                after_encoder = page.evaluate(BYTES)
                print(f"\nConsole page in headless Chromium ({len(texts)} texts, one at a time)")
                print("\n| what | time | bytes over the wire |\n|---|---|---|")
                what = "page load to the first panel drawn (median of 5)"
                print(f"| {what} | {ready * 1000:.0f} ms | {loaded / 1e3:.0f} KB |")
                mib = (after_classifier - loaded) / 2**20
                what = "first in-browser classification (library, wasm, model)"
                print(f"| {what} | {first:.2f} s | {mib:.1f} MiB |")
                mib = (after_encoder - after_classifier) / 2**20
                print(f"| first in-browser embedding (encoder model) | {first_embed:.2f} s | {mib:.1f} MiB |")
                print(f"\ncross-origin isolated (WebAssembly threads): {isolated}")
                print("\nClassification (fine-tuned MiniLM, ONNX fp32)")
                print("\n| where | texts/s | p50 ms |\n|---|---|---|")
                throughput(page, RUNS, name, texts)
                print("\nEmbedding (all-MiniLM-L6-v2)\n\n| where | texts/s | p50 ms |\n|---|---|---|")
                throughput(page, EMBEDS, name, texts)
                browser.close()
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
