"""Job scopes: the generation jobs submitted within one (an HTTP request) can be cancelled together.

A client that leaves cancels its request's task, but a job only stops when its consumer's generator is
closed, and an abandoned async generator held in a reference cycle is closed by the garbage collector,
maybe minutes later. The scope cancels the jobs directly instead.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_current: ContextVar[JobScope | None] = ContextVar("hfchain_job_scope", default=None)


class JobScope:
    """The jobs submitted under this scope (held weakly); cancel() stops those still running."""

    def __init__(self) -> None:
        self._jobs: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, job: Any) -> None:
        with self._lock:
            self._jobs.add(job)

    def cancel(self) -> int:
        """Cancel every job of this scope (a no-op for finished ones); how many there were."""
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        return len(jobs)


@contextmanager
def job_scope() -> Iterator[JobScope]:
    """A scope for the jobs submitted in this context (and the tasks and threads it starts)."""
    scope = JobScope()
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def register(job: Any) -> None:
    """Add a new job to the current scope, if there is one."""
    if (scope := _current.get()) is not None:
        scope.add(job)
