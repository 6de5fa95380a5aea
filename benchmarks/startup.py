"""Start-up time of `hfchain serve`: process start -> first 200 from /health and /ready.

Warm: the model is already converted in a temp cache dir (primed by one unmeasured run).
Bare: in the same rounds as warm, a bare `python -c` that imports torch + transformers and loads the same
cached folder (tokenizer and model) with from_pretrained, timed from process start to its "loaded" line;
warm / bare is the start-up overhead of everything that is not the model (a ratio that holds across
machines). Cold: a fresh empty cache dir per run, so each run pays the one-time conversion.
Usage: .venv/bin/python benchmarks/startup.py [--runs 5] [--cold-runs 5] [--timeout 120]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POLL_S = 0.05


def free_port() -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(cache_dir: Path, port: int) -> dict[str, str]:
    """The caller's environment without HFCHAIN_* settings, plus the port and cache dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFCHAIN_")}
    return {**env, "HFCHAIN_PORT": str(port), "HFCHAIN_CACHE_DIR": str(cache_dir)}


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server by its own PID and wait for it (kill if it hangs)."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(cache_dir: Path, timeout: float) -> tuple[float, float]:
    """Start one server and return seconds to the first 200 from /health and from /ready."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        env = server_env(cache_dir, port)
        proc = subprocess.Popen([sys.executable, "-m", "server"], cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            return poll(proc, f"http://127.0.0.1:{port}", started, timeout)
        except (RuntimeError, TimeoutError):
            log.seek(0)
            print(log.read().decode(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            stop(proc)


def poll(proc: subprocess.Popen, base: str, started: float, timeout: float) -> tuple[float, float]:
    """Every 50 ms: /health until 200, then /ready until 200; seconds since `started` for each."""
    health = None
    with httpx.Client(timeout=1.0) as client:
        while (elapsed := time.perf_counter() - started) < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                ok = client.get(base + ("/ready" if health is not None else "/health")).status_code == 200
            except httpx.TransportError:
                ok = False
            if ok and health is not None:
                return health, elapsed
            health = elapsed if ok else health
            time.sleep(0 if ok else POLL_S)
    raise TimeoutError(f"{base} not ready after {timeout:.0f} s")


BARE_LOAD = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
AutoTokenizer.from_pretrained(sys.argv[1])
AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
print("loaded", flush=True)
"""


def bare_load(cache_dir: Path, timeout: float) -> float:
    """Seconds from process start to a bare from_pretrained of the cached model (tokenizer and model)."""
    from chains.backends.embedded import cache_folder

    started = time.perf_counter()
    command = [sys.executable, "-c", BARE_LOAD, str(cache_folder(cache_dir))]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "loaded":
            raise RuntimeError(f"the bare load failed (exit {proc.wait(timeout)})")
        return time.perf_counter() - started
    finally:
        stop(proc)


def series(label: str, runs: int, cache_dir: Path | None, timeout: float) -> list[tuple[float, float]]:
    """`runs` measurements, in `cache_dir` if given, else each in a fresh empty temp dir."""
    results = []
    for i in range(runs):
        if cache_dir is None:
            with tempfile.TemporaryDirectory(prefix="hfchain-cold-") as fresh:
                results.append(measure(Path(fresh), timeout))
        else:
            results.append(measure(cache_dir, timeout))
        print(f"{label} run {i + 1}/{runs}: /health {results[-1][0]:.2f} s, /ready {results[-1][1]:.2f} s")
    return results


def table(rows: dict[str, list[tuple[float, float]]]) -> str:
    """A markdown table of median/min/max seconds per case and endpoint."""
    lines = ["| case | runs | first 200 from | median s | min s | max s |", "|---|---|---|---|---|---|"]
    for case, results in rows.items():
        for index, path in enumerate(("/health", "/ready")):
            values = [r[index] for r in results]
            stats = " | ".join(f"{v:.2f}" for v in (statistics.median(values), min(values), max(values)))
            lines.append(f"| {case} | {len(values)} | {path} | {stats} |")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run the warm then the cold series, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="warm runs (default 5)")
    parser.add_argument("--cold-runs", type=int, default=5, help="cold runs (default 5; 0 skips)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hfchain-warm-") as warm_dir:
        print("priming the warm cache (unmeasured run, converts the model) ...")
        measure(Path(warm_dir), args.timeout)
        bare, warm = [], []
        for i in range(args.runs):  # interleaved: both see the same machine load
            bare.append(bare_load(Path(warm_dir), args.timeout))
            warm.append(measure(Path(warm_dir), args.timeout))
            print(
                f"round {i + 1}/{args.runs}: bare load {bare[-1]:.2f} s, "
                f"/health {warm[-1][0]:.2f} s, /ready {warm[-1][1]:.2f} s"
            )
        rows = {"warm": warm}
    if args.cold_runs:
        rows["cold"] = series("cold", args.cold_runs, None, args.timeout)
    print()
    print(table(rows))
    ready, load = statistics.median(r[1] for r in warm), statistics.median(bare)
    print(f"\nbare from_pretrained load: median {load:.2f} s (min {min(bare):.2f}, max {max(bare):.2f})")
    print(f"warm /ready / bare load: {ready / load:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
