"""Paired comparison of two losses scored on the same suite: common random numbers.

Every run of a seed shares its reference model, preference pairs, flipped labels and sampling
noise whatever the loss, so two losses' scores on one seed are positively correlated and their
*difference* is far less noisy than either score. Pairing runs by (group, seed) and taking the
s.e. of the per-seed differences removes that shared noise; the unpaired s.e.
sqrt(se_a^2 + se_b^2) does not.

The per-seed score is the suite's own (``evaluators.metrics.suite_fitness``): the runs of one
group and seed (its noise rates x betas) combined by ``scoring.beta_aggregate``. Per group: mean
difference over seeds, s.e. = s.d. of the per-seed differences / sqrt(n_seeds); over groups:
mean of the group means, s.e. = sqrt(sum se_g^2) / n_groups -- exactly the fitness formula applied
to differences, so ``difference == fitness_a - fitness_b`` when both cover the same runs.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from statistics import fmean, stdev
from typing import Any, Hashable

from evaluators.results import RunResult, SuiteResult, finite_or_none
from evaluators.suites import Scoring

DETECTABLE_AT = 2.0  # a difference is called real when it exceeds this many paired s.e.


@dataclass(frozen=True)
class PairedDifference:
    """``candidate - baseline`` on one suite, with its paired and (for contrast) unpaired s.e."""

    suite: str
    candidate: str
    baseline: str
    difference: float
    se: float            # paired s.e. (nan with a single seed per group)
    n: int               # paired units: (group, seed) cells
    unpaired_se: float   # sqrt(se_a^2 + se_b^2): what ignoring the common random numbers would give

    @property
    def detectable(self) -> float:
        """Smallest difference this comparison can call real: ``DETECTABLE_AT`` paired s.e."""
        return DETECTABLE_AT * self.se

    @property
    def z(self) -> float:
        """The difference in paired s.e. (nan without an s.e.)."""
        return self.difference / self.se if self.se > 0 else math.nan

    @property
    def significant(self) -> bool:
        """Candidate better by more than ``DETECTABLE_AT`` paired s.e."""
        return math.isfinite(self.se) and self.difference > DETECTABLE_AT * self.se

    def to_dict(self) -> dict[str, Any]:
        return finite_or_none({**asdict(self), "detectable": self.detectable, "z": self.z,
                               "significant": self.significant})


def _group_key(run: RunResult) -> Hashable:
    """The suite group a run belongs to (index recorded by ``evaluate_loss``; else its task identity)."""
    if "group" in run.extra:
        return int(run.extra["group"])
    params = tuple(sorted((k, repr(v)) for k, v in (run.extra.get("task_params") or {}).items()))
    return (run.tier, run.task, params)


def _cells(result: SuiteResult, beta_aggregate: str) -> dict[Hashable, dict[int, float]]:
    """group -> seed -> the seed's score (its runs combined as the fitness combines them)."""
    scores: dict[Hashable, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in result.runs:
        if "score" not in run.extra:
            raise ValueError(f"{result.loss} on {result.suite}: run without a score; evaluate it with evaluate_loss")
        scores[_group_key(run)][run.seed].append(float(run.extra["score"]))
    combine = max if beta_aggregate == "max" else fmean
    return {g: {s: combine(v) for s, v in seeds.items()} for g, seeds in scores.items()}


def _instances(result: SuiteResult, *, with_beta: bool) -> Counter:
    return Counter((_group_key(r), r.tier, r.task, r.seed, r.noise) + ((r.beta,) if with_beta else ())
                   for r in result.runs)


def _mean_se(per_group: list[list[float]]) -> tuple[float, float]:
    means = [fmean(xs) for xs in per_group]
    ses = [stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan for xs in per_group]
    return fmean(means), math.sqrt(sum(s * s for s in ses)) / len(ses)


def paired_difference(candidate: SuiteResult, baseline: SuiteResult, scoring: Scoring = Scoring(), *,
                      same_betas: bool = True) -> PairedDifference:
    """``candidate - baseline`` paired by (group, seed); refuses results that are not the same instances.

    ``same_betas=False`` pairs results whose beta sweeps differ (each loss at its own tuned beta):
    seeds, data, labels and noise are still common, and each seed's score is still its beta-aggregate.
    """
    if not candidate.runs or not baseline.runs:
        raise ValueError(f"cannot pair {candidate.loss} with {baseline.loss}: a result has no runs")
    if _instances(candidate, with_beta=same_betas) != _instances(baseline, with_beta=same_betas):
        raise ValueError(
            f"cannot pair {candidate.loss} ({candidate.suite}) with {baseline.loss} ({baseline.suite}): "
            "their runs are not the same instances (group, seed, noise" + (", beta" if same_betas else "")
            + "); score both on the same suite and seeds")
    a, b = _cells(candidate, scoring.beta_aggregate), _cells(baseline, scoring.beta_aggregate)
    groups = sorted(a, key=repr)
    diffs = [[a[g][s] - b[g][s] for s in sorted(a[g])] for g in groups]
    difference, se = _mean_se(diffs)
    _, se_a = _mean_se([list(a[g].values()) for g in groups])
    _, se_b = _mean_se([list(b[g].values()) for g in groups])
    return PairedDifference(suite=candidate.suite, candidate=candidate.loss, baseline=baseline.loss,
                            difference=difference, se=se, n=sum(len(d) for d in diffs),
                            unpaired_se=math.sqrt(se_a * se_a + se_b * se_b))
