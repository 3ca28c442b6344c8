"""Per-dimension inter-annotator agreement (Krippendorff's alpha) from export rows.

Units: pairwise -> one unit per item, value = the chosen response's position in the item
(nominal); likert -> one unit per (item, response), the rating (interval); ranking -> one unit per
(item, response), its rank (ordinal). Free text has no alpha. Computed from the raw judgments so
it needs no extra tables.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LEVEL = {"pairwise": "nominal", "likert": "interval", "ranking": "ordinal"}


def _units(row: dict[str, Any]) -> list[tuple[tuple[str, str], float]]:
    rids = [r["response_id"] for r in row["responses"]]
    v = row["value"]
    if row["scale"] == "pairwise":
        return [((row["item_id"], ""), float(rids.index(v)))]
    if row["scale"] == "likert":
        return [((row["item_id"], rid), float(x)) for rid, x in v.items()]
    if row["scale"] == "ranking":
        return [((row["item_id"], rid), float(rank)) for rank, rid in enumerate(v)]
    return []


def agreement_by_dimension(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{dimension: {"alpha": float|None, "level": str, "units": n, "annotators": n, "note": str}}."""
    import krippendorff

    by_dim: dict[str, list[dict[str, Any]]] = {}
    scale: dict[str, str] = {}
    for r in rows:
        by_dim.setdefault(r["dimension"], []).append(r)
        scale[r["dimension"]] = r["scale"]
    out: dict[str, dict[str, Any]] = {}
    for dim, drows in by_dim.items():
        level = LEVEL.get(scale[dim])
        info: dict[str, Any] = {"alpha": None, "level": level or "-", "units": 0, "annotators": 0,
                                "note": ""}
        out[dim] = info
        if level is None:
            info["note"] = "free text"
            continue
        cells: dict[tuple[str, tuple[str, str]], float] = {}
        for r in drows:
            for unit, val in _units(r):
                cells[(r["annotator_id"], unit)] = val
        annotators = sorted({a for a, _ in cells})
        per_unit: dict[tuple[str, str], int] = {}
        for _, u in cells:
            per_unit[u] = per_unit.get(u, 0) + 1
        units = sorted(u for u, n in per_unit.items() if n >= 2)  # only overlapping units count
        info["units"], info["annotators"] = len(units), len(annotators)
        if not units:
            info["note"] = "no item has two judgments yet"
            continue
        data = np.full((len(annotators), len(units)), np.nan)
        ai = {a: i for i, a in enumerate(annotators)}
        ui = {u: i for i, u in enumerate(units)}
        for (a, u), val in cells.items():
            if u in ui:
                data[ai[a], ui[u]] = val
        if len({v for v in data[~np.isnan(data)]}) < 2:
            info["note"] = "all answers identical (alpha undefined)"
            continue
        try:
            alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
        except (ValueError, ZeroDivisionError) as exc:
            info["note"] = f"undefined ({exc})"
            continue
        info["alpha"] = None if math.isnan(alpha) else alpha
    return out
