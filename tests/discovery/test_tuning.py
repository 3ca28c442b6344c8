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
from discovery.tuning.scaled_suite import scaled_suite, training_split_seeds
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


def test_training_split_is_the_same_tier_on_seeds_disjoint_from_the_suite():
    heldout = load_suite("calibrated_heldout")
    split = scaled_suite(heldout, split_seeds=training_split_seeds(heldout))
    assert not {s.instance for s in split.instances()} & {s.instance for s in heldout.instances()}
    (g,), (h,) = split.groups, heldout.groups
    assert len(g.seeds) == len(h.seeds) and (g.tier, g.task, g.betas, g.noises, g.config) == (h.tier, h.task, h.betas,
                                                                                             h.noises, h.config)
    with pytest.raises(ValueError, match="own seeds"):
        scaled_suite(heldout, split_seeds=[h.seeds[0], 99])
    fewer = heldout.with_overrides(seeds=2)  # a campaign scoring held-out on 2 of its seeds
    assert training_split_seeds(fewer, avoid=heldout) == [max(h.seeds) + 1, max(h.seeds) + 2]


def test_tuner_tunes_on_the_heldout_tier_split_and_uses_those_settings_on_heldout(tmp_path):
    """Every trial runs the held-out suite's tier on the split's seeds; the tuned held-out run uses the
    factors that study found, in the held-out suite's own units -- nothing tuned on the fitness suite."""
    from conftest import FakeJob, FakePool
    from discovery.archive.campaign_dir import CampaignDir
    from discovery.config import config_from_dict
    from discovery.sandbox import validate_source
    from discovery.search.campaign import Campaign
    from discovery.search.progress import ProgressView
    from discovery.tuning.config import TuningConfig
    from discovery.tuning.tuner import Tuner
    from fake_campaign_main import CONFIG

    cfg = config_from_dict({**CONFIG, "budget": {"max_candidates": 4},
                            "cascade": {"fitness_suite": "calibrated_quickstart", "heldout_suite": "calibrated_heldout",
                                        "screen_suite": None, "heldout_top_k": 1}})
    Campaign.create(cfg, tmp_path / "c", pool=FakePool(), validate=validate_source,
                    progress=ProgressView(enabled=False)).run()

    class Recording(FakePool):
        num_workers = 1
        jobs: list = []

        def run_job(self, code, job, kwargs, timeout_s=None):
            self.jobs.append(dict(kwargs))
            best_at = 1.7  # a setting the study can find: the score peaks at beta x 1.7
            return FakeJob(True, {"fitness": 1.0 - abs(kwargs["beta_scale"] - best_at), "fitness_se": 0.01,
                                  "runs": [], "per_task": {"t": 1.0 - abs(kwargs["beta_scale"] - best_at)}}, None, "")

    pool = Recording()
    tuner = Tuner(tmp_path / "c", TuningConfig(top_k=1, trials=4, baselines=["dpo"], pruning=False), pool)
    try:
        out = tuner.run()
    finally:
        tuner.close()
    heldout = load_suite("calibrated_heldout")
    held_seeds = {s for g in heldout.groups for s in g.seeds}
    trials = [j for j in pool.jobs if j["split_seeds"] is not None]
    finals = [j for j in pool.jobs if j["split_seeds"] is None]
    assert trials and all(j["suite"] == "calibrated_heldout" for j in pool.jobs)  # never the fitness suite
    assert all(not set(j["split_seeds"]) & held_seeds for j in trials)
    assert len(trials) == 2 * 4 * len(heldout.groups[0].seeds)  # 2 studies x 4 trials x one job per split seed
    for r in out["results"]:
        assert r["tuning_suite"].startswith("calibrated_heldout on seeds")
        ratio = r["params"]["beta"] / heldout.groups[0].betas[0]
        assert any(j["beta_scale"] == pytest.approx(ratio) for j in finals)  # tuned held-out: the split's factor
    assert CampaignDir.open(tmp_path / "c").config().cascade.fitness_suite == "calibrated_quickstart"


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
        if trials[number].params:  # a trial killed before its first suggestion has no parameters to carry
            assert retry[0].params == trials[number].params

    report = json.loads(resumed.stdout)
    dpo = next(r for r in report["results"] if r["name"] == "dpo")
    # studies ran on the held-out tier's training split: trial 0 is DPO untuned on exactly that split
    from evaluators.api import evaluate_loss

    heldout = load_suite(SUITES / "tiny_heldout.yaml")
    split = scaled_suite(heldout, split_seeds=training_split_seeds(heldout))
    assert not {s.instance for s in split.instances()} & {s.instance for s in heldout.instances()}
    assert dpo["default_trial_fitness"] == pytest.approx(evaluate_loss("dpo", split).fitness, abs=1e-9)
    assert dpo["tuned_fitness"] >= dpo["default_trial_fitness"] and dpo["tuning_suite"].startswith("tiny_heldout on seeds")
    assert math.isfinite(dpo["tuned_heldout"]) and dpo["untuned_heldout"] is not None
    # the verdict: held-out, tuned finalist vs tuned DPO, paired by seed
    claim = report["claim"]
    assert "tuned DPO" in claim["text"] and "(paired s.e., n=2)" in claim["text"] and claim["n"] == 2
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
