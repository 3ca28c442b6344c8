"""Inter-annotator agreement (Krippendorff's alpha) and disagreement hot-spots.

The one alpha implementation of prefdisco: the annotation admin page, `annotate status` and
`prefdisco aggregate` all call `alpha_entry`. Reliability data per dimension: rows = annotators,
columns = units, NaN = not judged. Levels of measurement, one per scale:

* pairwise -> **nominal**. Units are ordered response pairs (item, x, y) in *both* orientations:
  choosing c gives (c, o) = 1 and (o, c) = 0 for every other response o. Listing both
  orientations makes alpha independent of how the responses happen to be numbered or named
  (indexing responses by position would let an arbitrary numbering shift the expected
  disagreement); for two responses it measures agreement on "which one is better".
* ranking -> **ordinal**: unit (item, response), value = its rank (1 = best).
* likert -> **ordinal**: unit (item, response), value = the rating. Ordinal, not interval,
  because aggregation uses only the order of ratings (a higher rating beats a lower one) and a
  rating scale's steps are not known to be equal.
* text: no alpha.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np

from preference_data.aggregation.judgments import Judgment, comparisons

LEVEL_BY_SCALE = {"pairwise": "nominal", "ranking": "ordinal", "likert": "ordinal"}


def krippendorff_alpha(reliability: np.ndarray, level: str) -> float | None:
    """krippendorff.alpha, or None when it is undefined (no pairable values / no variation)."""
    import krippendorff
    data = np.asarray(reliability, dtype=float)
    pairable = (np.sum(~np.isnan(data), axis=0) >= 2).sum() if data.size else 0
    values = np.unique(data[~np.isnan(data)]) if data.size else []
    if pairable == 0 or len(values) < 2:
        return None
    try:
        a = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    except (ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(a) else a


def _cells(j: Judgment) -> list[tuple[Any, float]]:
    if j.scale == "pairwise":
        others = [r.response_id for r in j.responses if r.response_id != j.value]
        return ([((j.item_id, j.value, o), 1.0) for o in others]
                + [((j.item_id, o, j.value), 0.0) for o in others])
    if j.scale == "ranking":
        return [((j.item_id, rid), float(pos + 1)) for pos, rid in enumerate(j.value)]
    if j.scale == "likert":
        return [((j.item_id, rid), float(rating)) for rid, rating in j.value.items() if rating is not None]
    return []


def reliability_matrix(judgments: Sequence[Judgment]) -> tuple[np.ndarray, str, list[str], list]:
    """(matrix, level, annotator ids, unit keys) for judgments of ONE dimension/scale."""
    cells: dict[tuple[str, object], float] = {}
    for j in judgments:
        for unit, value in _cells(j):
            cells[(j.annotator_id, unit)] = value
    annotators = sorted({a for a, _ in cells})
    units = sorted({u for _, u in cells}, key=str)
    a_pos, u_pos = {a: i for i, a in enumerate(annotators)}, {u: i for i, u in enumerate(units)}
    m = np.full((len(annotators), len(units)), np.nan)
    for (a, u), v in cells.items():
        m[a_pos[a], u_pos[u]] = v
    scale = judgments[0].scale if judgments else "pairwise"
    return m, LEVEL_BY_SCALE.get(scale, "nominal"), annotators, units


def alpha_entry(js: Sequence[Judgment]) -> dict[str, Any]:
    """{"alpha", "level", "units" (with >= 2 judgments), "annotators", "judgments", "note"}."""
    scale = js[0].scale if js else "text"
    if scale not in LEVEL_BY_SCALE:
        return {"alpha": None, "level": "-", "units": 0, "annotators": len({j.annotator_id for j in js}),
                "judgments": len(js), "note": "free text"}
    m, level, annotators, _ = reliability_matrix(js)
    pairable = int((np.sum(~np.isnan(m), axis=0) >= 2).sum()) if m.size else 0
    a = krippendorff_alpha(m, level)
    note = ""
    if pairable == 0:
        note = "no item has two judgments yet"
    elif a is None:
        note = "all answers identical (alpha undefined)"
    return {"alpha": None if a is None else round(a, 4), "level": level, "units": pairable,
            "annotators": len(annotators), "judgments": len(js), "note": note}


def agreement_report(judgments: Sequence[Judgment], group_of: Callable[[Judgment], str | None]) -> dict:
    """Alpha per dimension, and per dimension within each group."""
    by_dim: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        if j.scale in LEVEL_BY_SCALE:
            by_dim[j.dimension].append(j)
    report: dict = {"by_dimension": {d: alpha_entry(js) for d, js in sorted(by_dim.items())},
                    "by_group": {}}
    by_group: dict[str, dict[str, list[Judgment]]] = defaultdict(lambda: defaultdict(list))
    for d, js in by_dim.items():
        for j in js:
            g = group_of(j)
            if g is not None:
                by_group[g][d].append(j)
    for g, dims in sorted(by_group.items()):
        report["by_group"][g] = {d: alpha_entry(js) for d, js in sorted(dims.items())}
    return report


def hotspots(judgments: Sequence[Judgment], group_of: Callable[[Judgment], str | None],
             top: int = 10) -> list[dict]:
    """(item, dimension, response pair) with the most split votes, and how each group voted.

    disagreement = 1 - |2p - 1| (1 = an even split); group_gap = spread of the groups' shares,
    which separates "noisy" splits from "groups want different things" splits.
    """
    prompts = {j.item_id: j.prompt for j in judgments}
    tally: dict[tuple, dict] = defaultdict(lambda: {"n": 0, "a": 0, "groups": defaultdict(lambda: [0, 0])})
    for j in judgments:
        g = group_of(j)
        for c in comparisons(j):
            a, b = sorted((c.winner, c.loser))
            t = tally[(j.item_id, j.dimension, a, b)]
            t["n"] += 1
            t["a"] += c.winner == a
            if g is not None:
                t["groups"][g][0] += c.winner == a
                t["groups"][g][1] += 1
    rows = []
    for (item, dim, a, b), t in tally.items():
        if t["n"] < 2:
            continue
        p = t["a"] / t["n"]
        shares = {g: round(w / n, 3) for g, (w, n) in sorted(t["groups"].items()) if n}
        rows.append({"item_id": item, "dimension": dim, "response_a": a, "response_b": b,
                     "votes": t["n"], "share_a": round(p, 3), "disagreement": round(1 - abs(2 * p - 1), 3),
                     "group_share_a": shares,
                     "group_gap": round(max(shares.values()) - min(shares.values()), 3) if shares else 0.0,
                     "prompt": prompts[item][:120]})
    rows.sort(key=lambda r: (-r["disagreement"], -r["group_gap"], -r["votes"], r["item_id"]))
    return rows[:top]
