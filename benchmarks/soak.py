"""Soak: the server's resident memory under long mixed traffic (issue 28).

Starts its own `python -m server` on 127.0.0.1 (the defaults, plus any `--env KEY=VALUE`; its data dir a
temp dir, its log kept in a file named at the start), records the resident memory of the server and its
children when /ready first answers 200 ("ready RSS"), sends each request kind once ("warm RSS"), then
runs N closed-loop clients (httpx, one thread each) for M minutes, each picking kinds from a seeded mix:

  chat         /v1/chat/completions, short prompts of varied length
  chat_long    the same with a distinct ~500-700-word prompt each time (new prefix-cache entries)
  stream_drop  a streamed chat (/v1 or /chat/stream) dropped after 3 events
  tool_call    /v1/chat/completions with `tools` and `tool_choice` naming one of them
  classify     /classify/invoke (embedding, sometimes llm, multi-label; the trained classifier once there)
  session      a turn on one of a few sessions (/chat/invoke session_id or /v1 x-session-id): the history
               grows; a session is deleted and started afresh after --session-turns turns
  summarize    /summarize/invoke on a distinct 150-600-word text
  batch        /generate/batch with 2-4 prompts
  malformed    bad bodies on every route (bad JSON, non-UTF-8, bad knobs, bad roles, ...): 4xx expected

Once, halfway, a small classifier is trained over HTTP (POST /classifiers, 40 rows, 1 epoch). Every
--sample seconds it records the RSS and the /metrics lines `hfchain_kv_*` and `hfchain_prefix_cache_tokens`.
At the end: the samples, per-kind counts and latencies, and the verdict (ready RSS, steady-state RSS = the
largest over the last half, the KV bytes, the least-squares RSS slope over the last half, requests per
minute) against the targets: steady <= ready + 1.1 x KV bytes, slope <= 1 % of RSS per 10 minutes, no
server errors (5xx or transport errors). RSS is the server process plus its children (/proc VmRSS); the
samples taken while the training worker process lives are shown but left out of the steady state checked
and of the slope (the worker's memory goes with it). Every request has a timeout; the server is stopped by
its PID at the end and on Ctrl-C or SIGTERM.

Usage: .venv/bin/python benchmarks/soak.py [--minutes 30] [--clients 4] [--sample 30] [--seed 0]
    [--env HFCHAIN_KEY=VALUE ...] [--kv-bytes N] [--out soak.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.startup import free_port, stop  # noqa: E402

TIMEOUT_S = 120.0  # every request
READY_TIMEOUT_S = 300.0
TRAIN_GRACE_S = 300.0  # how long a training may outlast the traffic
MB = 1e6
KINDS = {  # kind: weight in the mix
    "chat": 20,
    "chat_long": 8,
    "stream_drop": 10,
    "tool_call": 10,
    "classify": 12,
    "session": 14,
    "summarize": 6,
    "batch": 8,
    "malformed": 12,
}
METRIC_PREFIXES = ("hfchain_kv_", "hfchain_prefix_cache_tokens")

SHORT_PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for a good night's sleep.",
    "Write a haiku about autumn leaves.",
    "Explain in two sentences why the sky is blue.",
    "I am planning a trip to the mountains next week. The forecast says rain on Tuesday and sun on "
    "Wednesday, and I want to hike one long trail and visit a small village with a market. Which day "
    "should I hike, and what should I pack?",
    "Translate 'good morning, how are you?' into Spanish and German.",
    "My team keeps missing deadlines because tasks are not written down and people forget who owns what. "
    "We are five people working on a website. Suggest a simple routine we could start on Monday that "
    "takes less than ten minutes a day, and explain how it helps.",
    "What is 17 times 23?",
]
VOCABULARY_TEXT = (
    "time year people way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue "
    "side kind head house service friend father power hour game line end member law car city community "
    "name president team minute idea kid body information back parent face others level office door "
    "health person art war history party result change morning reason research girl guy moment air "
    "teacher force education foot boy age policy music market sense nation plan college interest death "
    "experience effect class control care field development role effort rate heart drug show leader light "
    "voice wife police mind price report decision son view relationship town road arm difference value "
    "building action model season society tax director position player record paper space ground form "
    "event official matter center couple site project activity star table need court oil situation cost "
    "industry figure street image phone data picture practice piece land product doctor wall patient "
    "worker news test movie north love support technology step baby computer type attention film tree "
    "source organization hair window evidence population river stone lantern harbour meadow engine signal "
    "copper violet orchard thunder quiet ledger compass summer glacier bright slowly green ancient "
    "careful quickly small heavy open"
)
VOCABULARY = VOCABULARY_TEXT.split()
SENTENCES = [
    "The city council met on Tuesday to discuss the new park.",
    "Residents asked for more trees, benches and a fountain near the entrance.",
    "The mayor promised a decision before the end of next month.",
    "Several shop owners worried about parking during the construction work.",
    "Parents welcomed the plans for a larger playground with a climbing wall.",
    "An engineer explained that the old drainage pipes must be replaced first.",
    "The budget for the project was raised twice since the first proposal.",
    "A group of students presented a survey of four hundred households.",
    "Most of the people surveyed said they would visit the park every week.",
    "The library next door offered to run reading sessions in the summer.",
    "Some neighbours asked whether the park would be closed at night.",
    "The police chief said more street lights would make the area safer.",
    "A local artist proposed a mural on the wall of the old factory.",
    "The council agreed to publish the final design online for comments.",
]
SESSION_MESSAGES = [
    "My name is Ann and I live in a small town by the sea.",
    "What did I say my name was?",
    "I like to cook pasta on Sundays. Any ideas for a sauce?",
    "Tell me a short fact about the ocean.",
    "Can you remind me what I cook on Sundays?",
    "Suggest a name for a cat.",
    "What is a good book for a rainy day?",
    "Summarise our conversation so far in one sentence.",
]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "prompts": ["What is the weather in Paris?", "Is it raining in Tokyo right now?"],
    },
    {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "maxLength": 40}},
            "required": ["expression"],
        },
        "prompts": ["What is 17 * 23?", "How much is 1024 divided by 8, plus 3?"],
    },
    {
        "name": "search_flights",
        "description": "Search flights between two airports on a date",
        "parameters": {
            "type": "object",
            "properties": {
                "origin": {"type": "string", "maxLength": 8},
                "destination": {"type": "string", "maxLength": 8},
                "date": {"type": "string", "maxLength": 12},
            },
            "required": ["origin", "destination"],
        },
        "prompts": ["Find me a flight from Berlin to Rome on May 3rd.", "Flights from JFK to LAX tomorrow?"],
    },
]
CLASSIFY_CASES = [
    ("The striker scored twice in the final minutes.", ["sport", "politics", "technology"]),
    ("Parliament voted on the new budget late last night.", ["sport", "politics", "technology"]),
    ("The new phone has a faster chip and a better camera.", ["sport", "politics", "technology"]),
    ("I loved every minute of this film, the actors were wonderful.", ["positive", "negative"]),
    ("The delivery was late and the box was damaged.", ["positive", "negative", "neutral"]),
    ("Please reset my password, I cannot log in.", ["billing", "account", "shipping", "other"]),
]
TRAIN_WORDS = {
    "pos": ["great", "wonderful", "lovely", "excellent", "delightful", "moving", "funny", "charming"],
    "neg": ["awful", "terrible", "boring", "dreadful", "poor", "dull", "clumsy", "tedious"],
}


def malformed_requests() -> list[tuple[str, bytes]]:
    """(path, body) pairs a correct server answers with a 4xx."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}

    def dump(value: object) -> bytes:
        return json.dumps(value).encode()

    return [
        ("/v1/chat/completions", b'{"model": "m", "messages": ['),
        ("/chat/invoke", b"\xff\xfe{"),
        ("/generate/invoke", b""),
        ("/v1/chat/completions", dump({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})),
        (
            "/v1/chat/completions",
            dump({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}),
        ),
        (
            "/v1/chat/completions",
            dump(
                {
                    "model": "m",
                    "messages": [{"role": "user", "content": "x"}],
                    "tools": [tool],
                    "tool_choice": {"type": "function", "function": {"name": "nope"}},
                }
            ),
        ),
        (
            "/v1/chat/completions",
            dump(
                {
                    "model": "m",
                    "messages": [{"role": "user", "content": "x"}],
                    "tools": [tool],
                    "tool_choice": {"type": "function", "function": {"name": "f"}},
                    "max_tokens": 1,
                }
            ),
        ),
        (
            "/generate/invoke",
            dump({"input": {"prompt": "x"}, "config": {"configurable": {"max_new_tokens": -3}}}),
        ),
        ("/generate/invoke", dump({"input": {"prompt": 5}})),
        ("/generate/batch", dump({"inputs": "not a list"})),
        ("/classify/invoke", dump({"input": {"text": "", "labels": ["a"]}})),
        ("/classify/invoke", dump({"input": {"text": "x", "labels": ["a", "a"]}})),
        (
            "/chat/invoke",
            dump(
                {
                    "input": {"messages": [{"role": "user", "content": "x"}]},
                    "config": {"configurable": {"session_id": "bad id/!"}},
                }
            ),
        ),
        ("/summarize/invoke", dump({"input": {"text": 5}})),
        ("/classifiers", dump({"name": "x", "rows": []})),
        (
            "/chat/invoke",
            dump(
                {
                    "input": {"messages": [{"role": "user", "content": "x"}]},
                    "config": {"configurable": {"temperature": "hot"}},
                }
            ),
        ),
    ]


@dataclass
class Outcome:
    """One request: its kind, seconds, HTTP status (0: transport error) and whether the reply was right."""

    kind: str
    seconds: float
    status: int
    ok: bool
    note: str = ""


@dataclass
class Shared:
    """State the clients share: outcomes, the sessions, the trained classifier's name."""

    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sessions: list[list] = field(default_factory=list)  # [session id, turns sent, generation]
    trained: str | None = None
    trained_calls: int = 0  # /classify requests that named the trained classifier
    training_active: bool = False

    def record(self, outcome: Outcome, response: httpx.Response | None = None) -> None:
        with self.lock:
            self.outcomes.append(outcome)
            if not outcome.ok and len(self.errors) < 50:
                entry = {"kind": outcome.kind, "status": outcome.status, "note": outcome.note[:500]}
                if response is not None:
                    entry["request_id"] = response.headers.get("x-request-id")
                self.errors.append(entry)


class Traffic:
    """The request kinds. Each returns (status, reply as expected, note, response)."""

    def __init__(self, shared: Shared, session_turns: int, sessions: int, seed: int) -> None:
        self.shared = shared
        self.session_turns = session_turns
        shared.sessions = [[f"soak-{seed}-{i}-0", 0, 0] for i in range(sessions)]
        self.bad_requests = malformed_requests()

    def chat(self, client: httpx.Client, rng: random.Random) -> tuple:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": rng.choice(SHORT_PROMPTS)}],
            "max_tokens": rng.choice((16, 32, 48)),
        }
        return self._v1(client, body)

    def chat_long(self, client: httpx.Client, rng: random.Random) -> tuple:
        text = " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(500, 700)))
        content = f"Notes {rng.randrange(10**9)}: {text}\n\nSay in one sentence what these notes are about."
        body = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 32}
        return self._v1(client, body)

    def _v1(self, client: httpx.Client, body: dict, headers: dict | None = None) -> tuple:
        response = client.post("/v1/chat/completions", json=body, headers=headers)
        if response.status_code != 200:
            return response.status_code, False, response.text, response
        message = response.json()["choices"][0]["message"]
        return 200, isinstance(message.get("content"), str), "", response

    def stream_drop(self, client: httpx.Client, rng: random.Random) -> tuple:
        content = rng.choice(SHORT_PROMPTS) + " Answer at length."
        if rng.random() < 0.5:
            path = "/v1/chat/completions"
            body = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 64,
                    "stream": True}  # fmt: skip
        else:
            path = "/chat/stream"
            body = {"input": {"messages": [{"role": "user", "content": content}]},
                    "config": {"configurable": {"max_new_tokens": 64}}}  # fmt: skip
        events = 0
        with client.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                response.read()
                return response.status_code, False, response.text, response
            for line in response.iter_lines():
                events += line.startswith("data:")
                if events >= 3:
                    break  # leaving the block closes the connection mid-stream
        return 200, events >= 3, f"{events} events", response

    def tool_call(self, client: httpx.Client, rng: random.Random) -> tuple:
        tools = rng.sample(TOOLS, rng.randint(1, len(TOOLS)))
        named = rng.choice(tools)
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": rng.choice(named["prompts"])}],
            "tools": [
                {"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters")}}
                for t in tools
            ],
            "tool_choice": {"type": "function", "function": {"name": named["name"]}},
            "max_tokens": 64,
        }
        response = client.post("/v1/chat/completions", json=body)
        if response.status_code != 200:
            return response.status_code, False, response.text, response
        calls = response.json()["choices"][0]["message"].get("tool_calls") or []
        ok = bool(calls) and calls[0]["function"]["name"] == named["name"]
        return 200, ok, "" if ok else response.text, response

    def classify(self, client: httpx.Client, rng: random.Random) -> tuple:
        trained = self.shared.trained
        if trained and rng.random() < 0.3:
            adjective = rng.choice(TRAIN_WORDS[rng.choice(("pos", "neg"))])
            value, labels = {"text": f"What a {adjective} film", "model": trained}, None
            with self.shared.lock:
                self.shared.trained_calls += 1
        else:
            text, labels = rng.choice(CLASSIFY_CASES)
            value = {"text": text, "labels": labels}
            roll = rng.random()
            if roll < 0.15:
                value["method"] = "llm"
            elif roll < 0.3:
                value["multi_label"] = True
        response = client.post("/classify/invoke", json={"input": value})
        if response.status_code != 200:
            return response.status_code, False, response.text, response
        label = response.json()["output"]["label"]
        ok = label in labels if labels else isinstance(label, str)
        return 200, ok, "" if ok else response.text, response

    def session(self, client: httpx.Client, rng: random.Random) -> tuple:
        with self.shared.lock:
            slot = rng.choice(self.shared.sessions)
            session_id, turn = slot[0], slot[1]
            slot[1] += 1
            retire = slot[1] >= self.session_turns
            if retire:
                slot[2] += 1
                slot[0], slot[1] = re.sub(r"-\d+$", f"-{slot[2]}", session_id), 0
        content = f"{SESSION_MESSAGES[turn % len(SESSION_MESSAGES)]} (turn {turn + 1})"
        if rng.random() < 0.5:
            body = {
                "input": {"messages": [{"role": "user", "content": content}]},
                "config": {"configurable": {"session_id": session_id, "max_new_tokens": 32}},
            }
            response = client.post("/chat/invoke", json=body)
            ok = response.status_code == 200 and isinstance(response.json()["output"].get("content"), str)
            result = response.status_code, ok, "" if ok else response.text, response
        else:
            body = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 32}
            result = self._v1(client, body, headers={"x-session-id": session_id})
        if retire:  # the session had its turns: delete it (its slot already holds a fresh id)
            deleted = client.delete(f"/sessions/{session_id}")
            if deleted.status_code not in (200, 404):  # 404: a concurrent turn had not stored yet
                return deleted.status_code, False, f"DELETE: {deleted.text}", deleted
        return result

    def summarize(self, client: httpx.Client, rng: random.Random) -> tuple:
        words, sentences = rng.randint(150, 600), []
        while sum(len(s.split()) for s in sentences) < words:
            sentences.append(rng.choice(SENTENCES))
        text = f"Meeting notes {rng.randrange(10**9)}. " + " ".join(sentences)
        body = {"input": {"text": text}, "config": {"configurable": {"max_new_tokens": 48}}}
        response = client.post("/summarize/invoke", json=body)
        if response.status_code != 200:
            return response.status_code, False, response.text, response
        ok = isinstance(response.json()["output"].get("summary"), str)
        return 200, ok, "", response

    def batch(self, client: httpx.Client, rng: random.Random) -> tuple:
        prompts = [f"{rng.choice(SHORT_PROMPTS)} {rng.choice(VOCABULARY)}" for _ in range(rng.randint(2, 4))]
        body = {
            "inputs": [{"prompt": p} for p in prompts],
            "config": {"configurable": {"max_new_tokens": rng.choice((16, 24, 32))}},
        }
        response = client.post("/generate/batch", json=body)
        if response.status_code != 200:
            return response.status_code, False, response.text, response
        output = response.json()["output"]
        ok = isinstance(output, list) and len(output) == len(prompts)
        return 200, ok, "", response

    def malformed(self, client: httpx.Client, rng: random.Random) -> tuple:
        path, content = rng.choice(self.bad_requests)
        response = client.post(path, content=content, headers={"content-type": "application/json"})
        ok = 400 <= response.status_code < 500
        return response.status_code, ok, f"{path}: {response.text}", response

    def send(self, kind: str, client: httpx.Client, rng: random.Random) -> None:
        """One request of `kind`, timed and recorded."""
        started = time.perf_counter()
        try:
            status, ok, note, response = getattr(self, kind)(client, rng)
        except httpx.HTTPError as error:  # transport errors and timeouts
            status, ok, note, response = 0, False, f"{type(error).__name__}: {error}", None
        except (ValueError, KeyError, TypeError, IndexError) as error:  # a reply of the wrong shape
            status, ok, note, response = -1, False, f"bad reply: {type(error).__name__}: {error}", None
        self.shared.record(Outcome(kind, time.perf_counter() - started, status, ok, note), response)


def train_classifier(
    base: str, shared: Shared, name: str, rss: Callable[[], int], stop_event: threading.Event
) -> dict:
    """POST /classifiers with 40 labelled rows (1 epoch, tiny limits), then poll until done or failed."""
    rng = random.Random(7)
    lines = ["text,label"]
    for i in range(40):
        label = ("pos", "neg")[i % 2]
        lines.append(
            f"A {rng.choice(TRAIN_WORDS[label])} film with a {rng.choice(VOCABULARY)} (number {i}),{label}"
        )
    result: dict = {"name": name, "rss_before_mb": rss() / MB}
    started = time.perf_counter()
    shared.training_active = True
    peak = 0.0
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT_S) as client:
            files = {"file": ("soak.csv", ("\n".join(lines) + "\n").encode(), "text/csv")}
            data = {"name": name, "epochs": "1", "max_length": "32", "batch_size": "8"}
            response = client.post("/classifiers", files=files, data=data)
            result["post_status"] = response.status_code
            if response.status_code != 202:
                result["status"] = f"refused: {response.text[:300]}"
                return result
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                peak = max(peak, rss())
                state = client.get(f"/classifiers/{name}").json()
                if state.get("status") in ("done", "failed"):
                    result["status"] = state["status"]
                    result["error"] = state.get("error")
                    result["accuracy"] = (state.get("metrics") or {}).get("accuracy")
                    break
                if stop_event.wait(2):
                    result["status"] = "still training when the run was stopped"
                    break
            else:
                result["status"] = "not done after 600 s"
    except httpx.HTTPError as error:
        result["status"] = f"transport error: {error}"
    finally:
        shared.training_active = False
        result["seconds"] = time.perf_counter() - started
        result["rss_peak_mb"] = peak / MB
        result["rss_after_mb"] = rss() / MB
    if result.get("status") == "done":
        shared.trained = name
    return result


def processes(pid: int) -> list[tuple[int, int, str]]:
    """(pid, resident bytes, command line) of `pid` and all its descendants, from /proc (VmRSS, and
    /proc/PID/task/*/children); a process that ends meanwhile is left out."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return []
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if re.search(r"^State:\s+Z", status, re.MULTILINE):
        return []  # a zombie: ended, holds no memory, waits to be reaped
    listed = [(pid, int(found.group(1)) * 1024 if found else 0, command)]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in children.read_text().split():
                listed.extend(processes(int(child)))
    return listed


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants (0 once it is gone)."""
    return sum(rss for _, rss, _ in processes(pid))


def memory(pid: int) -> dict:
    """The server's resident memory: in all, its own, and how many worker processes it has (children
    other than multiprocessing's resource tracker: a classifier training)."""
    listed = processes(pid)
    workers = [p for p in listed[1:] if "resource_tracker" not in p[2]]
    return {
        "rss_mb": sum(rss for _, rss, _ in listed) / MB,
        "server_mb": (listed[0][1] if listed else 0) / MB,
        "workers": len(workers),
    }


def scrape(client: httpx.Client) -> dict[str, float]:
    """The /metrics lines starting with METRIC_PREFIXES (no *_created), plus the main process's RSS."""
    try:
        text = client.get("/metrics").text
    except httpx.HTTPError:
        return {}
    found = {}
    for line in text.splitlines():
        if line.startswith((*METRIC_PREFIXES, "process_resident_memory_bytes")) and " " in line:
            name, value = line.rsplit(" ", 1)
            if not name.split("{")[0].endswith("_created"):
                with contextlib.suppress(ValueError):
                    found[name] = float(value)
    return found


def parse_bytes(text: str | None) -> int | None:
    """'2147483648', '2GB', '512MiB', '1.5G' -> bytes; None for nothing or something else."""
    if not text:
        return None
    found = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)(i?b?)\s*", text.lower())
    if not found:
        return None
    power = " kmgt".index(found.group(2) or " ")
    return int(float(found.group(1)) * (1024 if found.group(3).startswith("i") else 1000) ** power)


def start_server(env_overrides: dict[str, str], data_dir: str, log_path: Path) -> tuple:
    """`python -m server` on a free port; waits for /ready. Returns (process, url, ready RSS, seconds)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFCHAIN_") or k == "HFCHAIN_CACHE_DIR"}
    env.update(HFCHAIN_PORT=str(port), HFCHAIN_HOST="127.0.0.1", HFCHAIN_DATA_DIR=data_dir)
    env.update(env_overrides)
    log = log_path.open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=2) as client:
            while time.perf_counter() - started < READY_TIMEOUT_S:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode}: see {log_path}")
                try:
                    if client.get("/ready").status_code == 200:
                        return proc, url, rss_bytes(proc.pid), time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f} s: see {log_path}")
    except BaseException:
        stop(proc)
        raise


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minute, value) points; nan with fewer than 2 distinct minutes."""
    if len({x for x, _ in points}) < 2:
        return float("nan")
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return num / sum((x - mean_x) ** 2 for x, _ in points)


def is_server_error(outcome: Outcome) -> bool:
    return outcome.status >= 500 or outcome.status == 0


def per_kind(outcomes: list[Outcome]) -> dict[str, dict]:
    table = {}
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        table[kind] = {
            "count": len(mine),
            "4xx": sum(400 <= o.status < 500 for o in mine),
            "5xx_or_transport": sum(is_server_error(o) for o in mine),
            "unexpected": sum(not o.ok for o in mine),
            "p50_ms": percentile([o.seconds for o in mine], 0.5) * 1000,
            "p95_ms": percentile([o.seconds for o in mine], 0.95) * 1000,
        }
    return table


def verdict(
    ready_mb: float, samples: list[dict], outcomes: list[Outcome], minutes: float, kv: int | None
) -> dict:
    """The figures and the three checks. Samples taken while a classifier trained (its worker process
    alive) count for "steady_all" but not for the steady state checked nor for the slope: the worker is a
    process of its own whose memory goes when it ends."""
    half = samples[-1]["minute"] / 2 if samples else 0
    last_half = [s for s in samples if s["minute"] >= half]
    quiet = [s for s in last_half if not s["training"]] or last_half
    steady_all = max((s["rss_mb"] for s in last_half), default=float("nan"))
    steady = max((s["rss_mb"] for s in quiet), default=float("nan"))
    per_min = slope_per_minute([(s["minute"], s["rss_mb"]) for s in quiet])
    mean_rss = statistics.fmean(s["rss_mb"] for s in quiet) if quiet else float("nan")
    errors = sum(is_server_error(o) for o in outcomes)
    budget = ready_mb + kv * 1.1 / MB if kv is not None else None
    return {
        "ready_rss_mb": ready_mb,
        "steady_rss_mb": steady,
        "steady_all_rss_mb": steady_all,
        "last_half_samples": len(last_half),
        "quiet_samples": len(quiet),
        "quiet_fallback": not any(not s["training"] for s in last_half),
        "kv_bytes": kv,
        "slope_mb_per_10min": per_min * 10,
        "slope_pct_per_10min": per_min * 10 / mean_rss * 100,
        "requests_per_minute": len(outcomes) / minutes if minutes else float("nan"),
        "server_errors": errors,
        "checks": {
            "steady <= ready + 1.1 x KV": None if budget is None else steady <= budget,
            "slope <= 1 % of RSS / 10 min": per_min * 10 / mean_rss * 100 <= 1.0,
            "0 server errors": errors == 0,
        },
        "budget_mb": budget,
    }


def client_loop(traffic: Traffic, url: str, index: int, seed: int, stop_event: threading.Event) -> None:
    rng = random.Random(seed * 1000 + index)
    kinds, weights = list(KINDS), list(KINDS.values())
    with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
        while not stop_event.is_set():
            traffic.send(rng.choices(kinds, weights)[0], client, rng)


def print_report(report: dict) -> None:
    samples, kinds, final = report["samples"], report["per_kind"], report["verdict"]
    metric_names = sorted({name for s in samples for name in s["metrics"] if not name.startswith("process_")})
    print("\n(a) samples")
    print("| minute | RSS MB | server MB | requests | errors | " + " | ".join(metric_names) + " |")
    print("|---|---|---|---|---|" + "---|" * len(metric_names))
    for s in samples:
        values = " | ".join(f"{s['metrics'][n]:.0f}" if n in s["metrics"] else "-" for n in metric_names)
        note = " (training)" if s["training"] else ""
        print(
            f"| {s['minute']:.1f}{note} | {s['rss_mb']:.0f} | {s['server_mb']:.0f} | {s['requests']} | "
            f"{s['errors']} | {values} |"
        )
    if not metric_names:
        print("(no hfchain_kv_* or hfchain_prefix_cache_tokens lines in /metrics)")
    print("\n(b) per kind (4xx expected only for malformed; unexpected = wrong status or reply)")
    print("| kind | count | 4xx | 5xx/transport | unexpected | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for kind, row in kinds.items():
        print(
            f"| {kind} | {row['count']} | {row['4xx']} | {row['5xx_or_transport']} | {row['unexpected']} | "
            f"{row['p50_ms']:.0f} | {row['p95_ms']:.0f} |"
        )
    training = report.get("training")
    if training:
        print(
            f"\ntraining {training['name']}: {training.get('status')} in {training['seconds']:.0f} s "
            f"(accuracy {training.get('accuracy')}); RSS {training['rss_before_mb']:.0f} MB before, "
            f"peak {training['rss_peak_mb']:.0f}, {training['rss_after_mb']:.0f} after; "
            f"{training.get('classify_calls', 0)} /classify requests named it"
        )
    kv = final["kv_bytes"]
    quiet_note = "; every one had one, so all count" if final["quiet_fallback"] else ""
    print("\n(c) verdict")
    print(
        f"  ready RSS: {final['ready_rss_mb']:.0f} MB "
        f"(after one request of each kind: {report['warm_rss_mb']:.0f} MB)"
    )
    print(
        f"  steady-state RSS (max over the last half, {final['quiet_samples']} of its "
        f"{final['last_half_samples']} samples: those without a training worker{quiet_note}): "
        f"{final['steady_rss_mb']:.0f} MB ({final['steady_all_rss_mb']:.0f} MB counting the training samples)"
    )
    kv_text = "n/a" if kv is None else f"{kv / MB:.0f} MB ({report['kv_source']})"
    print(f"  KV bytes: {kv_text}")
    print(
        f"  slope over the last half (same samples): {final['slope_mb_per_10min']:+.1f} MB / 10 min "
        f"({final['slope_pct_per_10min']:+.2f} % of RSS / 10 min)"
    )
    print(f"  requests per minute: {final['requests_per_minute']:.1f} ({report['clients']} clients)")
    print(f"  server errors (5xx or transport): {final['server_errors']}")
    budget = final["budget_mb"]
    for name, passed in final["checks"].items():
        mark = "n/a (no KV bytes known)" if passed is None else ("PASS" if passed else "FAIL")
        extra = f" (budget {budget:.0f} MB)" if budget is not None and name.startswith("steady") else ""
        print(f"  {name}: {mark}{extra}")
    print("  (RSS: the server process and its children; server MB: the server process alone)")


def tracebacks(log_path: Path, most: int = 2) -> list[str]:
    """The first `most` tracebacks in the server log (40 lines each at most)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback") and len(found) < most:
            found.append("\n".join(lines[max(0, i - 1) : i + 40]))
    return found


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="traffic duration (default 30)")
    parser.add_argument("--clients", type=int, default=4, help="closed-loop client threads (default 4)")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="server setting")
    parser.add_argument("--kv-bytes", help="the configured KV pool size, when /metrics does not report it")
    parser.add_argument("--sessions", type=int, default=4, help="sessions talked to at once (default 4)")
    parser.add_argument("--session-turns", type=int, default=30, help="turns before a session is reset")
    parser.add_argument("--no-train", action="store_true", help="skip the classifier training")
    parser.add_argument("--out", type=Path, help="write everything as JSON here")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.env)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` ends the run as Ctrl-C does: the server stopped

    log_fd, log_name = tempfile.mkstemp(prefix="hfchain-soak-", suffix=".log")
    os.close(log_fd)
    log_path = Path(log_name)
    with tempfile.TemporaryDirectory(prefix="hfchain-soak-") as data_dir:
        print(f"starting the server (data dir {data_dir}, log {log_path}) ...", flush=True)
        proc, url, ready_rss, ready_s = start_server(overrides, data_dir, log_path)
        try:
            report = run(args, proc, url, ready_rss, ready_s, overrides, log_path)
        except KeyboardInterrupt:  # before the traffic started: nothing to report
            print(f"interrupted during the warm-up; server log {log_path}", flush=True)
            sys.exit(130)
        finally:
            stop(proc)
    print_report(report)
    found = tracebacks(log_path)
    if found:
        print(f"\nserver log {log_path}: tracebacks (first {len(found)}):")
        for text in found:
            print(text)
    if report["errors"]:
        print("\nfirst failures:")
        for entry in report["errors"][:10]:
            print(f"  {json.dumps(entry)[:400]}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.out}")


def run(args, proc, url: str, ready_rss: int, ready_s: float, overrides: dict, log_path: Path) -> dict:
    """Warm-up, traffic, samples, the training; returns the report (stops early on Ctrl-C)."""
    print(f"ready in {ready_s:.1f} s, RSS {ready_rss / MB:.0f} MB", flush=True)
    shared = Shared()
    traffic = Traffic(shared, args.session_turns, args.sessions, args.seed)
    warm = Shared()
    warm_traffic = Traffic(warm, args.session_turns, 1, args.seed + 1)
    rng = random.Random(args.seed)
    with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
        for kind in KINDS:  # once each: lazy loads happen before the clock starts
            warm_traffic.send(kind, client, rng)
    for outcome in warm.outcomes:
        if not outcome.ok:
            print(f"  warm-up {outcome.kind}: status {outcome.status}: {outcome.note[:300]}", flush=True)
    warm_rss = rss_bytes(proc.pid)
    print(
        f"warm-up done, RSS {warm_rss / MB:.0f} MB; {args.clients} clients for {args.minutes} min", flush=True
    )

    stop_event = threading.Event()
    threads = [
        threading.Thread(target=client_loop, args=(traffic, url, i, args.seed, stop_event), daemon=True)
        for i in range(args.clients)
    ]
    training: dict = {}
    trainer = None
    samples: list[dict] = []
    duration = args.minutes * 60
    interrupted = False
    started = time.monotonic()
    metrics_client = httpx.Client(base_url=url, timeout=30)

    def sample() -> None:
        elapsed = time.monotonic() - started
        with shared.lock:
            done = len(shared.outcomes)
            errors = sum(not o.ok for o in shared.outcomes)
        used = memory(proc.pid)
        samples.append({
            "minute": elapsed / 60,
            **used,
            "requests": done,
            "errors": errors,
            "training": shared.training_active or used["workers"] > 0,
            "metrics": scrape(metrics_client),
        })  # fmt: skip
        last = samples[-1]
        print(
            f"  {last['minute']:5.1f} min: RSS {last['rss_mb']:.0f} MB, {done} requests, {errors} errors"
            + (" (training)" if last["training"] else ""),
            flush=True,
        )

    # set on Ctrl-C, or when the training outlasts the traffic by TRAIN_GRACE_S
    train_stop = threading.Event()

    def train() -> None:
        name = f"soak{args.seed}"
        training.update(train_classifier(url, shared, name, lambda: rss_bytes(proc.pid), train_stop))

    try:
        sample()
        for thread in threads:
            thread.start()
        next_sample = args.sample
        while (elapsed := time.monotonic() - started) < duration:
            if proc.poll() is not None:
                print(f"the server exited with {proc.returncode}: see {log_path}", flush=True)
                break
            if trainer is None and not args.no_train and elapsed >= duration / 2:
                trainer = threading.Thread(target=train, daemon=True)
                trainer.start()
            if elapsed >= next_sample:
                sample()
                next_sample += args.sample
            time.sleep(min(1.0, max(0.05, duration - elapsed)))
    except KeyboardInterrupt:
        interrupted = True
        train_stop.set()
        print("interrupted: stopping the clients", flush=True)
    stop_event.set()
    traffic_minutes = None
    try:
        for thread in threads:
            thread.join(TIMEOUT_S + 10)
        traffic_minutes = (time.monotonic() - started) / 60  # the requests in flight at the end finished
        if trainer is not None:
            trainer.join(TRAIN_GRACE_S)
            train_stop.set()
            trainer.join(30)
        if proc.poll() is None:
            sample()  # after the traffic
    except KeyboardInterrupt:
        interrupted = True
        train_stop.set()
    if traffic_minutes is None:  # interrupted while the clients finished
        traffic_minutes = (time.monotonic() - started) / 60
    metrics_client.close()
    kv_source, kv = "n/a", None
    for s in reversed(samples):
        pool = [v for k, v in s["metrics"].items() if k.startswith("hfchain_kv_pool_bytes")]
        if pool:
            kv, kv_source = int(pool[0]), "hfchain_kv_pool_bytes"
            break
    if kv is None and parse_bytes(args.kv_bytes) is not None:
        kv, kv_source = parse_bytes(args.kv_bytes), "--kv-bytes"
    if kv is None and parse_bytes(overrides.get("HFCHAIN_KV_CACHE_BYTES")) is not None:
        kv, kv_source = parse_bytes(overrides["HFCHAIN_KV_CACHE_BYTES"]), "HFCHAIN_KV_CACHE_BYTES"
    with shared.lock:
        outcomes = list(shared.outcomes)
    if training:
        training["classify_calls"] = shared.trained_calls
    return {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "env": overrides,
        "clients": args.clients,
        "cpus": os.cpu_count(),
        "interrupted": interrupted,
        "server_log": str(log_path),
        "ready_seconds": ready_s,
        "ready_rss_mb": ready_rss / MB,
        "warm_rss_mb": warm_rss / MB,
        "warm_up": [vars(o) for o in warm.outcomes],
        "traffic_minutes": traffic_minutes,
        "samples": samples,
        "per_kind": per_kind(outcomes),
        "training": training,
        "kv_source": kv_source,
        "verdict": verdict(ready_rss / MB, samples, outcomes, traffic_minutes, kv),
        "errors": shared.errors,
    }


if __name__ == "__main__":
    main()
