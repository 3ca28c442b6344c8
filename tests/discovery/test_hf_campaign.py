"""A discovery campaign whose fitness suite is a real-model (`hf`) suite: sandboxed evaluations read
the test's tiny stand-ins (random-init GPT-2 + two-class classifier saved to a temp dir, local
JSONL) bound read-only; it runs to its budget, and a `kill -9` mid-campaign then `--resume`
finishes it without redoing any committed evaluation."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from discovery.archive.campaign_dir import CampaignDir
from discovery.archive.log import read_log
from tests import tiny_hf

ROOT = Path(__file__).resolve().parents[2]


def _write_campaign(tmp: Path, betas: list[float] = [0.5], **cascade) -> Path:
    """A campaign whose fitness and held-out suites are tiny `extends: imdb` suites (plus `cascade`)."""
    policy = tiny_hf.build_tiny_gpt2(tmp / "gpt2")
    classifier = tiny_hf.build_tiny_classifier(tmp / "classifier")
    texts = tiny_hf.write_jsonl(tmp / "texts.jsonl", tiny_hf.review_texts(30))
    held = tiny_hf.write_jsonl(tmp / "texts_test.jsonl", tiny_hf.review_texts(8, seed=1))
    settings = {"model": {"policy": str(policy), "device": "cpu"},
                "data": {"dataset": str(texts), "eval_dataset": str(held), "train_pairs": 16, "heldout_pairs": 4,
                         "eval_prompts": 4},
                "train": {"steps": 2, "batch_size": 4, "micro_batch": 2, "max_length": 32, "lr": 5.0e-3},
                "generation": {"max_new_tokens": 4, "min_new_tokens": 4, "batch_size": 8},
                "reward": {"model": str(classifier), "batch_size": 8}, "betas": list(betas)}
    (tmp / "imdb-tiny.yaml").write_text(yaml.safe_dump({"extends": "imdb", "name": "imdb-tiny", "set": settings}))
    (tmp / "imdb-tiny-heldout.yaml").write_text(yaml.safe_dump(  # unseen seed: no instance shared with fitness
        {"extends": "imdb", "name": "imdb-tiny-heldout", "set": {**settings, "seeds": [7]}}))
    config = {"name": "hf-campaign", "seed": 0, "baselines": ["dpo"], "generation_size": 1, "pipeline_lag": 0,
              "workers": 1, "proposer": {"kind": "mutation"},
              "cascade": {"screen_suite": None, "fitness_suite": "imdb-tiny.yaml", "heldout_suite": "imdb-tiny-heldout.yaml",
                          "heldout_top_k": 0, "job_timeout_s": 300, "cache_dir": "cache", **cascade},
              "budget": {"max_candidates": 2}}
    path = tmp / "campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _prefdisco(*args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("PREFDISCO_CRASH_AT", None)
    if crash:
        env["PREFDISCO_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "discovery.commands", *args], env=env, capture_output=True,
                          text=True, timeout=900, cwd=ROOT)


def _stage_events(out: Path) -> collections.Counter:
    return collections.Counter((e["id"], e["stage"]) for e in read_log(out / "log.jsonl") if e["event"] == "stage_done")


@pytest.mark.slow
def test_hf_fitness_campaign_runs_to_budget_and_resumes_after_kill9(tmp_path):
    # The hf suite serves as screen, fitness and held-out (top 1 and DPO) suite.
    config = _write_campaign(tmp_path, screen_suite="imdb-tiny.yaml", heldout_top_k=1)
    out = tmp_path / "run"
    # The 3rd "evaluation" point: DPO's fitness job has finished and been committed (baselines skip
    # the screen); the kill lands while the first candidate's screen job is in flight.
    killed = _prefdisco("run", str(config), "--out", str(out), crash="evaluation:3")
    assert killed.returncode == -9, killed.stderr[-2000:]
    before = _stage_events(out)
    assert before[("base-00", "fitness")] == 1 and ("g001-s00", "screen") not in before

    resumed = _prefdisco("run", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = CampaignDir.open(out).database().all()
    candidates = [r for r in rows if r.origin != "baseline"]
    assert len(candidates) == 2  # the budget
    evaluated = [r for r in rows if r.status == "evaluated"]
    assert any(r.name == "dpo" for r in evaluated) and all(r.fitness is not None for r in evaluated)
    after = _stage_events(out)
    assert max(after.values()) == 1, [k for k, v in after.items() if v > 1]  # nothing redone
    dpo = next(r for r in rows if r.name == "dpo")
    assert dpo.fitness is not None and -0.5 < dpo.fitness <= 1.0  # -0.5 would be a failed run
    assert dpo.heldout is not None and after[("base-00", "heldout")] == 1  # the held-out stage ran on hf too
    assert all(r.screen_fitness is not None for r in candidates)  # and the screen stage
    assert any(r.fitness > -0.5 for r in candidates)  # candidates trained in the sandbox, not just failed


@pytest.mark.slow
def test_split_runs_saves_each_finished_run_and_resume_does_not_retrain_it(tmp_path):
    import sqlite3

    config = _write_campaign(tmp_path, betas=[0.1, 1.0], split_runs=True)
    out = tmp_path / "run"
    killed = _prefdisco("run", str(config), "--out", str(out), crash="evaluation:1")  # after DPO's first run
    assert killed.returncode == -9, killed.stderr[-2000:]
    (folder,) = (out / "run_checkpoints").iterdir()
    saved = sorted(p.name for p in folder.glob("*.json"))
    assert saved == ["0.json"]
    stamp = (folder / "0.json").stat().st_mtime_ns

    resumed = _prefdisco("run", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (folder / "0.json").stat().st_mtime_ns == stamp and (folder / "1.json").exists()
    with sqlite3.connect(out / "campaign.db") as db:
        (raw,) = db.execute("SELECT result FROM evaluations WHERE candidate_id = 'base-00' AND stage = 'fitness'").fetchone()
    result = json.loads(raw)
    assert result["resumed_runs"] == 1 and [r["beta"] for r in result["runs"]] == [0.1, 1.0]
    assert all(r["flags"] == [] for r in result["runs"]) and result["fitness"] > -0.5
    rows = CampaignDir.open(out).database().all()
    assert len([r for r in rows if r.origin != "baseline"]) == 2 and all(r.fitness is not None for r in rows)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hf_campaign_on_ray_actors_matches_the_local_executor(tmp_path):
    """The same hf campaign (runs split into one job each) on two Ray actors, each with its own
    sandbox pool (on a GPU machine: one actor per GPU via num_gpus_per_worker), gives the local
    executor's scores. CPU only here: GPU placement and bf16 are not exercised."""
    pytest.importorskip("ray")
    scores = {}
    for executor in ("local", "ray"):
        folder = tmp_path / executor
        folder.mkdir()
        config = _write_campaign(folder, betas=[0.1, 1.0], split_runs=True)
        data = yaml.safe_load(config.read_text())
        data.update(executor=executor, workers=2)
        data["budget"]["max_candidates"] = 1
        config.write_text(yaml.safe_dump(data))
        done = _prefdisco("run", str(config), "--out", str(folder / "run"))
        assert done.returncode == 0, done.stderr[-3000:]
        rows = CampaignDir.open(folder / "run").database().all()
        scores[executor] = {r.name: r.fitness for r in rows}
    assert scores["ray"] == scores["local"] and len(scores["ray"]) == 2
    assert all(v is not None and v > -0.5 for v in scores["ray"].values())
