"""Fitting a proposal's literal constants and beta scale: the inner search, its record, its rewrite."""

from __future__ import annotations

import ast
import math

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
