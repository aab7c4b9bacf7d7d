"""A throwaway PostgreSQL cluster for tests, from the Debian ``postgresql`` package's binaries.

``initdb`` + ``pg_ctl start`` under a temporary directory, listening on 127.0.0.1 (a free port) and on a unix
socket in that directory, trust authentication (a test cluster holds nothing worth a password). PostgreSQL
refuses to run as root, so under root the cluster runs as the ``postgres`` system user. Durability settings are off: the
cluster lives for one test session only.

Without the binaries the tests that use it are skipped (they fail under ``CI=true``). Import the fixtures into a
conftest: ``pg_cluster`` (one per session) and ``pg_url`` (a fresh database per test).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.net import free_port

# The user the cluster runs as when the tests run as root (Debian's package creates it).
SYSTEM_USER = "postgres"
# The superuser initdb creates; tests connect as it (trust authentication).
SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/N/bin."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _missing(reason: str) -> NoReturn:
    # In CI (.ci/run installs the package) a missing PostgreSQL is a broken setup, not a reason to skip.
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _as_user() -> tuple[Callable[[], None] | None, int | None, int | None]:
    """(preexec_fn, uid, gid) to run the cluster's commands as the system user when we are root."""
    if os.geteuid() != 0:
        return None, None, None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        _missing(f"PostgreSQL refuses to run as root and there is no {SYSTEM_USER!r} user "
                    "(install the Debian package 'postgresql', which creates it)")
    uid, gid = entry.pw_uid, entry.pw_gid

    def demote() -> None:
        os.setgid(gid)
        os.initgroups(SYSTEM_USER, gid)
        os.setuid(uid)

    return demote, uid, gid


@dataclass
class Cluster:
    bin_dir: Path
    root: Path
    port: int
    preexec: Callable[[], None] | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / args[0]), *args[1:]], preexec_fn=self.preexec,
                              capture_output=True, text=True, check=False, cwd=self.root)

    def start(self) -> None:
        done = self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                         "--locale=C.UTF-8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip()}")
        # A test cluster: nothing needs to survive a crash, so skip what makes commits durable.
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        done = self._run("pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", "60", "-l",
                         str(self.root / "server.log"), "-o", options)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()}\n{log[-2000:]}")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")

    def create_database(self, template: str = "template1") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        # FILE_COPY copies the (tiny) template's files directly, quicker than WAL_LOG for small templates.
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return self.url(name)


def start_cluster() -> Cluster:
    """Start a cluster in a new temporary directory (skips the test when the binaries are missing)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl) are not installed: "
                    "apt-get install postgresql (.ci/run does)")
    preexec, uid, gid = _as_user()
    root = Path(tempfile.mkdtemp(prefix="studyapp-pg-"))
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    cluster = Cluster(bin_dir, root, free_port(), preexec)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL cluster for the test session, stopped (``pg_ctl stop -m fast``) however the session ends."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """The URL of a fresh, empty database of the session's cluster, dropped after the test."""
    url = pg_cluster.create_database()
    yield url
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
