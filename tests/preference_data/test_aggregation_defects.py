"""Regression tests for defects in aggregation and agreement. Each drives interfaces that existed
before the fix (the `aggregate` CLI, `aggregate()`, the admin status JSON), so on the old code it
fails for the reason its docstring names."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from discovery.commands import app as cli
from discovery.errors import UserError
from preference_data.aggregation import AggregationConfig, aggregate, parse_judgments
from preference_data.aggregation.agreement import agreement_report
from preference_data.annotation.agreement import agreement_by_dimension
from preference_data.annotation.app import create_app
from preference_data.annotation.demo import build_demo_project, random_answers

runner = CliRunner()


def _row(jid: str, ann: str, item: str, chosen: str, dim: str = "overall", region: str = "north",
         ids: tuple[str, str] | None = None) -> dict:
    a, b = ids or (f"{item}-a", f"{item}-b")
    return {"judgment_id": jid, "project": "p", "item_id": item, "prompt": f"prompt {item}",
            "responses": [{"response_id": a, "text": "A"}, {"response_id": b, "text": "BB"}],
            "dimension": dim, "scale": "pairwise", "value": a if chosen == "a" else b, "annotator_id": ann,
            "annotator_attributes": {"region": region}}


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _one_line_user_error(r, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(r.exception, UserError), (r.exception, r.output)
    assert "\n" not in str(r.exception) and fragment in str(r.exception), str(r.exception)


def _split_rows() -> list[dict]:
    """Six items, 4 north + 2 south annotators; north prefers a, south prefers b."""
    return [_row(f"j{i}{k}", f"ann{k}", f"i{i}", "a" if k < 4 else "b", region="north" if k < 4 else "south")
            for i in range(6) for k in range(6)]


# ---------------------------------------------------------------- one alpha
def test_admin_page_and_aggregate_report_the_same_alpha(tmp_path: Path) -> None:
    """Before: the admin page used interval alpha for Likert (0.218 on the reported data) and
    `prefdisco aggregate` ordinal (0.1605): two numbers for one question."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=6, n_annotators=4, n_responses=3)
    client = TestClient(create_app(url, "demo"))
    rng = random.Random(1)
    for token in demo.annotator_tokens:
        while (item := client.get(f"/api/a/{token}/next").json()["item"]) is not None:
            client.post(f"/api/a/{token}/items/{item['item_id']}", json={"answers": random_answers(item, rng)})
    admin = client.get(f"/admin/{demo.admin_token}/status.json").json()["agreement"]
    out = tmp_path / "pairs.jsonl"
    r = runner.invoke(cli, ["aggregate", "--judgments", str(tmp_path / "a.db"), "-p", "demo", "--out", str(out),
                            "--json"])
    assert r.exit_code == 0, r.output
    cli_alpha = json.loads(r.stdout)["agreement"]["by_dimension"]
    for dim in ("helpfulness", "politeness", "overall"):
        assert admin[dim]["level"] == cli_alpha[dim]["level"], dim
        assert admin[dim]["alpha"] == pytest.approx(cli_alpha[dim]["alpha"], abs=1e-4), dim
    assert admin["politeness"]["level"] == "ordinal"


def test_pairwise_alpha_does_not_depend_on_response_numbering() -> None:
    """Before: pairwise alpha coded the chosen response by its index among sorted ids, so renaming
    responses (which changes nothing about who agreed with whom) changed alpha."""
    rng = random.Random(5)
    rows, renamed = [], []
    for i in range(12):
        for k in range(3):
            chosen = "a" if rng.random() < 0.75 else "b"
            rows.append(_row(f"j{i}{k}", f"ann{k}", f"i{i}", chosen))
            # the same judgment with the item's responses named the other way round
            renamed.append(_row(f"j{i}{k}", f"ann{k}", f"i{i}", chosen, ids=(f"{i}-z", f"{i}-y") if i % 2 else None))
    for compute in (lambda rs: agreement_report(parse_judgments(rs), lambda j: None)["by_dimension"]["overall"]["alpha"],
                    lambda rs: agreement_by_dimension(rs)["overall"]["alpha"]):
        assert compute(rows) == pytest.approx(compute(renamed), abs=1e-9)


# ---------------------------------------------------------------- bad input: one line
def test_aggregate_file_with_a_json_array_line_is_a_one_line_error(tmp_path: Path) -> None:
    """Before: a line holding a JSON array raised AttributeError ('list' has no 'get')."""
    f = tmp_path / "j.jsonl"
    f.write_text(json.dumps(_split_rows()[0]) + "\n[1, 2, 3]\n")
    r = runner.invoke(cli, ["aggregate", "--judgments", str(f), "-p", "p", "--out", str(tmp_path / "o.jsonl")])
    _one_line_user_error(r, "JSON object")


def test_unparsable_population_shares_are_a_one_line_error(tmp_path: Path) -> None:
    """Before: --population-shares '{{{' raised a YAML scanner traceback."""
    f = _write(tmp_path / "j.jsonl", _split_rows())
    r = runner.invoke(cli, ["aggregate", "--judgments", str(f), "-p", "p", "--out", str(tmp_path / "o.jsonl"),
                            "--weighting", "poststrat", "--population-shares", "{{{"])
    _one_line_user_error(r, "--population-shares")


def test_unwritable_out_is_a_one_line_error(tmp_path: Path) -> None:
    """Before: --out to an unwritable path raised OSError with a traceback."""
    f = _write(tmp_path / "j.jsonl", _split_rows())
    r = runner.invoke(cli, ["aggregate", "--judgments", str(f), "-p", "p", "--out", "/proc/nope/pairs.jsonl"])
    _one_line_user_error(r, "writable")


# ---------------------------------------------------------------- accepted but wrong
@pytest.mark.parametrize("shares, fragment", [('{"region": {"north": 0.7}}', "sum to 1"),
                                              ('{"region": {"north": 0.5, "sout": 0.5}}', "gives no share to ['south']")])
def test_population_shares_must_cover_every_group(tmp_path: Path, shares: str, fragment: str) -> None:
    """Before: shares that did not sum to 1, or that missed a group present in the data, silently
    weighted that group 0 (its 12 judgments dropped) with exit code 0."""
    f = _write(tmp_path / "j.jsonl", _split_rows())
    r = runner.invoke(cli, ["aggregate", "--judgments", str(f), "-p", "p", "--out", str(tmp_path / "o.jsonl"),
                            "--weighting", "poststrat", "--population-shares", shares])
    _one_line_user_error(r, fragment)


def test_unknown_group_attribute_is_refused(tmp_path: Path) -> None:
    """Before: an unknown --group-attribute put everyone in "(missing)" and exited 0."""
    f = _write(tmp_path / "j.jsonl", _split_rows())
    r = runner.invoke(cli, ["aggregate", "--judgments", str(f), "-p", "p", "--out", str(tmp_path / "o.jsonl"),
                            "--by-group", "--group-attribute", "regoin"])
    _one_line_user_error(r, "regoin")


def test_dimensions_are_decided_separately_by_default(tmp_path: Path) -> None:
    """Before: without --by-dimension every dimension's votes were pooled into one decision."""
    rows = [_row(f"h{i}{k}", f"ann{k}", f"i{i}", "a", dim="helpful") for i in range(3) for k in range(3)]
    rows += [_row(f"p{i}{k}", f"ann{k}", f"i{i}", "b", dim="polite") for i in range(3) for k in range(3)]
    pairs = aggregate(parse_judgments(rows), AggregationConfig()).pairs
    assert {(p["dimension"], p["chosen"]) for p in pairs} == {("helpful", "A"), ("polite", "BB")}
    out = tmp_path / "o.jsonl"
    assert runner.invoke(cli, ["aggregate", "--judgments", str(_write(tmp_path / "j.jsonl", rows)), "-p", "p",
                               "--out", str(out)]).exit_code == 0
    assert {json.loads(x)["dimension"] for x in out.read_text().splitlines()} == {"helpful", "polite"}


def test_dawid_skene_confidence_reflects_the_vote_margin() -> None:
    """Before: Dawid-Skene reported confidence 1.0 on a 4-3 vote."""
    rows = []
    for wins in (7, 6, 5, 4):  # item i<wins>: `wins` of 7 annotators prefer a
        rows += [_row(f"j{wins}{k}", f"ann{k}", f"i{wins}", "a" if k < wins else "b") for k in range(7)]
    for i in range(20):  # plenty of easy items, so every annotator looks reliable
        rows += [_row(f"e{i}{k}", f"ann{k}", f"e{i}", "a") for k in range(7)]
    pairs = aggregate(parse_judgments(rows), AggregationConfig(method="dawid-skene")).pairs
    conf = {p["provenance"]["item_id"]: p["provenance"]["confidence"] for p in pairs}
    assert all(p["chosen"] == "A" for p in pairs)
    assert conf["i4"] < 0.75, conf
    assert conf["i4"] < conf["i5"] < conf["i6"] < conf["i7"] <= conf["e0"]
    assert conf["i7"] > 0.95


def test_no_group_is_listed_with_weight_zero_without_by_group(tmp_path: Path) -> None:
    """Before: without --by-group the report and the CLI listed every group with 0 pairs and a
    total pair weight of 0, as if those groups had been dropped."""
    res = aggregate(parse_judgments(_split_rows()), AggregationConfig())
    assert res.report["groups"] and all("pair_weight_total" not in g for g in res.report["groups"].values())
    f = _write(tmp_path / "j.jsonl", _split_rows())
    r = runner.invoke(cli, ["aggregate", "--judgments", str(f), "-p", "p", "--out", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 0 and "group north" in r.stdout and "pair weight" not in r.stdout
    by_group = aggregate(parse_judgments(_split_rows()), AggregationConfig(by_group=True)).report["groups"]
    assert all(g["pair_weight_total"] > 0 for g in by_group.values())
