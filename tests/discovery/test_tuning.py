"""Tuning finalists and baselines with Optuna: search space, seed-wise scoring, kill -9 + resume."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from candidate_losses.source import keyword_hyperparameters
from discovery.tuning.results import load_tuned_results
from discovery.tuning.tuner import combine_seeds
from discovery.tuning.scaled_suite import scaled_suite
from evaluators.metrics import suite_fitness
from evaluators.suites import load_suite
from tiny_campaign import SUITES, run_tiny_campaign

ROOT = Path(__file__).resolve().parents[2]


def test_keyword_hyperparameters_are_read_not_run():
    code = ("import torch\n"
            "def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,\n"
            "         reference_rejected_logps, beta, tau=0.05, k=3, flag=True, name='x', *, gamma=-0.5,\n"
            "         w=float('nan')):\n"
            "    raise SystemExit('never executed')\n")
    assert keyword_hyperparameters(code) == {"tau": 0.05, "k": 3, "gamma": -0.5}
    plain = ("def f(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,\n"
             "      reference_rejected_logps, beta):\n    return 0\n")
    assert keyword_hyperparameters(plain) == {}


def test_scaled_suite_at_unit_scale_is_the_suite_and_scales_betas_and_lr():
    suite = load_suite(SUITES / "tiny_fitness.yaml")
    assert scaled_suite(suite).instances() == suite.instances()
    s = scaled_suite(suite, beta_scale=2.0, lr_scale=0.5, seed_index=1)
    (g0,), (g,) = suite.groups, s.groups
    assert g.seeds == (g0.seeds[1],)
    assert g.betas == tuple(2.0 * b for b in g0.betas)
    assert g.config["train"]["lr"] == pytest.approx(0.5 * g0.config["train"]["lr"])
    assert g0.config["train"]["lr"] == 0.05  # the original is untouched


def test_seedwise_combination_equals_the_suites_own_fitness():
    """Per-seed jobs recombined must give exactly the suite fitness (so trial 0 = untuned score)."""
    from evaluators.results import RunResult
    from evaluators.suites import Scoring

    scores = {(0, 10): [0.1, 0.3], (0, 11): [0.2, 0.05], (1, 10): [0.4, 0.1], (1, 11): [0.25, 0.35]}
    runs, groups = [], []
    for (g, seed), xs in scores.items():
        for x in xs:
            run = RunResult(task="t", tier="bandit", seed=seed, beta=0.1, noise=0.1, gold_reward=0, kl=0,
                            win_rate=0, accuracy=0, flags=[], wall_time_s=0, curve=[], extra={"score": x})
            runs.append(run)
            groups.append(g)
    fitness, se, _ = suite_fitness(runs, groups, ["a", "b"], Scoring())
    per_seed = [{"fitness": None, "per_task": {"a": max(scores[(0, s)]), "b": max(scores[(1, s)])}} for s in (10, 11)]
    got, got_se = combine_seeds(per_seed)
    assert got == pytest.approx(fitness, abs=1e-12) and got_se == pytest.approx(se, abs=1e-12)


@pytest.fixture(scope="module")
def tiny_campaign(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tune") / "campaign"
    run_tiny_campaign(out)
    return out


def _tune(out: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PREFDISCO_CRASH_AT", None)
    if crash:
        env["PREFDISCO_CRASH_AT"] = crash
    cmd = [sys.executable, "-m", "discovery.commands", "tune", str(out), "--top", "1", "--trials", "3",
           "--baselines", "dpo", "--heartbeat", "1", "--workers", "2", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def _trials(out: Path) -> dict[str, list]:
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'campaign.db'}")
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials()
            for s in optuna.get_all_study_summaries(storage)}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_tuning_resumes_after_kill9_without_losing_trials(tiny_campaign, tmp_path):
    import optuna
    from optuna.trial import TrialState

    Retry = (getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # Optuna >= 4.9
             or optuna.storages.RetryFailedTrialCallback)

    out = tmp_path / "campaign"
    shutil.copytree(tiny_campaign, out)
    killed = _tune(out, crash="tuning_seed:4")  # SIGKILL mid-trial (after the 4th per-seed report)
    assert killed.returncode == -9, killed.stderr[-2000:]
    before = _trials(out)
    assert len(before) == 2  # DPO + the top candidate, one study each
    running = {(name, t.number) for name, ts in before.items() for t in ts if t.state == TrialState.RUNNING}
    assert running  # the kill left trials in flight
    done_before = {(name, t.number): (t.value, t.params) for name, ts in before.items() for t in ts
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}

    resumed = _tune(out, "--json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _trials(out)
    for name, trials in after.items():
        states = [t.state for t in trials]
        assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 3  # full budget
        assert TrialState.RUNNING not in states and TrialState.WAITING not in states
        tried = {tuple(sorted(t.params.items())) for t in trials if t.state != TrialState.FAIL}
        assert len(tried) >= 2  # the study searched beyond the untuned setting
        for t in trials:
            if (name, t.number) in done_before:  # finished work is kept, not redone
                assert (t.value, t.params) == done_before[(name, t.number)]
    for name, number in running:  # every killed trial failed and was retried with its parameters
        trials = after[name]
        assert trials[number].state == TrialState.FAIL
        retry = [t for t in trials if Retry.retried_trial_number(t) == number]
        assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert retry[0].params == trials[number].params

    report = json.loads(resumed.stdout)
    dpo = next(r for r in report["results"] if r["name"] == "dpo")
    # trial 0 is the untuned setting and reproduces the campaign's own DPO fitness exactly
    assert dpo["default_trial_fitness"] == pytest.approx(dpo["untuned_fitness"], abs=1e-9)
    assert dpo["tuned_fitness"] >= dpo["untuned_fitness"]
    assert math.isfinite(dpo["tuned_heldout"]) and dpo["untuned_heldout"] is not None
    assert "tuned DPO" in report["claim"]["text"]
    stored = load_tuned_results(f"sqlite:///{out / 'campaign.db'}")
    assert set(stored) == {r["candidate_id"] for r in report["results"]}
    assert stored[dpo["candidate_id"]]["tuned_fitness"] == dpo["tuned_fitness"]
    # the leaderboard shows tuned next to untuned scores
    from typer.testing import CliRunner

    from discovery.commands import app

    board = CliRunner().invoke(app, ["leaderboard", str(out), "--json"])
    assert board.exit_code == 0, board.output
    rows = {r["id"]: r for r in json.loads(board.output)}
    assert rows[dpo["candidate_id"]]["tuned_fitness"] == dpo["tuned_fitness"]
    assert rows[dpo["candidate_id"]]["fitness"] == dpo["untuned_fitness"]
    text = CliRunner().invoke(app, ["leaderboard", str(out)]).output
    assert "tuned" in text and "tuned DPO" in text
    # ... and so does the HTML report, with the claim made against tuned DPO
    from discovery.review.report import write_report

    html = Path(write_report(out).path).read_text()
    assert "tuned ± s.e." in html and 'id="tuning-claim"' in html and "tuned DPO" in html
    assert f"{dpo['tuned_fitness']:.4f}" in html
