"""Fitting a proposal's literal constants and beta scale: the inner search, its record, its rewrite."""

from __future__ import annotations

import ast
import math

import pytest

from candidate_losses import get_loss
from discovery.config import FitConfig
from discovery.proposers.grammar import LabelSmoothing, Link
from discovery.sandbox import validate_source
from discovery.search.campaign import baseline_code
from discovery.search.fitting import BETA_FIT, fit_constants, literal_constants, with_constants

MISSCALED = '''def wide_hinge(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """A hinge whose margin (3.0) is ten times too wide for this evaluator."""
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return torch.relu(3.0 - beta * h) + 0.5 * torch.clamp(h, min=-20.0)[0:1].sum() * 0.0
'''


def beta_scale_of(code: str) -> float:
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Assign) and node.targets[0].id == BETA_FIT:
            return float(node.value.right.value)
    return 1.0


def tiny_evaluator(calls: list[str]):
    """A stand-in for a suite (reads the code, never runs it): best at margin 0.3 and beta scale 1."""
    def evaluate(code: str) -> tuple[float | None, str]:
        calls.append(code)
        margin = literal_constants(code)[0]
        return 1.0 - math.log(margin / 0.3) ** 2 - 0.1 * math.log(beta_scale_of(code)) ** 2, ""
    return evaluate


def test_literal_constants_skip_guards_indices_and_zero():
    assert literal_constants(MISSCALED) == [3.0, 0.5]  # not min=-20.0, not the slice, not 0.0


def test_with_constants_rewrites_literals_and_scales_beta_after_the_docstring():
    code = with_constants(MISSCALED, [0.3, 0.25], beta_scale=2.0)
    assert validate_source(code) == []
    assert literal_constants(code) == [0.3, 0.25] and beta_scale_of(code) == 2.0
    fn = ast.parse(code).body[0]
    assert isinstance(fn.body[0].value, ast.Constant) and fn.body[1].targets[0].id == BETA_FIT
    assert "beta * h" not in code and f"{BETA_FIT} * h" in code and "min=-20.0" in code
    # a fitted program is still a parent the grammar can rewrite
    assert LabelSmoothing(0.1).render([code], "ls") is not None
    dpo_fitted = with_constants(baseline_code(get_loss("dpo").source), [], beta_scale=0.5)
    assert validate_source(Link("hinge", 1.0).render([dpo_fitted], "h")) == []


def test_fitting_repairs_a_misscaled_constant_and_records_every_trial():
    calls: list[str] = []
    cfg = FitConfig(trials=12, max_constants=1, constant_range=20.0, beta_range=2.0)
    result = fit_constants(MISSCALED, tiny_evaluator(calls), cfg, seed=1)
    assert len(result.trials) == 12 == len(calls)  # every trial is one evaluation, all recorded
    assert calls[0] == MISSCALED and result.trials[0].constants == [3.0] and result.trials[0].beta_scale == 1.0
    untuned, best = result.trials[0].fitness, result.trials[result.best].fitness
    assert best == max(t.fitness for t in result.trials) and best > untuned + 1.0
    assert result.gain == best - untuned
    assert abs(math.log(literal_constants(result.code)[0] / 0.3)) < abs(math.log(3.0 / 0.3)) / 2
    assert result.code == calls[result.best]  # the stored code is the scored code
    assert literal_constants(result.code)[1] == 0.5  # beyond max_constants: left alone
    again = fit_constants(MISSCALED, tiny_evaluator([]), cfg, seed=1)
    assert [t.fitness for t in again.trials] == [t.fitness for t in result.trials]  # seeded: deterministic
    d = result.to_dict()
    assert d["best"] == result.best and len(d["trials"]) == 12 and set(d["trials"][0]) >= {"constants", "fitness"}


def test_a_failing_trial_is_recorded_and_never_chosen():
    def evaluate(code: str) -> tuple[float | None, str]:
        return (None, "non_finite: boom") if code != MISSCALED else (0.2, "")
    result = fit_constants(MISSCALED, evaluate, FitConfig(trials=3), seed=0)
    assert result.best == 0 and result.code == MISSCALED and result.gain == 0.0
    assert [t.error for t in result.trials[1:]] == ["non_finite: boom"] * 2


def test_refitting_fitted_code_folds_the_beta_scales():
    once = with_constants(MISSCALED, [0.3], beta_scale=2.0)
    assert literal_constants(once) == [0.3, 0.5]  # the scale is not a literal to fit again
    twice = with_constants(once, [0.4], beta_scale=1.5)
    assert beta_scale_of(twice) == 3.0 and twice.count(BETA_FIT) == once.count(BETA_FIT)
    assert validate_source(twice) == []


# ---- the fit stage in a campaign (FakePool: scores from the code text, no training) -------------------

FIT_MAIN = """
import signal, sys
sys.path[:0] = [{tests!r}, {root!r}]
from conftest import FakePool
from fake_campaign_main import CONFIG
from discovery.config import config_from_dict
from discovery.sandbox import validate_source
from discovery.search.campaign import Campaign
from discovery.search.progress import ProgressView
kwargs = dict(pool=FakePool(), validate=validate_source, progress=ProgressView(enabled=False))
out = sys.argv[1]
if "--resume" in sys.argv:
    Campaign.resume(out, **kwargs).run()
else:
    cfg = config_from_dict({{**CONFIG, "budget": {{"max_candidates": 8}}, "fit": {{"trials": 3, "suite": "calibrated_screen"}}}})
    Campaign.create(cfg, out, **kwargs).run()
"""


def _fit_main(tmp_path, out, *, resume: bool, crash: str | None = None, calls=None) -> int:
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    script = tmp_path / "fit_main.py"
    script.write_text(FIT_MAIN.format(tests=str(here), root=str(here.parents[1])))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFDISCO_CRASH_AT", "FAKEPOOL_LOG")}
    if crash:
        env["PREFDISCO_CRASH_AT"] = crash
    if calls:
        env["FAKEPOOL_LOG"] = str(calls)
    cmd = [sys.executable, str(script), str(out)] + (["--resume"] if resume else [])
    return subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False).returncode


def _fit_archive(out) -> list[tuple]:
    from discovery.archive.campaign_dir import CampaignDir

    db = CampaignDir.open(out).database()
    try:
        return [(r.id, str(r.status), r.code, r.fitness, str(db.stage_result(r.id, "fit"))) for r in db.all()]
    finally:
        db.close()


@pytest.mark.slow
def test_kill9_during_fitting_then_resume_redoes_no_finished_trial(tmp_path):
    import json

    from discovery.archive.campaign_dir import CampaignDir

    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    assert _fit_main(tmp_path, reference, resume=False) == 0
    ref = _fit_archive(reference)
    assert any("'trials'" in r[4] for r in ref)
    # 4 baselines x (screen + fitness) = 8 evaluations, then the proposals' fit trials: die in the 3rd pair
    assert _fit_main(tmp_path, crashed, resume=False, crash="evaluation:13") == -9
    db = CampaignDir.open(crashed).database()
    unfinished = [c for c in db.all() if db.stage_result(c.id, "fit") is None]  # still fitting when killed
    stored = {(c.id, json.dumps(t)) for c in unfinished for t in db.fit_trials(c.id)}
    fit_codes = {c.id: c.code for c in unfinished}  # as proposed: their fit stage has not replaced it
    db.close()
    assert stored, "no fitting trial was finished before the kill of an unfinished fit stage"
    calls = tmp_path / "calls.jsonl"
    assert _fit_main(tmp_path, crashed, resume=True, calls=calls) == 0
    assert _fit_archive(crashed) == ref  # nothing lost: the same archive, fitted codes and trial records
    redone = [json.loads(line) for line in calls.read_text().splitlines()]
    for cid, trial in stored:  # a stored trial's code (rebuilt from its record) is never evaluated again
        t = json.loads(trial)
        code = fit_codes[cid] if t["number"] == 0 else with_constants(fit_codes[cid], t["constants"], t["beta_scale"])
        assert ["calibrated_screen", code] not in redone, t
    assert any(kind == "calibrated_screen" for kind, _ in redone)  # the unfinished trials did run on resume


def test_complements_stay_complements():
    from discovery.proposers.grammar import GateMix

    dpo, hinge = (baseline_code(get_loss(n).source) for n in ("dpo", "hinge"))
    gated = GateMix(0.25).render([dpo, hinge], "g")
    assert literal_constants(gated) == [0.25]  # not the 1.0 of (1.0 - gate); hinge's int 1 is no float
    smoothed = LabelSmoothing(0.1).render([dpo], "s")
    assert literal_constants(smoothed) == [0.1]


def test_fitting_trials_count_in_the_evaluation_budget(tmp_path):
    from conftest import FakePool
    from fake_campaign_main import CONFIG

    from discovery.config import config_from_dict
    from discovery.sandbox import validate_source
    from discovery.search.campaign import Campaign
    from discovery.search.fitting import fit_trials, suite_evaluations
    from discovery.search.progress import ProgressView

    def run(out, fit):
        cfg = config_from_dict({**CONFIG, "generation_size": 2, "pipeline_lag": 0, "fit": {"trials": fit},
                                "budget": {"max_candidates": 12, "max_evaluations": 12}})
        c = Campaign.create(cfg, out, pool=FakePool(), validate=validate_source, progress=ProgressView(enabled=False))
        return c.run()

    plain, fitted = run(tmp_path / "plain", 0), run(tmp_path / "fitted", 3)
    assert plain.stopped_by == fitted.stopped_by == "budget: evaluations"
    assert plain.fit_evaluations == 0 and fitted.fit_evaluations > 0
    assert fitted.candidates < plain.candidates  # the same budget buys fewer proposals when each is fitted
    from discovery.archive.campaign_dir import CampaignDir

    db = CampaignDir.open(tmp_path / "fitted").database()
    rows = [r for r in db.all() if not r.is_baseline]
    assert fitted.fit_evaluations == sum(fit_trials(r) for r in rows) == 3 * sum(
        db.stage_result(r.id, "fit") is not None for r in rows)
    assert fitted.suite_evaluations == sum(suite_evaluations(r) for r in rows) >= 12
    db.close()
