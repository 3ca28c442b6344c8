"""Aggregation methods: weighted comparisons per unit -> decided (chosen, rejected) response pairs.

A *unit* is (item_id, dimension or None, group or None): the set of judgments pooled together.
Libraries do most of the estimation: crowd-kit (MajorityVote with per-annotator weights as
skills) and choix (Bradley–Terry / Plackett–Luce by iterative Luce spectral ranking).
choix is used for Bradley–Terry rather than crowd-kit's BradleyTerry because a unit is tiny and
often unanimous (its comparison graph is not strongly connected, which crowd-kit requires) and
because `ilsr_pairwise_dense` accepts weighted win counts and a regulariser. Dawid–Skene is
written here (one-coin, ~40 lines of numpy) because crowd-kit's has no prior on the confusion
matrices, no gold clamping and no per-annotator prior counts: unsmoothed, it reports confidence
1.0 on a 4-3 vote.
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
    adjudication: str | None = None          # id of the researcher's adjudication that decided it


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


@dataclass
class DawidSkenePrior:
    """Beta prior on every annotator's accuracy, in pseudo-judgments (mean a / (a + b) = 0.8).

    Without it, maximum likelihood drives the accuracy of an annotator seen on a few tasks to 0 or
    1, and one such annotator turns a 4-3 split into a "certain" decision. The mean sits above the
    default noise threshold (0.7) so an annotator seen on few tasks is not flagged for lack of data
    (benchmarks/aggregation_noisy_annotators.py: precision/recall 0.89/0.85 with 3 judgments per
    item and ~9 items per annotator, against 0.28/1.00 with a prior mean of 0.67).
    """

    correct: float = 4.0
    wrong: float = 1.0


def dawid_skene(wcs: Sequence[WeightedComparison], noise_threshold: float = 0.7, n_iter: int = 200,
                prior: DawidSkenePrior | None = None,
                quality: dict[str, tuple[int, int]] | None = None,
                gold: dict[tuple[UnitKey, str, str], str] | None = None) -> MethodResult:
    """One-coin Dawid–Skene over (unit, response pair) tasks, with task difficulty and priors.

    Annotator j has accuracy acc_j; on task t they are right with probability
    0.5 + (acc_j - 0.5) * e_t, where the task's easiness e_t in [0, 1] is marginalised over a
    uniform grid (GLAD's idea, Whitehill et al. 2009): a 4-3 split among accurate annotators is
    evidence of a hard task, not of a certain answer, so its confidence stays near the vote share
    while a 7-0 vote is near 1. The two outcomes of a task have equal prior probability (results do
    not depend on response naming). EM: task posteriors given accuracies, then accuracies as the
    Beta-prior-smoothed expected share of right answers. `quality` (annotator -> (correct, total)
    on gold/attention items) adds those answers to the annotator's counts; `gold` clamps tasks
    whose answer is known. Confidence = the posterior P(winner). Weights do not enter it. A coherent
    minority group can look "unreliable" when pooled: use --by-group when groups differ.
    """
    prior = prior or DawidSkenePrior()
    quality, gold = quality or {}, gold or {}
    wcs = [w for w in wcs if w.weight > 0]
    tasks = _by_task(wcs)
    if not tasks:
        return MethodResult([], 0, {"annotator_reliability": {}, "flagged_noisy": []})
    keys = list(tasks)
    workers = sorted({w.comparison.annotator_id for w in wcs})
    wpos = {w: i for i, w in enumerate(workers)}
    rows, cols, says_a = [], [], []  # one entry per vote: task index, worker index, 1 if "a" won
    for t, key in enumerate(keys):
        for w in tasks[key]:
            rows.append(t)
            cols.append(wpos[w.comparison.annotator_id])
            says_a.append(1.0 if w.comparison.winner == key[1] else 0.0)
    t_idx, w_idx, y = np.array(rows), np.array(cols), np.array(says_a)
    clamp = np.array([np.nan if k not in gold else float(gold[k] == k[1]) for k in keys])
    extra_c = np.array([float(quality.get(w, (0, 0))[0]) for w in workers])
    extra_n = np.array([float(quality.get(w, (0, 0))[1]) for w in workers])
    votes_a = np.bincount(t_idx, weights=y, minlength=len(keys))
    votes = np.bincount(t_idx, minlength=len(keys))
    q = (votes_a + 0.5) / (votes + 1.0)  # start from the (smoothed) vote share
    q = np.where(np.isnan(clamp), q, clamp)
    easiness = np.linspace(0.0, 1.0, 21)
    for _ in range(n_iter):
        right = y * q[t_idx] + (1 - y) * (1 - q[t_idx])
        acc = ((prior.correct + extra_c + np.bincount(w_idx, weights=right, minlength=len(workers)))
               / (prior.correct + prior.wrong + extra_n + np.bincount(w_idx, minlength=len(workers))))
        p_right = 0.5 + (acc[w_idx, None] - 0.5) * easiness[None, :]          # [votes, grid]
        log_a = np.log(np.where(y[:, None] == 1, p_right, 1 - p_right))     # if "a" is the winner
        log_b = np.log(np.where(y[:, None] == 1, 1 - p_right, p_right))
        sum_a = np.zeros((len(keys), len(easiness)))
        sum_b = np.zeros((len(keys), len(easiness)))
        np.add.at(sum_a, t_idx, log_a)
        np.add.at(sum_b, t_idx, log_b)
        top = np.maximum(sum_a.max(axis=1), sum_b.max(axis=1))[:, None]
        like_a = np.exp(sum_a - top).sum(axis=1)
        like_b = np.exp(sum_b - top).sum(axis=1)
        new_q = like_a / (like_a + like_b)
        new_q = np.where(np.isnan(clamp), new_q, clamp)
        done = float(np.max(np.abs(new_q - q))) < 1e-9
        q = new_q
        if done:
            break
    reliability = {w: round(float(a), 4) for w, a in zip(workers, acc)}
    out = [_decide(key[0], key[1], key[2], float(q[t]), tasks[key]) for t, key in enumerate(keys)]
    flagged = sorted(w for w, r in reliability.items() if r < noise_threshold)
    return MethodResult(out, 0, {"annotator_reliability": reliability, "flagged_noisy": flagged,
                                 "noise_threshold": noise_threshold,
                                 "accuracy_prior": {"correct": prior.correct, "wrong": prior.wrong},
                                 "gold_tasks": int((~np.isnan(clamp)).sum()),
                                 "annotators_with_quality_scores": sum(1 for w in workers if w in quality)})


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
