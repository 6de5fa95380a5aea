"""Large uploads ingested in the background, one job at a time per process; each job's progress is written
on its collection, so `GET /collections/{name}` on any replica shows it."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from chains.errors import HfchainError, Overloaded
from chains.knowledge.chunking import Prepared
from chains.knowledge.collections import Knowledge

log = logging.getLogger(__name__)
MAX_WAITING = 4  # jobs queued behind the running one; more get 429 (each holds its parsed text in memory)
PROGRESS_EVERY = 1.0  # seconds between progress writes


class Ingestions:
    """Runs ingestion jobs on one worker thread and records their progress on the collection."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hfchain-ingest")
        self._waiting = 0
        self._lock = threading.Lock()

    def submit(self, tenant: str, name: str, documents: list[Prepared]) -> dict[str, Any]:
        """Queue `documents` for the tenant's collection; the job's first state (also on the collection)."""
        row = self.knowledge.store.usable(tenant, name)
        with self._lock:
            if self._waiting >= MAX_WAITING:
                raise Overloaded(
                    f"{MAX_WAITING} ingestion jobs are waiting already: retry when GET /collections/{name} "
                    "shows yours done",
                    retry_after=10,
                )
            self._waiting += 1
        job = {
            "id": uuid.uuid4().hex[:12],
            "state": "queued",
            "documents": len(documents),
            "chunks_done": 0,
            "chunks_total": sum(len(d.chunks) for d in documents),
            "created_at": _now(),
        }
        self.knowledge.store.set_job(row.id, job)
        self._pool.submit(self._run, tenant, name, row.id, documents, job)
        return job

    def _run(self, tenant: str, name: str, collection_id: int, documents: list[Prepared], job: dict) -> None:
        with self._lock:
            self._waiting -= 1
        store, last = self.knowledge.store, [0.0]

        def progress(done: int, total: int) -> None:
            job.update(chunks_done=done, chunks_total=total)
            if time.monotonic() - last[0] >= PROGRESS_EVERY or done == total:
                last[0] = time.monotonic()
                store.set_job(collection_id, job)

        job.update(state="running", started_at=_now())
        try:
            store.set_job(collection_id, job)
            result = self.knowledge.ingest(tenant, name, documents, progress)
            job.update(state="done", result={k: result[k] for k in ("added", "replaced", "unchanged")})
        except HfchainError as error:  # e.g. the collection was deleted meanwhile
            job.update(state="failed", error=error.message)
        except Exception as error:
            log.exception("ingestion job %s failed", job["id"])
            job.update(
                state="failed", error=f"{error.__class__.__name__}: the job stopped; see the server log"
            )
        job["finished_at"] = _now()
        try:
            store.set_job(collection_id, job)
        except HfchainError:
            log.warning("ingestion job %s: its collection is gone", job["id"])

    def close(self) -> None:
        """Stop taking jobs (a running one finishes)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
