"""Pipeline behaviour: provenance, per-dimension/per-group pairs, clustering, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preference_data.aggregation import AggregationConfig, aggregate, parse_judgments, write_pairs
from preference_data.aggregation.simulate import SimulatedAnnotator, quality, simulate_judgments, truth_items


def _two_taste_population(n_a: int = 9, n_b: int = 3) -> list[SimulatedAnnotator]:
    """Group A likes high 'quality', group B the opposite; declared region is deliberately unrelated."""
    anns = [SimulatedAnnotator(f"a{i}", quality, 0.1, {"region": "north" if i % 2 else "south"}) for i in range(n_a)]
    anns += [SimulatedAnnotator(f"b{i}", lambda it, r: -quality(it, r), 0.1,
                                {"region": "north" if i % 2 else "south"}) for i in range(n_b)]
    return anns


def test_clusters_found_without_demographics() -> None:
    from sklearn.metrics import adjusted_rand_score
    js = parse_judgments(simulate_judgments(truth_items(60, seed=1), _two_taste_population(), overlap=8, seed=2))
    clusters = aggregate(js, AggregationConfig()).report["clusters"]
    assert clusters["k"] == 2 and sorted(c["size"] for c in clusters["clusters"]) == [3, 9]
    found = {a: c["cluster"] for c in clusters["clusters"] for a in c["annotators"]}
    names = sorted(found)
    assert adjusted_rand_score([n[0] for n in names], [found[n] for n in names]) == 1.0
    assert abs(clusters["adjusted_rand_vs_declared"]["region"]) < 0.3
    assert clusters["clusters"][0]["distinctive_choices"]


def test_by_group_pairs_disagree_and_carry_population_mass() -> None:
    anns = _two_taste_population(8, 2)
    for a in anns:
        a.attributes = {"taste": a.annotator_id[0]}
    js = parse_judgments(simulate_judgments(truth_items(30, seed=3), anns, overlap=10, seed=4))
    shares = {"taste": {"a": 0.6, "b": 0.4}}
    res = aggregate(js, AggregationConfig(method="majority", weighting="poststrat", by_group=True,
                                          population_shares=shares))
    by_group = {g: [p for p in res.pairs if p["group"] == g] for g in ("a", "b")}
    assert len(by_group["a"]) == 30 and len(by_group["b"]) >= 25  # 1-1 ties in b are dropped
    b_choice = {p["provenance"]["item_id"]: p["chosen"] for p in by_group["b"]}
    opposite = sum(b_choice.get(p["provenance"]["item_id"]) == p["rejected"] for p in by_group["a"])
    assert opposite >= len(by_group["b"]) - 3
    total = sum(p["weight"] for p in res.pairs)
    assert sum(p["weight"] for p in by_group["b"]) / total == pytest.approx(0.4)
    assert sum(p["weight"] for p in res.pairs) / len(res.pairs) == pytest.approx(1.0)
    p = by_group["b"][0]["provenance"]
    assert set(p["judgment_weights"]) == set(p["judgment_ids"]) and p["group_weight"] == by_group["b"][0]["weight"]
    assert all(w == pytest.approx(0.4 / 0.2) for w in p["judgment_weights"].values())


def test_by_dimension_keeps_dimensions_apart() -> None:
    items = truth_items(10, seed=5)
    rows = simulate_judgments(items, _two_taste_population(6, 0), 3, seed=6, dimension="helpful")
    rows += [{**r, "judgment_id": r["judgment_id"] + "x", "dimension": "brief"} for r in
             simulate_judgments(items, _two_taste_population(0, 6), 3, seed=7)]
    res = aggregate(parse_judgments(rows), AggregationConfig(method="dawid-skene", by_dimension=True))
    dims = {p["dimension"] for p in res.pairs}
    assert dims == {"helpful", "brief"} and len(res.pairs) == 20
    assert set(res.report["agreement"]["by_dimension"]) == {"helpful", "brief"}


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from discovery.commands import app
    runner = CliRunner()
    res = runner.invoke(app, ["aggregate", "--judgments", str(tmp_path / "missing.jsonl"), "--project", "p",
                              "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code != 0 and "no judgments file" in str(res.exception)
    f = tmp_path / "j.jsonl"
    f.write_text(json.dumps({"judgment_id": "j1", "project": "p", "item_id": "i", "responses": [],
                             "dimension": "d", "scale": "pairwise", "value": "zz", "annotator_id": "a"}) + "\n")
    res = runner.invoke(app, ["aggregate", "--judgments", str(f), "--project", "p", "--out", str(tmp_path / "o")])
    assert "judgment j1" in str(res.exception)
    res = runner.invoke(app, ["aggregate", "--judgments", str(f), "--project", "p", "--method", "vote",
                              "--out", str(tmp_path / "o")])
    assert "--method must be one of" in str(res.exception)


def test_cli_weighting_with_inline_shares(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from discovery.commands import app
    anns = _two_taste_population(8, 2)
    rows = simulate_judgments(truth_items(10, seed=8), anns, 5, seed=9)
    f = tmp_path / "j.jsonl"
    write_pairs(rows, f)
    res = CliRunner().invoke(app, ["aggregate", "--judgments", str(f), "--project", "sim", "--weighting", "poststrat",
                                   "--population-shares", '{"region": {"north": 0.5, "south": 0.5}}',
                                   "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 0, res.output
    assert "pairs from 50 judgments" in res.output
