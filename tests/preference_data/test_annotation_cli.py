"""`prefdisco annotate` verbs end to end on a temporary SQLite file, and agreement figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discovery.commands import app
from discovery.errors import UserError
from preference_data.annotation.agreement import agreement_by_dimension
from preference_data.annotation.store import read_judgments

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["annotate", *args])


def test_cli_create_import_annotators_status_export(tmp_path: Path) -> None:
    db = str(tmp_path / "ann.db")
    spec = str(ROOT / "configs/annotation/example_project.yaml")
    items = str(ROOT / "configs/annotation/example_items.jsonl")
    r = _run("create", "--spec", spec, "--db", db, "--json")
    assert r.exit_code == 0 and "/admin/" in json.loads(r.output)["admin_link"], r.output
    r = _run("create", "--spec", spec, "--db", db)
    assert isinstance(r.exception, UserError) and "already exists" in str(r.exception)
    r = _run("import", items, "--project", "example", "--db", db)
    assert r.exit_code == 0 and "imported 6 item(s)" in r.output
    r = _run("add-annotators", "-p", "example", "-n", "2", "--attr", "region=south", "--db", db, "--json")
    links = json.loads(r.output)
    assert len(links) == 2 and all("/a/" in x["link"] for x in links)
    r = _run("add-annotators", "-p", "example", "--attr", "region=mars", "--db", db)
    assert isinstance(r.exception, UserError) and "not allowed" in str(r.exception)
    r = _run("status", "-p", "example", "--db", db, "--json")
    st = json.loads(r.output)["status"]
    assert (st["items"], st["annotators"], st["judgments"]) == (6, 2, 0)
    out = tmp_path / "j.parquet"
    r = _run("export", "-p", "example", "--db", db, "--out", str(out))
    assert r.exit_code == 0 and out.exists() and read_judgments(out) == []
    r = _run("revoke", "-p", "example", "-a", links[0]["annotator_id"], "--db", db)
    assert r.exit_code == 0 and "revoked 1" in r.output
    r = _run("revoke", "-p", "example", "-a", "a-nobody", "--db", db)
    assert isinstance(r.exception, UserError)
    r = _run("status", "-p", "nope", "--db", db)
    assert isinstance(r.exception, UserError)


def _row(item: str, ann: str, scale: str, value: object, dim: str = "d") -> dict:
    return {"item_id": item, "annotator_id": ann, "scale": scale, "dimension": dim, "value": value,
            "responses": [{"response_id": "r1"}, {"response_id": "r2"}]}


def test_agreement_perfect_and_chance() -> None:
    same = [_row(f"i{k}", a, "pairwise", "r1" if k % 2 else "r2") for k in range(6) for a in ("a", "b")]
    assert agreement_by_dimension(same)["d"]["alpha"] == pytest.approx(1.0)
    opposite = [_row(f"i{k}", a, "pairwise", ("r1" if (k + (a == "b")) % 2 else "r2"))
                for k in range(6) for a in ("a", "b")]
    assert agreement_by_dimension(opposite)["d"]["alpha"] < 0
    lik = [_row("i1", a, "likert", {"r1": v, "r2": 6 - v}) for a, v in (("a", 1), ("b", 2))]
    res = agreement_by_dimension(lik)["d"]
    assert res["units"] == 2 and res["alpha"] is not None and res["alpha"] > 0.5
    assert agreement_by_dimension([_row("i1", "a", "pairwise", "r1")])["d"]["alpha"] is None
