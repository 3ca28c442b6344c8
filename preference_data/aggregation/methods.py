"""Aggregation methods: weighted comparisons per unit -> decided (chosen, rejected) response pairs.

A *unit* is (item_id, dimension or None, group or None): the set of judgments pooled together.
Libraries do the estimation: crowd-kit (MajorityVote with per-annotator weights as skills,
DawidSkene) and choix (Bradley–Terry / Plackett–Luce by iterative Luce spectral ranking).
choix is used for Bradley–Terry rather than crowd-kit's BradleyTerry because a unit is tiny and
often unanimous (its comparison graph is not strongly connected, which crowd-kit requires) and
because `ilsr_pairwise_dense` accepts weighted win counts and a regulariser.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from preference_data.aggregation.judgments import Comparison

METHODS = ("majority", "dawid-skene", "bradley-terry", "plackett-luce")
UnitKey = tuple[str, "str | None", "str | None"]  # (item_id, dimension, group)


@dataclass
class WeightedComparison:
    comparison: Comparison
    unit: UnitKey
    weight: float


@dataclass
class PairDecision:
    unit: UnitKey
    chosen: str
    rejected: str
    confidence: float                  # P(chosen is the unit's preferred one) under the method
    judgment_ids: list[str]            # judgments whose answers produced this decision
    votes_chosen: float                # weighted direct votes for chosen over rejected
    votes_rejected: float
    scores: dict[str, float] | None = None   # BT/PL log-strengths of the unit's responses


@dataclass
class MethodResult:
    decisions: list[PairDecision]
    ties_dropped: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def _task_id(unit: UnitKey, a: str, b: str) -> str:
    return "\x1f".join([unit[0], str(unit[1]), str(unit[2]), a, b])


def _by_task(wcs: Sequence[WeightedComparison]) -> dict[tuple[UnitKey, str, str], list[WeightedComparison]]:
    """Group comparisons by (unit, a, b) with a < b, so the label is "did a win?"."""
    tasks: dict[tuple[UnitKey, str, str], list[WeightedComparison]] = defaultdict(list)
    for wc in wcs:
        a, b = sorted((wc.comparison.winner, wc.comparison.loser))
        tasks[(wc.unit, a, b)].append(wc)
    return tasks


def _votes(wcs: list[WeightedComparison], a: str) -> tuple[float, float]:
    va = sum(w.weight for w in wcs if w.comparison.winner == a)
    return va, sum(w.weight for w in wcs) - va


def _decide(unit: UnitKey, a: str, b: str, p_a: float, wcs: list[WeightedComparison]) -> PairDecision:
    va, vb = _votes(wcs, a)
    ids = sorted({w.comparison.judgment_id for w in wcs})
    if p_a >= 0.5:
        return PairDecision(unit, a, b, p_a, ids, va, vb)
    return PairDecision(unit, b, a, 1.0 - p_a, ids, vb, va)


def _task_frame(tasks: dict) -> tuple[Any, dict[str, tuple[UnitKey, str, str]]]:
    import pandas as pd
    rows, index = [], {}
    for key, wcs in tasks.items():
        tid = _task_id(*key)
        index[tid] = key
        for wc in wcs:
            rows.append({"task": tid, "worker": wc.comparison.annotator_id,
                         "label": "first" if wc.comparison.winner == key[1] else "second"})
    return pd.DataFrame(rows, columns=["task", "worker", "label"]), index


def majority_vote(wcs: Sequence[WeightedComparison]) -> MethodResult:
    """Weighted majority per (unit, response pair): crowd-kit MajorityVote, weights as worker skills.

    Weights are per annotator (they depend only on annotator attributes), so they are exactly
    crowd-kit's `skills`. Exact ties are dropped (no pair), not broken arbitrarily.
    """
    import pandas as pd
    from crowdkit.aggregation import MajorityVote
    wcs = [w for w in wcs if w.weight > 0]
    tasks = _by_task(wcs)
    if not tasks:
        return MethodResult([], 0)
    frame, index = _task_frame(tasks)
    skills = pd.Series({wc.comparison.annotator_id: wc.weight for wc in wcs}, dtype=float)
    with warnings.catch_warnings():  # crowd-kit uses pandas APIs deprecated in pandas 3
        warnings.simplefilter("ignore")
        probas = MajorityVote().fit_predict_proba(frame, skills=skills)
    out, ties = [], 0
    for tid, key in index.items():
        p_first = float(probas.loc[tid].get("first", 0.0)) if "first" in probas.columns else 0.0
        if abs(p_first - 0.5) < 1e-12:
            ties += 1
            continue
        out.append(_decide(key[0], key[1], key[2], p_first, tasks[key]))
    return MethodResult(out, ties)


def dawid_skene(wcs: Sequence[WeightedComparison], noise_threshold: float = 0.7,
                n_iter: int = 100) -> MethodResult:
    """Dawid–Skene over (unit, pair) tasks; exposes each annotator's estimated accuracy.

    Accuracy = sum_t prior_t * P(annotator says t | truth t), from crowd-kit's confusion matrices.
    Annotators below `noise_threshold` are flagged. DS assumes one truth per task, so a coherent
    minority that disagrees with the majority can also look "unreliable": run it per group
    (--by-group) when groups are expected to differ. Weights do not enter the DS posterior.
    """
    from crowdkit.aggregation import DawidSkene
    wcs = [w for w in wcs if w.weight > 0]
    tasks = _by_task(wcs)
    if not tasks:
        return MethodResult([], 0, {"annotator_reliability": {}, "flagged_noisy": []})
    frame, index = _task_frame(tasks)
    if frame["label"].nunique() < 2:  # DS needs both labels; one label means unanimous anyway
        res = majority_vote(wcs)
        res.info = {"annotator_reliability": {w: 1.0 for w in frame["worker"].unique()},
                    "flagged_noisy": [], "note": "a single label in the data; DS reduced to majority"}
        return res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = DawidSkene(n_iter=n_iter, tol=1e-6).fit(frame)
    probas, errors, priors = ds.probas_, ds.errors_, ds.priors_
    reliability: dict[str, float] = {}
    for worker in sorted(frame["worker"].unique()):
        acc = 0.0
        for t in priors.index:
            try:
                acc += float(priors[t]) * float(errors.loc[(worker, t), t])
            except KeyError:
                pass
        reliability[worker] = round(acc, 4)
    out = [_decide(key[0], key[1], key[2], float(probas.loc[tid].get("first", 0.0)), tasks[key])
           for tid, key in index.items()]
    flagged = sorted(w for w, r in reliability.items() if r < noise_threshold)
    return MethodResult(out, 0, {"annotator_reliability": reliability, "flagged_noisy": flagged,
                                 "noise_threshold": noise_threshold,
                                 "class_priors": {str(k): float(v) for k, v in priors.items()}})


def _unit_decisions(unit: UnitKey, ids: list[str], scores: np.ndarray,
                    wcs: list[WeightedComparison]) -> list[PairDecision]:
    """Every pair of compared responses, ordered by fitted strength (equal strengths dropped)."""
    jids = sorted({w.comparison.judgment_id for w in wcs})
    score_map = {r: round(float(s), 6) for r, s in zip(ids, scores)}
    out = []
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            d = float(scores[i] - scores[j])
            if abs(d) < 1e-9:
                continue
            w_, l_ = (ids[i], ids[j]) if d > 0 else (ids[j], ids[i])
            direct = [w for w in wcs if {w.comparison.winner, w.comparison.loser} == {w_, l_}]
            vw, vl = _votes(direct, w_)
            out.append(PairDecision(unit, w_, l_, 1.0 / (1.0 + math.exp(-abs(d))), jids, vw, vl, score_map))
    return out


def _by_unit(wcs: Sequence[WeightedComparison]) -> dict[UnitKey, list[WeightedComparison]]:
    units: dict[UnitKey, list[WeightedComparison]] = defaultdict(list)
    for wc in wcs:
        if wc.weight > 0:
            units[wc.unit].append(wc)
    return units


def _comp_matrix(ids: list[str], wcs: list[WeightedComparison]) -> np.ndarray:
    pos = {r: i for i, r in enumerate(ids)}
    m = np.zeros((len(ids), len(ids)))
    for wc in wcs:
        m[pos[wc.comparison.winner], pos[wc.comparison.loser]] += wc.weight
    return m


def bradley_terry(wcs: Sequence[WeightedComparison], alpha: float = 0.1) -> MethodResult:
    """Per unit, BT log-strengths from weighted win counts (choix.ilsr_pairwise_dense)."""
    import choix
    out = []
    for unit, group in _by_unit(wcs).items():
        ids = sorted({r for w in group for r in (w.comparison.winner, w.comparison.loser)})
        scores = choix.ilsr_pairwise_dense(_comp_matrix(ids, group), alpha=alpha)
        out.extend(_unit_decisions(unit, ids, scores, group))
    return MethodResult(out, 0, {"estimator": "choix.ilsr_pairwise_dense", "regularization": alpha})


def plackett_luce(wcs: Sequence[WeightedComparison], rankings: dict[str, list[str]],
                  alpha: float = 0.1) -> MethodResult:
    """Per unit, PL log-strengths. `rankings`: judgment_id -> best-first list for ranking judgments.

    Unweighted units use choix.ilsr_rankings on the full rankings (pairwise/Likert answers enter
    as 2-item rankings, which is exact for two responses). When weights differ inside a unit,
    choix has no weighted ranking fit, so rankings are fully broken into weighted pairwise counts
    (a consistent estimator for PL) and fitted with ilsr_pairwise_dense.
    """
    import choix
    out, estimators = [], defaultdict(int)
    for unit, group in _by_unit(wcs).items():
        ids = sorted({r for w in group for r in (w.comparison.winner, w.comparison.loser)})
        if len({round(w.weight, 12) for w in group}) > 1:
            scores = choix.ilsr_pairwise_dense(_comp_matrix(ids, group), alpha=alpha)
            estimators["weighted full rank-breaking + ilsr_pairwise_dense"] += 1
        else:
            pos, data, seen = {r: i for i, r in enumerate(ids)}, [], set()
            for w in group:
                jid = w.comparison.judgment_id
                if jid in rankings:
                    if jid not in seen:
                        seen.add(jid)
                        data.append([pos[r] for r in rankings[jid]])
                else:
                    data.append([pos[w.comparison.winner], pos[w.comparison.loser]])
            scores = choix.ilsr_rankings(len(ids), data, alpha=alpha)
            estimators["choix.ilsr_rankings"] += 1
        out.extend(_unit_decisions(unit, ids, scores, group))
    return MethodResult(out, 0, {"estimator_units": dict(estimators), "regularization": alpha})
