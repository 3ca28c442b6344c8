"""Shared storage: a campaign on a real PostgreSQL server passes the same kill -9 + resume test as
on SQLite and ends with the same archive as the SQLite run (a throwaway cluster on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_campaign import _committed_evaluations, _stage_events, archive
from tests.pg_fixture import INITDB, pg_server, pg_url  # noqa: F401  (fixtures)

HERE = Path(__file__).parent
pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.skipif(not INITDB, reason="needs Debian postgresql (run scripts/services)")]


def _run(out: Path, url: str | None, *, resume: bool = False, crash: str | None = None,
         calls: Path | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    for key in ("PREFDISCO_CRASH_AT", "FAKEPOOL_LOG"):
        env.pop(key, None)
    if crash:
        env["PREFDISCO_CRASH_AT"] = crash
    if calls:
        env["FAKEPOOL_LOG"] = str(calls)
    if url is None:
        cmd = [sys.executable, str(HERE / "fake_campaign_main.py"), str(out)]
    else:
        cmd = [sys.executable, str(HERE / "url_campaign_main.py"), str(out), url]
    return subprocess.run(cmd + (["--resume"] if resume else []), env=env, capture_output=True,
                          timeout=120).returncode


@pytest.fixture(scope="module")
def sqlite_reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sqlite") / "campaign"
    assert _run(out, None) == 0
    return out


@pytest.mark.timeout(240)
@pytest.mark.parametrize("crash", ["evaluation:9", "db_write:25"])
def test_postgres_campaign_kill9_resume_matches_sqlite(pg_url, sqlite_reference, tmp_path, crash):
    out = tmp_path / "pg"
    assert _run(out, pg_url, crash=crash) == -9  # SIGKILL mid-campaign
    assert not (out / "campaign.db").exists()  # the archive really lives in PostgreSQL
    committed = _committed_evaluations(out)
    assert committed
    calls = tmp_path / "resume_calls.jsonl"
    assert _run(out, pg_url, resume=True, calls=calls) == 0
    assert archive(out) == archive(sqlite_reference)  # nothing lost; same result as on SQLite
    assert _committed_evaluations(out) == _committed_evaluations(sqlite_reference)
    redone = {tuple(json.loads(line)) for line in calls.read_text().splitlines()} & committed
    assert not redone  # nothing finished before the kill was evaluated again
    assert max(_stage_events(out).values()) == 1


class ScoringExecutor:
    """Test double of an executor for the tuning job: scores a trial from its beta/lr multipliers
    (best at 2x beta, 0.5x lr) without training, so storage behaviour is tested in seconds."""

    num_workers = 2

    def run_job(self, code, job, kwargs, timeout_s=None):
        import math
        from types import SimpleNamespace

        f = 0.3 - math.log(kwargs["beta_scale"] / 2.0) ** 2 - math.log(kwargs["lr_scale"] / 0.5) ** 2
        f += 0.01 * (kwargs["seed_index"] or 0)
        return SimpleNamespace(ok=True, value={"fitness": f, "fitness_se": 0.01, "per_task": {"a": f}},
                               failure_class=None, message="")


@pytest.mark.timeout(120)
def test_tuning_studies_and_results_live_in_postgres(pg_url, tmp_path):
    import optuna
    import sqlalchemy as sa

    from discovery.tuning.tuner import Tuner, TuningConfig, load_tuned_results

    out = tmp_path / "pg"
    assert _run(out, pg_url) == 0
    tuner = Tuner(out, TuningConfig(top_k=1, trials=5, baselines=["dpo"], heldout=False, pruning=False,
                                    heartbeat_interval_s=1, grace_period_s=3), ScoringExecutor())
    try:
        report = tuner.run()
    finally:
        tuner.close()
    names = {s.study_name for s in optuna.get_all_study_summaries(pg_url)}
    assert len(names) == 2 and all("/tune/" in n for n in names)
    stored = load_tuned_results(pg_url)
    assert {r["candidate_id"] for r in report["results"]} == set(stored)
    for r in stored.values():
        assert r["trials_complete"] == 5 and r["tuned_fitness"] >= r["default_trial_fitness"]
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:  # the claim sits in the campaign's meta table, in PostgreSQL
            claim = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'tuning_claim'")).scalar_one()
    finally:
        engine.dispose()
    assert "tuned DPO" in json.loads(claim)["text"]
