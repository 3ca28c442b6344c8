"""The same data model on PostgreSQL (a throwaway cluster on loopback, started by the test)."""

from __future__ import annotations

import glob
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from preference_data.annotation.demo import build_demo_project, free_port, random_answers

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.skipif(not INITDB, reason="needs Debian postgresql (run scripts/services)")]


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; drop to the `postgres` user when we are root."""
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser; cannot start PostgreSQL")
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture()
def pg_url():
    pytest.importorskip("psycopg")
    bindir = Path(INITDB[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="prefdisco-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    try:
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust",
                                     "-U", "postgres"]), check=True, capture_output=True, timeout=120)
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l",
                                     str(data / "log"), "-o",
                                     f"-k {data} -p {port} -h 127.0.0.1 -c fsync=off", "start"]),
                       check=True, capture_output=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, KeyError, LookupError) as exc:
        shutil.rmtree(data, ignore_errors=True)
        pytest.skip(f"could not start a throwaway PostgreSQL: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate",
                                     "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.timeout(180)
def test_session_on_postgres(pg_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from preference_data.annotation.app import create_app
    from preference_data.annotation.db import dispose_engine
    from preference_data.annotation.store import export_judgments

    demo = build_demo_project(pg_url, tmp_path, n_items=2, n_annotators=2, n_responses=3)
    client = TestClient(create_app(pg_url, "demo"))
    rng = random.Random(0)
    for token in demo.annotator_tokens:
        item = client.get(f"/api/a/{token}/next").json()["item"]
        body = {"answers": random_answers(item, rng)}
        assert client.post(f"/api/a/{token}/items/{item['item_id']}", json=body).status_code == 200
        dup = client.post(f"/api/a/{token}/items/{item['item_id']}", json=body)
        assert dup.status_code == 409
    rows = export_judgments(pg_url, "demo")
    assert len(rows) == 8 and {r["annotator_id"] for r in rows} == set(demo.annotator_ids)
    assert client.get(f"/admin/{demo.admin_token}").status_code == 200
    dispose_engine(pg_url)
