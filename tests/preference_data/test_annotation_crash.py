"""Killing the server (SIGKILL) mid-session loses no acknowledged judgment."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from preference_data.annotation.demo import build_demo_project, random_answers, start_serve_process
from preference_data.annotation.store import export_judgments


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_mid_session_loses_no_submitted_judgment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=40, n_annotators=6, n_responses=2)
    proc, base = start_serve_process(url, "demo", stderr=subprocess.PIPE)
    try:
        acked: set[str] = set()
        lock = threading.Lock()
        stop = threading.Event()

        def work(i: int, token: str) -> None:
            rng = random.Random(i)
            with httpx.Client(base_url=base, timeout=10) as c:
                while not stop.is_set():
                    try:
                        item = c.get(f"/api/a/{token}/next").json()["item"]
                        if item is None:
                            return
                        r = c.post(f"/api/a/{token}/items/{item['item_id']}",
                                   json={"answers": random_answers(item, rng)})
                    except (httpx.TransportError, ValueError):
                        return  # server died under us
                    if r.status_code == 200:
                        with lock:
                            acked.update(r.json()["judgment_ids"])

        threads = [threading.Thread(target=work, args=(i, t)) for i, t in enumerate(demo.annotator_tokens)]
        for t in threads:
            t.start()
        while len(acked) < 60 and any(t.is_alive() for t in threads):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-session: requests are in flight
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 60
    con = sqlite3.connect(tmp_path / "a.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    stored = {row["judgment_id"] for row in export_judgments(url, "demo")}
    assert acked <= stored, f"{len(acked - stored)} acknowledged judgments lost"
    assert len(stored) % 4 == 0  # submissions are all-or-nothing (4 dimensions each)
