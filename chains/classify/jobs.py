"""Training started over HTTP: one at a time, in a worker process (never on the model thread or the event
loop), its state in HFCHAIN_DATA_DIR/classifiers/.jobs/NAME.json so that any process can read it."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chains.classify.registry import Registry, check_name
from chains.errors import HfchainError, InvalidInput, Overloaded
from chains.tenants.caller import DEFAULT_TENANT

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Trainings:
    """The trainings of one registry: start one, read their states; a restart marks the interrupted failed."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._process: Any = None
        self._running: tuple[str, str] | None = None  # (tenant, name) of the last training started
        self._lock = threading.Lock()
        self.recover()

    def folder(self, tenant: str = DEFAULT_TENANT) -> Path:
        """Where the tenant's training states are kept."""
        return self.registry.tenant(tenant).root / ".jobs"

    def recover(self) -> None:
        """States left 'training' by a process that is gone (the server stopped) become 'failed'."""
        for path in [*self.registry.root.glob(".jobs/*.json"), *self.registry.root.glob("@*/.jobs/*.json")]:
            state = _read(path)
            if state and state.get("status") == "training" and not _alive(state.get("pid")):
                why = "interrupted: the server stopped during training; start it again"
                _write(path, {**state, "status": "failed", "error": why, "ended_at": now()})

    def state(self, name: str, tenant: str = DEFAULT_TENANT) -> dict | None:
        """The training state of the tenant's `name` (None when it was never trained over HTTP)."""
        return _read(self.folder(tenant) / f"{check_name(name)}.json")

    def active(self, tenant: str = DEFAULT_TENANT) -> list[dict]:
        """The tenant's trainings that are running or failed (finished ones are listed by their card)."""
        folder = self.folder(tenant)
        states = [_read(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        return [s for s in states if s and s.get("status") != "done"]

    def busy(self) -> tuple[str, str] | None:
        """(tenant, name) of the training that is running, if one is."""
        if self._process is None or not self._process.is_alive() or self._running is None:
            return None
        tenant, name = self._running
        state = self.state(name, tenant)  # a worker that wrote its result may still be exiting
        return self._running if state and state.get("status") == "training" else None

    def start(self, name: str, path: Path, options: Any, tenant: str = DEFAULT_TENANT) -> dict:
        """Start training the tenant's `name` from the file at `path` (a checked upload, removed afterwards).

        One training at a time over all tenants: each takes the CPU for minutes.
        """
        with self._lock:
            if running := self.busy():
                mine = running[0] == tenant
                raise Overloaded(
                    f"classifier {running[1]!r} is training: one at a time; retry when GET "
                    f"/classifiers/{running[1]} says done or failed"
                    if mine
                    else "another tenant's classifier is training: one at a time; retry in a minute",
                    retry_after=30,
                )
            registry, folder = self.registry.tenant(tenant), self.folder(tenant)
            state = self.state(name, tenant)
            if registry.card(name) is not None or (state and state.get("status") == "training"):
                raise InvalidInput(f"a classifier named {name!r} exists: pick another name or delete it")
            folder.mkdir(parents=True, exist_ok=True)
            first = {"name": name, "status": "training", "progress": {}, "started_at": now()}
            _write(folder / f"{name}.json", first)
            context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or torch state
            process = context.Process(
                target=work,
                args=(str(registry.root), name, str(path), asdict(options)),
                name=name,
                daemon=True,
            )
            process.start()
            self._process, self._running = process, (tenant, name)
            _write(folder / f"{name}.json", {**first, "pid": process.pid})
            return {**first, "pid": process.pid}

    def forget(self, name: str, tenant: str = DEFAULT_TENANT) -> None:
        """Drop a finished or failed training's state (DELETE /classifiers/NAME)."""
        state = self.state(name, tenant)
        if state and state.get("status") == "training" and _alive(state.get("pid")):
            raise InvalidInput(f"classifier {name!r} is still training: delete it once it is done")
        (self.folder(tenant) / f"{name}.json").unlink(missing_ok=True)


def work(root: str, name: str, path: str, options: dict) -> None:
    """The worker process: train, and keep the state file up to date (progress at most once a second)."""
    from chains.classify.train import TrainOptions, train_classifier

    state_path = Path(root) / ".jobs" / f"{name}.json"
    state = _read(state_path) or {"name": name}
    last = [0.0]

    def progress(step: dict) -> None:
        if time.monotonic() - last[0] >= 1 or step.get("eval_accuracy") is not None or "stage" in step:
            last[0] = time.monotonic()
            _write(state_path, {**state, "status": "training", "pid": os.getpid(), "progress": step})

    try:
        card = train_classifier(Path(path), name, Registry(Path(root)), TrainOptions(**options), progress)
        _write(state_path, {**state, "status": "done", "metrics": card["metrics"], "ended_at": now()})
    except HfchainError as error:
        _write(state_path, {**state, "status": "failed", "error": error.message, "ended_at": now()})
    except Exception as error:  # the worker reports every failure in its state, for the client to read
        log.exception("training %r failed", name)
        why = f"{error.__class__.__name__}: {error}"
        _write(state_path, {**state, "status": "failed", "error": why, "ended_at": now()})
    finally:
        Path(path).unlink(missing_ok=True)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def _write(path: Path, state: dict) -> None:
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(scratch, path)  # readers see the old state or the new one, never half of one


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
