"""Survey weights that make annotator groups count in proportion to the target population.

The unit is the judgment: each judgment inherits its annotator's attributes, and the weights make
the weighted share of judgments per attribute value equal the project's `population_shares`.

* post-stratification: one weight per cell = target share / sample share (exact on every cell).
  With several attributes the cells are their combinations and the joint target is the product
  of the declared margins (the project declares margins only, so independence is assumed).
* raking: iterative proportional fitting over each attribute's margin in turn, no independence
  assumption. Hand-written (~20 lines) on purpose: `balance` would downgrade numpy/scipy/scikit-learn
  in the shared venv, and `samplics` is archived upstream, pulls statsmodels+polars (~80 MB) and its
  `rake(factor=...)` path crashes; the textbook algorithm is short and tested against closed forms.

Judgments whose annotator lacks a weighting attribute (or has a value the target does not list)
get weight 0 and are counted in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

WEIGHTINGS = ("none", "poststrat", "raking")


@dataclass
class WeightingResult:
    method: str
    weights: dict[str, float]                      # judgment_id -> weight (eligible mean = 1)
    margins: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # attribute -> value -> {"sample_share", "target_share", "weighted_share", "weight"}
    excluded_judgments: int = 0                    # weight 0: attribute missing / not in target
    effective_sample_size: float = 0.0             # Kish: (sum w)^2 / sum w^2
    iterations: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"method": self.method, "margins": self.margins,
                "excluded_judgments": self.excluded_judgments,
                "effective_sample_size": round(self.effective_sample_size, 3),
                "n_judgments": len(self.weights), "iterations": self.iterations, "notes": self.notes}


def kish_ess(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / (w ** 2).sum()) if (w ** 2).sum() > 0 else 0.0


def _eligible(attrs: list[Mapping[str, str]], targets: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    return np.array([all(a.get(k) in targets[k] and targets[k][a.get(k)] > 0 for k in targets)
                     for a in attrs], dtype=bool)


def _margins(attrs: list[Mapping[str, str]], w: np.ndarray, targets: Mapping[str, Mapping[str, float]]
             ) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    n, total = len(attrs), max(float(w.sum()), 1e-300)
    for k, dist in targets.items():
        vals = np.array([a.get(k) for a in attrs], dtype=object)
        out[k] = {}
        for v in sorted(set(dist) | {x for x in vals if x is not None}, key=str):
            mask = vals == v
            out[k][str(v)] = {"sample_share": round(float(mask.sum()) / max(n, 1), 6),
                              "target_share": float(dist.get(v, 0.0)),
                              "weighted_share": round(float(w[mask].sum()) / total, 6),
                              "weight": round(float(w[mask].mean()), 6) if mask.any() else 0.0}
    return out


def _renormalised_targets(attrs: list[Mapping[str, str]], targets: Mapping[str, Mapping[str, float]],
                          notes: list[str]) -> dict[str, dict[str, float]]:
    """Drop target values nobody in the sample has (their mass cannot be represented)."""
    out = {}
    for k, dist in targets.items():
        present = {a.get(k) for a in attrs}
        kept = {v: float(s) for v, s in dist.items() if v in present and s > 0}
        missing = sorted(v for v, s in dist.items() if v not in present and s > 0)
        if missing:
            notes.append(f"{k}: no judgments from {missing}; their target share "
                         f"{sum(dist[v] for v in missing):.3f} is spread over the other values")
        z = sum(kept.values())
        out[k] = {v: s / z for v, s in kept.items()} if z > 0 else {}
    return out


def poststratify(judgment_ids: list[str], attrs: list[Mapping[str, str]],
                 targets: Mapping[str, Mapping[str, float]]) -> WeightingResult:
    notes: list[str] = []
    t = _renormalised_targets(attrs, targets, notes)
    ok = _eligible(attrs, t)
    cells = [tuple(a.get(k) for k in t) if e else None for a, e in zip(attrs, ok)]
    n_ok = int(ok.sum())
    counts: dict[tuple, int] = {}
    for c in cells:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    # joint target of a cell = product of margins, renormalised over the cells we observe
    joint = {c: math.prod(t[k][v] for k, v in zip(t, c)) for c in counts}
    z = sum(joint.values())
    w = np.array([0.0 if c is None else (joint[c] / z) / (counts[c] / n_ok) for c in cells])
    if len(t) > 1:
        notes.append("several attributes: joint cell targets = product of margins (independence)")
    if z < 1 - 1e-9 and len(t) > 1:
        notes.append(f"cells with no judgments hold {1 - z:.3f} of the joint target; renormalised")
    return WeightingResult("poststrat", dict(zip(judgment_ids, w.tolist())), _margins(attrs, w, targets),
                           len(attrs) - n_ok, kish_ess(w), 1, notes)


def rake(judgment_ids: list[str], attrs: list[Mapping[str, str]],
         targets: Mapping[str, Mapping[str, float]], max_iter: int = 200, tol: float = 1e-8
         ) -> WeightingResult:
    notes: list[str] = []
    t = _renormalised_targets(attrs, targets, notes)
    ok = _eligible(attrs, t)
    w = ok.astype(float)
    columns = {k: np.array([a.get(k) for a in attrs], dtype=object) for k in t}
    it = 0
    for it in range(1, max_iter + 1):
        for k, dist in t.items():          # one IPF sweep: match each margin in turn
            for v, share in dist.items():
                mask = columns[k] == v
                current = w[mask].sum() / w.sum()
                if current > 0:
                    w[mask] *= share / current
        gap = max(abs(w[columns[k] == v].sum() / w.sum() - s) for k, d in t.items() for v, s in d.items())
        if gap < tol:
            break
    else:
        notes.append(f"raking stopped after {max_iter} sweeps with margin gap {gap:.2e}")
    n_ok = int(ok.sum())
    if w.sum() > 0:
        w *= n_ok / w.sum()
    return WeightingResult("raking", dict(zip(judgment_ids, w.tolist())), _margins(attrs, w, targets),
                           len(attrs) - n_ok, kish_ess(w), it, notes)


def compute_weights(method: str, judgment_ids: list[str], attrs: list[Mapping[str, str]],
                    targets: Mapping[str, Mapping[str, float]] | None) -> WeightingResult:
    if method not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {method!r}")
    if method == "none":
        w = np.ones(len(judgment_ids))
        return WeightingResult("none", dict(zip(judgment_ids, w.tolist())),
                               _margins(attrs, w, targets or {}), 0, kish_ess(w), 0)
    if not targets:
        raise ValueError(f"--weighting {method} needs population_shares (declare them in the project "
                         "YAML or pass --population-shares)")
    if method == "poststrat":
        return poststratify(judgment_ids, attrs, targets)
    return rake(judgment_ids, attrs, targets)


def check_population_shares(shares: Any, where: str = "population_shares",
                            declared: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, float]]:
    """attribute -> {value: share}, shares non-negative numbers summing to 1 per attribute.

    ``declared`` (attribute -> allowed values, empty = any) restricts the names; ValueError names
    the problem and the fix."""
    def check(cond: bool, msg: str) -> None:
        if not cond:
            raise ValueError(msg)

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    check(isinstance(shares, dict), f"{where} must map attribute -> {{value: share}}")
    out: dict[str, dict[str, float]] = {}
    for attr, dist in shares.items():
        if declared is not None:
            check(attr in declared, f"{where} names unknown attribute {attr!r}; declared: {sorted(declared)}")
        check(isinstance(dist, dict) and bool(dist) and all(number(v) and v >= 0 for v in dist.values()),
              f"{where}.{attr} must map values to non-negative numbers")
        total = sum(float(v) for v in dist.values())
        check(abs(total - 1.0) < 1e-6, f"{where}.{attr} must sum to 1 (got {total:g}); give every value its share")
        if declared is not None and declared[attr]:
            unknown = sorted(set(map(str, dist)) - set(declared[attr]))
            check(not unknown, f"{where}.{attr} names values {unknown} not declared for {attr!r}")
        out[str(attr)] = {str(k): float(v) for k, v in dist.items()}
    return out
