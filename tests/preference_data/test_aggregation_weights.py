"""Post-stratification and raking weights hit the declared population margins."""

from __future__ import annotations


import numpy as np
import pytest

from preference_data.aggregation.weights import compute_weights, poststratify, rake


def _sample() -> tuple[list[str], list[dict[str, str]]]:
    """Skewed sample: 70% north, and south over-represents the old."""
    attrs = ([{"region": "north", "age": "young"}] * 50 + [{"region": "north", "age": "old"}] * 20
             + [{"region": "south", "age": "young"}] * 5 + [{"region": "south", "age": "old"}] * 25)
    return [f"j{i}" for i in range(len(attrs))], attrs


def _share(w: dict[str, float], ids: list[str], attrs: list[dict], key: str, value: str) -> float:
    total = sum(w.values())
    return sum(w[i] for i, a in zip(ids, attrs) if a[key] == value) / total


def test_poststrat_single_attribute_is_target_over_sample_share() -> None:
    ids, attrs = _sample()
    res = poststratify(ids, attrs, {"region": {"north": 0.5, "south": 0.5}})
    assert res.weights["j0"] == pytest.approx(0.5 / 0.7)
    assert res.weights["j99"] == pytest.approx(0.5 / 0.3)
    assert _share(res.weights, ids, attrs, "region", "south") == pytest.approx(0.5)
    assert res.margins["region"]["south"]["weighted_share"] == pytest.approx(0.5)
    assert np.mean(list(res.weights.values())) == pytest.approx(1.0)


def test_raking_matches_every_margin_and_has_multiplicative_form() -> None:
    ids, attrs = _sample()
    targets = {"region": {"north": 0.5, "south": 0.5}, "age": {"young": 0.6, "old": 0.4}}
    res = rake(ids, attrs, targets)
    for k, dist in targets.items():
        for v, s in dist.items():
            assert _share(res.weights, ids, attrs, k, v) == pytest.approx(s, abs=1e-6)
    # IPF's fixed point is w(region, age) = r(region) * c(age): the cross-ratio of cell weights is 1
    cell = {(a["region"], a["age"]): res.weights[i] for i, a in zip(ids, attrs)}
    cross = (cell["north", "young"] * cell["south", "old"]) / (cell["north", "old"] * cell["south", "young"])
    assert cross == pytest.approx(1.0, rel=1e-6)
    assert res.effective_sample_size < len(ids)


def test_raking_one_attribute_equals_poststrat() -> None:
    ids, attrs = _sample()
    t = {"age": {"young": 0.3, "old": 0.7}}
    a, b = rake(ids, attrs, t).weights, poststratify(ids, attrs, t).weights
    assert all(a[i] == pytest.approx(b[i]) for i in ids)


def test_missing_attribute_gets_zero_weight_and_is_reported() -> None:
    ids, attrs = _sample()
    attrs = attrs[:-1] + [{"age": "old"}]
    res = compute_weights("poststrat", ids, attrs, {"region": {"north": 0.5, "south": 0.5}})
    assert res.weights[ids[-1]] == 0.0 and res.excluded_judgments == 1


def test_target_value_absent_from_sample_is_renormalised_with_note() -> None:
    ids, attrs = _sample()
    res = poststratify(ids, attrs, {"region": {"north": 0.4, "south": 0.4, "east": 0.2}})
    assert _share(res.weights, ids, attrs, "region", "north") == pytest.approx(0.5)
    assert any("east" in n for n in res.notes)


def test_weighting_needs_targets() -> None:
    with pytest.raises(ValueError, match="population_shares"):
        compute_weights("raking", ["j"], [{"region": "n"}], {})
