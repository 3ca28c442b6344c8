"""Did a campaign rediscover something real? Tuned-DPO comparison and nearest known loss.

Two small questions the rediscovery benchmark (``benchmarks/rediscovery.py``) asks of a finished
campaign whose archive started from DiscoPOP's start set only:

* *Tuning.* A loss's beta is tuned on the search's fitness runs: the beta of the sweep with the best
  mean score over seeds (``tuned_beta``). Tuned DPO is DPO at its own tuned beta, so a candidate
  cannot win by merely sitting at a better beta than DPO's default.
* *Success.* The best discovered loss, at its tuned beta, beats tuned DPO on the held-out suite by
  more than ``SUCCESS_AT`` paired s.e. (``success``; common random numbers, ``evaluators.paired``).
* *What was found.* The behaviour fingerprint (``discovery.sandbox.probe.fingerprint``: loss and
  gradients on a fixed grid of margins, betas and log-ratio splits) of the winner is compared with
  the held-back library losses' (``nearest_known``). Only the gradients are compared, each
  (beta, split) block scaled to unit RMS, by cosine distance: an added constant or an overall
  scale (which Adam nearly ignores) does not make two losses different.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import fmean
from typing import Any, Sequence

from evaluators.paired import PairedDifference

SUCCESS_AT = 2.0                 # the benchmark's bar, in paired s.e.
FINGERPRINT_BLOCKS = 6           # 3 betas x 2 log-ratio splits (discovery.sandbox.probe.fingerprint)
VALUES_PER_BLOCK = 3             # loss, d/d policy_chosen, d/d policy_rejected ...
POINTS = 21                      # ... at each of 21 margins


def per_beta_scores(result: Any) -> dict[float, list[float]]:
    """beta -> the runs' scores at that beta (seed order), from a scored ``SuiteResult``."""
    table: dict[float, dict[int, float]] = {}
    for run in result.runs:
        table.setdefault(float(run.beta), {})[run.seed] = float(run.extra["score"])
    return {b: [seeds[s] for s in sorted(seeds)] for b, seeds in sorted(table.items())}


def tuned_beta(result: Any) -> float:
    """The beta of the sweep with the best mean score over seeds (ties: the smaller beta)."""
    table = per_beta_scores(result)
    if not table:
        raise ValueError(f"{getattr(result, 'loss', 'result')}: no scored runs to tune beta on")
    return max(table, key=lambda b: (fmean(table[b]), -b))


def at_beta(result: Any, beta: float) -> Any:
    """The result restricted to the runs at ``beta``."""
    runs = [r for r in result.runs if math.isclose(float(r.beta), beta, rel_tol=1e-9)]
    if not runs:
        raise ValueError(f"{result.loss}: no runs at beta {beta}")
    return replace(result, runs=runs)


def success(difference: PairedDifference, at: float = SUCCESS_AT) -> bool:
    """Candidate ahead of (tuned) DPO by more than ``at`` paired s.e. (False without an s.e.)."""
    return math.isfinite(difference.se) and difference.se > 0 and difference.difference > at * difference.se


def gradient_profile(vector: Sequence[float]) -> list[float]:
    """The gradient entries of a fingerprint vector, each (beta, split) block scaled to unit RMS."""
    n = FINGERPRINT_BLOCKS * VALUES_PER_BLOCK * POINTS
    if len(vector) != n:
        raise ValueError(f"fingerprint vector has {len(vector)} values, expected {n}")
    out: list[float] = []
    for block in range(FINGERPRINT_BLOCKS):
        start = block * VALUES_PER_BLOCK * POINTS
        grads = [float(v) for v in vector[start + POINTS: start + VALUES_PER_BLOCK * POINTS]]
        rms = math.sqrt(fmean(g * g for g in grads))
        out.extend(g / rms if rms > 0 else 0.0 for g in grads)
    return out


def fingerprint_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """1 - cosine similarity of the two gradient profiles: 0 = same behaviour up to scale and
    constant, 1 = unrelated, 2 = opposite."""
    pa, pb = gradient_profile(a), gradient_profile(b)
    na, nb = math.sqrt(sum(x * x for x in pa)), math.sqrt(sum(x * x for x in pb))
    if na == 0 or nb == 0:
        return 1.0
    return 1.0 - sum(x * y for x, y in zip(pa, pb)) / (na * nb)


@dataclass(frozen=True)
class Neighbour:
    name: str
    distance: float


def nearest_known(vector: Sequence[float], known: dict[str, Sequence[float]], k: int = 3) -> list[Neighbour]:
    """The ``k`` known losses closest in behaviour to ``vector``, nearest first (ties by name)."""
    ranked = sorted((Neighbour(name, fingerprint_distance(vector, v)) for name, v in known.items()),
                    key=lambda n: (n.distance, n.name))
    return ranked[:k]


def library_fingerprints(names: Sequence[str]) -> dict[str, list[float]]:
    """Fingerprint vectors of trusted library losses (computed in this process: library code only)."""
    from candidate_losses import get_loss
    from discovery.sandbox.probe import fingerprint

    out: dict[str, list[float]] = {}
    for name in names:   # keyword constants at their signature defaults, as a campaign would run them
        out[name] = fingerprint(get_loss(name).fn)[1]
    return out
