"""From runs to one fitness number.

Per run (``run_score``)::

    gain    = (gold_reward - reference_reward) / reward_range          # ~[-1, 1]; 0 = no better than the reference
    penalty = kl_weight * max(0, kl / kl_budget - 1)                   # only KL beyond the group's budget costs
    score   = max(gain - penalty, failure_score)                      # nothing scores below a failure
    (a failed run -- flags nan/diverged/error/wrong_shape -- scores failure_score)

Per group (tier+task) and seed: aggregate the beta sweep -- ``max`` (default: the best point of
the reward-vs-KL frontier the loss reaches; beta is a knob every user tunes and losses differ in
their beta scale) or ``mean``. Per group: mean over seeds, with standard error s.d./sqrt(n_seeds).
Fitness = mean over groups; fitness_se = sqrt(sum se_g^2) / n_groups (groups are independent).
Every loss is scored by the same formula: no baseline is referenced anywhere in it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from statistics import mean, stdev

from typing import Any

from evaluators.results import RunResult, SuiteResult
from evaluators.suites import Scoring


def run_score(run: RunResult, scoring: Scoring, kl_budget: float) -> float:
    if run.failed:
        return scoring.failure_score
    ref = run.extra["reference_reward"]
    gain = (run.gold_reward - ref) / run.extra["reward_range"]
    penalty = scoring.kl_weight * max(0.0, run.kl / kl_budget - 1.0)
    score = gain - penalty
    return max(score, scoring.failure_score) if math.isfinite(score) else scoring.failure_score


def suite_fitness(
    runs: list[RunResult], groups: list[int], labels: list[str], scoring: Scoring,
) -> tuple[float, float, dict[str, float]]:
    """(fitness, fitness_se, per-group mean score) from scored runs; ``groups[i]`` is run i's group."""
    by_group_seed: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run, g in zip(runs, groups):
        by_group_seed[g][run.seed].append(run.extra["score"])
    group_means: list[float] = []
    group_ses: list[float] = []
    per_task: dict[str, float] = {}
    for g in sorted(by_group_seed):
        combine = max if scoring.beta_aggregate == "max" else mean
        seed_scores = [combine(scores) for scores in by_group_seed[g].values()]
        m = mean(seed_scores)
        se = stdev(seed_scores) / math.sqrt(len(seed_scores)) if len(seed_scores) > 1 else math.nan
        group_means.append(m)
        group_ses.append(se)
        per_task[labels[g]] = m
    fitness = mean(group_means)
    fitness_se = math.sqrt(sum(se * se for se in group_ses)) / len(group_ses)
    return fitness, fitness_se, per_task


def win_rate(policy_rewards: list[float], reference_rewards: list[float]) -> float:
    """P(policy sample beats the reference sample for the same prompt); ties count 1/2."""
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0
               for a, b in zip(policy_rewards, reference_rewards))
    return wins / max(1, len(policy_rewards))


def score_suite(result: SuiteResult, suite: Any) -> SuiteResult:
    """Each run's score (``extra.score``) and the suite's fitness, from the runs' measurements."""
    for run in result.runs:
        run.extra["score"] = run_score(run, suite.scoring, run.extra["kl_budget"])
    labels = [group_label(g.tier, g.task, g.task_params) for g in suite.groups]
    groups = [int(run.extra["group"]) for run in result.runs]
    result.fitness, result.fitness_se, result.per_task = suite_fitness(result.runs, groups, labels, suite.scoring)
    return result


def group_label(tier: str, task: str, params: dict[str, Any]) -> str:
    suffix = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{tier}/{task}" + (f"[{suffix}]" if suffix else "")
