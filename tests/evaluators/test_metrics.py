from __future__ import annotations

import json
import math

import pytest

from evaluators.metrics import run_score, suite_fitness, win_rate
from evaluators.results import RunResult, SuiteResult
from evaluators.suites import Scoring


def run(seed: int, beta: float, gold: float, kl: float = 1.0, flags=None, ref: float = 0.0) -> RunResult:
    return RunResult("t", "bandit", seed, beta, 0.1, gold, kl, 0.5, 0.5, flags=list(flags or []),
                     extra={"reference_reward": ref, "reward_range": 2.0})


def test_run_score_formula() -> None:
    s = Scoring(kl_weight=0.5, failure_score=-0.7)
    assert run_score(run(0, 0.1, 1.0), s, kl_budget=2.0) == pytest.approx(0.5)       # within budget
    assert run_score(run(0, 0.1, 1.0, kl=4.0), s, 2.0) == pytest.approx(0.5 - 0.5)   # 2x budget
    assert run_score(run(0, 0.1, -0.8, ref=0.5), s, 2.0) == pytest.approx(-0.65)
    assert run_score(run(0, 0.1, 1.0, flags=["nan"]), s, 2.0) == -0.7
    assert run_score(run(0, 0.1, 1.0, flags=["no_gradient"]), s, 2.0) == pytest.approx(0.5)
    assert run_score(run(0, 0.1, math.nan), s, 2.0) == -0.7
    assert run_score(run(0, 0.1, 1.0, kl=40.0), s, 2.0) == -0.7   # huge KL: floored at failure


def test_aggregate_frontier_over_betas_mean_over_seeds() -> None:
    runs = [run(0, 0.1, 0), run(0, 0.5, 0), run(1, 0.1, 0), run(1, 0.5, 0), run(0, 0.1, 0)]
    scores = [0.2, 0.4, 0.1, 0.0, 0.6]
    for r, s in zip(runs, scores):
        r.extra["score"] = s
    groups = [0, 0, 0, 0, 1]
    fit, se, per = suite_fitness(runs, groups, ["a", "b"], Scoring(beta_aggregate="max"))
    assert per == {"a": pytest.approx(0.25), "b": pytest.approx(0.6)}   # a: mean(max(.2,.4), max(.1,0))
    assert fit == pytest.approx((0.25 + 0.6) / 2)
    assert se == pytest.approx(math.sqrt(0.15 ** 2 + float("nan") ** 2) / 2, nan_ok=True)
    fit_mean, _, per_mean = suite_fitness(runs[:4], groups[:4], ["a"], Scoring(beta_aggregate="mean"))
    assert per_mean["a"] == pytest.approx((0.3 + 0.05) / 2) == fit_mean
    _, se_a, _ = suite_fitness(runs[:4], groups[:4], ["a"], Scoring())
    assert se_a == pytest.approx(0.15)   # sd(0.4, 0.1) / sqrt(2)


def test_win_rate_counts_ties_half() -> None:
    assert win_rate([1, 0, 0.5], [0, 1, 0.5]) == pytest.approx(0.5)
    assert win_rate([1, 1], [0, 0]) == 1.0


def test_results_round_trip_through_json() -> None:
    r = run(0, 0.1, math.nan, flags=["nan"])
    result = SuiteResult("x", "screen", 0.1, math.nan, [r], wall_time_s=1.0, per_task={"a": 0.1})
    d = json.loads(json.dumps(result.to_dict()))
    assert set(d) >= {"loss", "suite", "fitness", "fitness_se", "runs"}
    assert d["fitness_se"] is None and d["runs"][0]["gold_reward"] is None
    back = SuiteResult.from_dict(d)
    assert math.isnan(back.fitness_se) and math.isnan(back.runs[0].gold_reward)
    assert back.runs[0].flags == ["nan"] and back.runs[0].failed
