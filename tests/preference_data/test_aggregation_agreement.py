"""Krippendorff's alpha: our wrapper vs an independent coincidence-matrix computation and the
textbook value (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability", 4 coders x 12 units)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from preference_data.aggregation import parse_judgments
from preference_data.aggregation.agreement import agreement_report, hotspots, krippendorff_alpha, reliability_matrix

NAN = math.nan
TEXTBOOK = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])


def hand_alpha(data: np.ndarray, metric: str) -> float:
    """Coincidence-matrix alpha written from the definition (independent of the library)."""
    values = sorted({v for v in data.flatten() if not math.isnan(v)})
    idx = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for u in range(data.shape[1]):
        col = [v for v in data[:, u] if not math.isnan(v)]
        m = len(col)
        if m < 2:
            continue
        for i in range(m):
            for j in range(m):
                if i != j:
                    o[idx[col[i]], idx[col[j]]] += 1.0 / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()

    def delta2(a: float, b: float) -> float:
        return float(a != b) if metric == "nominal" else (a - b) ** 2

    d = np.array([[delta2(a, b) for b in values] for a in values])
    d_o = (o * d).sum() / n
    d_e = (np.outer(n_c, n_c) * d).sum() / (n * (n - 1))
    return 1.0 - d_o / d_e


def test_textbook_nominal_and_interval() -> None:
    assert hand_alpha(TEXTBOOK, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert hand_alpha(TEXTBOOK, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(TEXTBOOK, "nominal") == pytest.approx(hand_alpha(TEXTBOOK, "nominal"), abs=1e-9)
    assert krippendorff_alpha(TEXTBOOK, "interval") == pytest.approx(hand_alpha(TEXTBOOK, "interval"), abs=1e-9)


def _row(jid: str, ann: str, item: str, chosen: str, dim: str = "overall", group: str = "x") -> dict:
    return {"judgment_id": jid, "project": "p", "item_id": item, "prompt": f"prompt {item}",
            "responses": [{"response_id": f"{item}-a", "text": "A"}, {"response_id": f"{item}-b", "text": "BB"}],
            "dimension": dim, "scale": "pairwise", "value": f"{item}-{chosen}", "annotator_id": ann,
            "annotator_attributes": {"region": group}}


def test_alpha_from_judgments_matches_hand_computation() -> None:
    rng = np.random.default_rng(3)
    rows, k = [], 0
    for item in range(15):
        truth = "a" if item % 2 else "b"
        for ann in range(4):
            if rng.random() < 0.2:
                continue  # missing values
            chosen = truth if rng.random() < 0.8 else ("b" if truth == "a" else "a")
            rows.append(_row(f"j{k}", f"ann{ann}", f"i{item}", chosen, group="n" if ann < 2 else "s"))
            k += 1
    js = parse_judgments(rows)
    m, level, annotators, units = reliability_matrix(js)
    assert level == "nominal" and m.shape == (4, 30)  # each item: both orientations of its pair
    report = agreement_report(js, lambda j: j.annotator_attributes["region"])
    expected = hand_alpha(m, "nominal")
    assert report["by_dimension"]["overall"]["alpha"] == pytest.approx(expected, abs=1e-4)
    north = [j for j in js if j.annotator_attributes["region"] == "n"]
    assert report["by_group"]["n"]["overall"]["alpha"] == pytest.approx(
        hand_alpha(reliability_matrix(north)[0], "nominal"), abs=1e-4)


def test_alpha_undefined_without_variation() -> None:
    assert krippendorff_alpha(np.array([[1.0, 1.0], [1.0, 1.0]]), "nominal") is None


def test_hotspots_rank_split_items_and_show_group_gap() -> None:
    rows = [_row("1", "a1", "i1", "a", group="n"), _row("2", "a2", "i1", "a", group="n"),
            _row("3", "a3", "i1", "b", group="s"), _row("4", "a4", "i1", "b", group="s"),
            _row("5", "a1", "i2", "a", group="n"), _row("6", "a3", "i2", "a", group="s")]
    spots = hotspots(parse_judgments(rows), lambda j: j.annotator_attributes["region"])
    assert spots[0]["item_id"] == "i1" and spots[0]["disagreement"] == 1.0 and spots[0]["group_gap"] == 1.0
    assert spots[1]["item_id"] == "i2" and spots[1]["disagreement"] == 0.0
