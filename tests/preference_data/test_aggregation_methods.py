"""Aggregation methods on simulated populations where the truth is known."""

from __future__ import annotations

import pytest

from preference_data.aggregation import AggregationConfig, aggregate, parse_judgments
from preference_data.aggregation.simulate import (SimulatedAnnotator, quality, simulate_judgments,
                                                  truth_items)


def _population(n: int = 20, noisy: int = 4, noise: float = 0.1) -> list[SimulatedAnnotator]:
    return [SimulatedAnnotator(f"a-{i:02d}", quality, noise=1.0 if i < noisy else noise,
                               attributes={"region": "north" if i % 4 else "south"}) for i in range(n)]


def _truth_accuracy(pairs: list[dict], items: list[dict]) -> float:
    q = {r["response_id"]: r["settings"]["quality"] for it in items for r in it["responses"]}
    return sum(q[p["provenance"]["chosen_response_id"]] > q[p["provenance"]["rejected_response_id"]]
               for p in pairs) / len(pairs)


def test_dawid_skene_flags_the_random_clickers() -> None:
    items = truth_items(120, seed=0)
    anns = _population()
    js = parse_judgments(simulate_judgments(items, anns, overlap=7, seed=1))
    res = aggregate(js, AggregationConfig(method="dawid-skene", with_report=False))
    info = res.report["method_info"]
    flagged, truly = set(info["flagged_noisy"]), {a.annotator_id for a in anns if a.noise == 1.0}
    precision = len(flagged & truly) / max(len(flagged), 1)
    recall = len(flagged & truly) / len(truly)
    assert precision >= 0.75 and recall >= 0.75, (precision, recall, info["annotator_reliability"])
    rel = info["annotator_reliability"]
    assert min(rel[a] for a in rel if a not in truly) > max(rel[a] for a in truly)
    assert _truth_accuracy(res.pairs, items) >= 0.9


@pytest.mark.parametrize("method", ["majority", "dawid-skene", "bradley-terry", "plackett-luce"])
def test_every_method_recovers_truth_from_pairwise(method: str) -> None:
    items = truth_items(40, seed=2)
    js = parse_judgments(simulate_judgments(items, _population(noisy=2), overlap=5, seed=3))
    res = aggregate(js, AggregationConfig(method=method, with_report=False))
    assert _truth_accuracy(res.pairs, items) >= 0.85
    assert all(0.5 <= p["provenance"]["confidence"] <= 1.0 for p in res.pairs)


@pytest.mark.parametrize("method", ["bradley-terry", "plackett-luce", "majority"])
def test_rankings_give_all_ordered_pairs(method: str) -> None:
    items = truth_items(10, n_responses=4, seed=4)
    js = parse_judgments(simulate_judgments(items, _population(8, noisy=0, noise=0.0), overlap=3, seed=5,
                                            scale="ranking"))
    res = aggregate(js, AggregationConfig(method=method, with_report=False))
    assert len(res.pairs) == 10 * 6  # 4 responses -> 6 ordered pairs per item
    assert _truth_accuracy(res.pairs, items) == 1.0
    if method != "majority":
        assert "scores" in res.pairs[0]["provenance"]


def _pair_row(jid: str, ann: str, chosen: str, region: str) -> dict:
    return {"judgment_id": jid, "project": "p", "item_id": "i1", "prompt": "p?",
            "responses": [{"response_id": "a", "text": "A"}, {"response_id": "b", "text": "B"}],
            "dimension": "overall", "scale": "pairwise", "value": chosen, "annotator_id": ann,
            "annotator_attributes": {"region": region}}


def test_majority_tie_is_dropped_not_broken() -> None:
    js = parse_judgments([_pair_row("1", "x", "a", "n"), _pair_row("2", "y", "b", "s")])
    res = aggregate(js, AggregationConfig(method="majority"))
    assert res.pairs == [] and res.report["ties_dropped"] == 1


def test_poststrat_weights_flip_a_majority_vote() -> None:
    """3 north vs 1 south annotator; with a 20/80 population the south vote outweighs."""
    rows = [_pair_row(str(i), f"n{i}", "a", "north") for i in range(3)] + [_pair_row("9", "s", "b", "south")]
    js = parse_judgments(rows)
    plain = aggregate(js, AggregationConfig(method="majority"))
    shares = {"region": {"north": 0.2, "south": 0.8}}
    weighted = aggregate(js, AggregationConfig(method="majority", weighting="poststrat", population_shares=shares))
    assert plain.pairs[0]["chosen"] == "A" and weighted.pairs[0]["chosen"] == "B"
    assert weighted.pairs[0]["provenance"]["votes"]["chosen"] == pytest.approx(0.8 / 0.25)


def test_likert_converts_to_pairs_and_ignores_ties() -> None:
    row = {**_pair_row("1", "x", None, "n"), "scale": "likert",
           "responses": [{"response_id": r, "text": r.upper()} for r in "abc"], "value": {"a": 5, "b": 2, "c": 2}}
    res = aggregate(parse_judgments([row]), AggregationConfig(method="majority"))
    assert {(p["chosen"], p["rejected"]) for p in res.pairs} == {("A", "B"), ("A", "C")}


def test_dawid_skene_with_pooled_weighting_is_refused() -> None:
    js = parse_judgments([_pair_row("1", "x", "a", "n"), _pair_row("2", "y", "b", "s")])
    with pytest.raises(ValueError, match="by-group"):
        aggregate(js, AggregationConfig(method="dawid-skene", weighting="poststrat",
                                        population_shares={"region": {"n": 0.5, "s": 0.5}}))


def test_plackett_luce_uses_weighted_breaking_when_weights_differ() -> None:
    def rank_row(jid: str, ann: str, order: list[str], region: str) -> dict:
        return {**_pair_row(jid, ann, None, region), "scale": "ranking", "value": order,
                "responses": [{"response_id": r, "text": r.upper()} for r in "abc"]}
    rows = [rank_row(str(i), f"n{i}", ["a", "b", "c"], "north") for i in range(3)]
    rows.append(rank_row("9", "s", ["c", "b", "a"], "south"))
    js = parse_judgments(rows)
    plain = aggregate(js, AggregationConfig(method="plackett-luce", with_report=False))
    assert plain.report["method_info"]["estimator_units"] == {"choix.ilsr_rankings": 1}
    assert plain.pairs[0]["provenance"]["scores"]["a"] > plain.pairs[0]["provenance"]["scores"]["c"]
    shares = {"region": {"north": 0.1, "south": 0.9}}
    weighted = aggregate(js, AggregationConfig(method="plackett-luce", weighting="poststrat",
                                               population_shares=shares, with_report=False))
    info = weighted.report["method_info"]["estimator_units"]
    assert list(info) == ["weighted full rank-breaking + ilsr_pairwise_dense"]
    scores = weighted.pairs[0]["provenance"]["scores"]
    assert scores["c"] > scores["b"] > scores["a"]  # the 90 % south voice now decides the order


def test_aggregation_config_is_typed_and_matches_the_cli_choices() -> None:
    import typing

    from discovery.commands.aggregate import METHOD_CHOICES, WEIGHTING_CHOICES
    from preference_data.aggregation.pipeline import Method, Weighting

    with pytest.raises(ValueError, match="method: 'dawid_skene' is not one of"):
        AggregationConfig(method="dawid_skene")  # type: ignore[arg-type]
    assert typing.get_args(Method) == METHOD_CHOICES
    assert typing.get_args(Weighting) == WEIGHTING_CHOICES
