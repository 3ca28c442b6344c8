"""A throwaway PostgreSQL cluster on loopback for tests (Debian's server binaries; see scripts/services).

    from tests.pg_fixture import pg_server, pg_url   # noqa: F401  (pytest finds imported fixtures)

`pg_server` (module scope) initdb's a cluster in a temp dir and starts it on a free 127.0.0.1 port;
`pg_url` gives each test a fresh, empty database on it, so tests never see each other's tables.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user. Tests skip
(never fail) when the binaries, psycopg or a non-root user are missing.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
needs_postgres = pytest.mark.skipif(not INITDB, reason="needs Debian postgresql (run scripts/services)")
_names = itertools.count(1)


class PostgresUnavailable(RuntimeError):
    """The throwaway cluster could not be started (the test should skip, not fail)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """Drop to the `postgres` user when we are root (initdb and postgres refuse to run as root)."""
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without runuser")
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class PostgresServer:
    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"test_{os.getpid()}_{next(_names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start on a free loopback port in a temp dir; immediate stop + rm on exit."""
    if not INITDB:
        raise PostgresUnavailable("no /usr/lib/postgresql/*/bin/initdb")
    bindir = Path(INITDB[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="prefdisco-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(data, "postgres", "postgres")
        except (LookupError, PermissionError) as exc:
            shutil.rmtree(data, ignore_errors=True)
            raise PostgresUnavailable(f"no postgres user: {exc}") from exc
    port = free_port()
    try:
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust",
                                     "-U", "postgres"]), check=True, capture_output=True, timeout=120)
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l",
                                     str(data / "log"), "-o",
                                     f"-k {data} -p {port} -h 127.0.0.1 -c fsync=off", "start"]),
                       check=True, capture_output=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, PostgresUnavailable) as exc:
        shutil.rmtree(data, ignore_errors=True)
        raise PostgresUnavailable(f"could not start a throwaway PostgreSQL: {exc}") from exc
    try:
        yield PostgresServer(port, data)
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate",
                                     "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg")
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture()
def pg_url(pg_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh database on the module's throwaway cluster."""
    return pg_server.create_database()
