from __future__ import annotations

import math
import random
from statistics import stdev

import pytest

from evaluators.metrics import suite_fitness
from evaluators.paired import paired_difference
from evaluators.results import RunResult, SuiteResult
from evaluators.suites import Scoring


def result(loss: str, scores: dict[tuple[int, float], float], *, group: int = 0, noise: float = 0.1,
           suite: str = "s") -> SuiteResult:
    """A SuiteResult whose runs carry the given (seed, beta) -> score, scored as evaluate_loss does."""
    runs = [RunResult("t", "calibrated_lm", seed, beta, noise, 0.0, 0.0, 0.5, 0.5,
                      extra={"score": score, "group": group, "task_params": {}})
            for (seed, beta), score in scores.items()]
    fitness, se, per_task = suite_fitness(runs, [group] * len(runs), ["t"] * (group + 1), Scoring())
    return SuiteResult(loss, suite, fitness, se, runs, per_task=per_task)


def test_hand_computed_example() -> None:
    # seeds 0..2, betas 0.1/0.5; beta_aggregate max -> candidate per seed 0.5, 0.3, 0.6; baseline 0.4, 0.1, 0.5
    cand = result("c", {(0, .1): .5, (0, .5): .2, (1, .1): .3, (1, .5): .1, (2, .1): .0, (2, .5): .6})
    base = result("dpo", {(0, .1): .4, (0, .5): .3, (1, .1): .1, (1, .5): .0, (2, .1): .5, (2, .5): .2})
    d = paired_difference(cand, base)
    diffs = [0.1, 0.2, 0.1]
    assert d.difference == pytest.approx(sum(diffs) / 3) == pytest.approx(cand.fitness - base.fitness)
    assert d.se == pytest.approx(stdev(diffs) / math.sqrt(3))
    assert d.n == 3 and d.detectable == pytest.approx(2 * d.se)
    assert d.unpaired_se == pytest.approx(math.hypot(cand.fitness_se, base.fitness_se))
    assert d.significant and d.to_dict()["z"] == pytest.approx(d.difference / d.se)
    mean_agg = paired_difference(cand, base, Scoring(beta_aggregate="mean"))
    assert mean_agg.difference == pytest.approx(((.35 - .35) + (.2 - .05) + (.3 - .35)) / 3)


def test_paired_se_below_unpaired_under_common_random_numbers() -> None:
    rng = random.Random(0)
    for trial in range(200):
        seeds = rng.randint(3, 8)
        shared = [rng.gauss(0, 1.0) for _ in range(seeds)]  # the seed's common random numbers
        effect = rng.uniform(-0.2, 0.2)
        cand = result("c", {(s, b): shared[s] + effect + rng.gauss(0, 0.1) for s in range(seeds) for b in (.1,)})
        base = result("d", {(s, b): shared[s] + rng.gauss(0, 0.1) for s in range(seeds) for b in (.1,)})
        d = paired_difference(cand, base)
        assert d.se < d.unpaired_se, trial
        assert d.difference == pytest.approx(cand.fitness - base.fitness)


def test_refuses_results_of_different_instances() -> None:
    a = result("c", {(0, .1): .5, (1, .1): .3})
    with pytest.raises(ValueError, match="not the same instances"):
        paired_difference(a, result("d", {(0, .1): .5, (2, .1): .3}))      # other seeds
    with pytest.raises(ValueError, match="not the same instances"):
        paired_difference(a, result("d", {(0, .1): .5, (1, .1): .3}, noise=0.2))
    with pytest.raises(ValueError, match="not the same instances"):
        paired_difference(a, result("d", {(0, .3): .5, (1, .3): .3}))      # other betas
    tuned = paired_difference(a, result("d", {(0, .3): .4, (1, .3): .1}), same_betas=False)
    assert tuned.difference == pytest.approx(0.15)  # each at its own (tuned) beta: seeds still pair
    with pytest.raises(ValueError, match="no runs"):
        paired_difference(a, SuiteResult("d", "s", 0.0, 0.0, []))


def test_multi_group_se_combines_groups_like_the_fitness() -> None:
    a = result("c", {(0, .1): .5, (1, .1): .3})
    b = result("d", {(0, .1): .4, (1, .1): .0})
    a2 = result("c", {(0, .1): .2, (1, .1): .2}, group=1)
    b2 = result("d", {(0, .1): .0, (1, .1): .1}, group=1)
    both_a = SuiteResult("c", "s", 0, 0, a.runs + a2.runs)
    both_b = SuiteResult("d", "s", 0, 0, b.runs + b2.runs)
    d = paired_difference(both_a, both_b)
    assert d.difference == pytest.approx(((0.1 + 0.3) / 2 + (0.2 + 0.1) / 2) / 2)
    se1, se2 = stdev([0.1, 0.3]) / math.sqrt(2), stdev([0.2, 0.1]) / math.sqrt(2)
    assert d.se == pytest.approx(math.hypot(se1, se2) / 2) and d.n == 4
