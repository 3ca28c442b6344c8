"""Annotation data side: spec validation, import shapes, export format, schema migrations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from preference_data.annotation import db as annot_db
from preference_data.annotation.demo import DEMO_SPEC, build_demo_project
from preference_data.annotation.spec import SpecError, load_spec, spec_from_dict
from preference_data.annotation.store import (StoreError, create_project, export_judgments,
                                              import_items, project_status, read_judgments,
                                              write_export)

ROOT = Path(__file__).resolve().parents[2]
EXPORT_KEYS = {"judgment_id", "project", "item_id", "prompt", "responses", "dimension", "scale",
               "value", "annotator_id", "annotator_attributes", "display_order", "comment",
               "created_at", "time_spent_s"}


def test_example_spec_loads() -> None:
    spec = load_spec(ROOT / "configs/annotation/example_project.yaml")
    assert [d.scale for d in spec.dimensions] == ["pairwise", "likert", "ranking", "text"]
    assert spec.quotas.per_item == {"south": 1} and spec.overlap == 3


@pytest.mark.parametrize("patch, fragment", [
    ({"dimensions": [{"name": "x", "scale": "stars"}]}, "scale must be one of"),
    ({"dimensions": [{"name": "x", "scale": "likert", "min": 5, "max": 1}]}, "min < max"),
    ({"overlap": 0}, "overlap"),
    ({"population_shares": {"region": {"north": 0.7, "south": 0.7}}}, "sum to 1"),
    ({"quotas": {"attribute": "region", "per_item": {"south": 5}}}, "more slots than overlap"),
    ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
    # accepted (or a traceback) before: each must now be refused by name
    ({"overlap": "three"}, "overlap: expected int"),
    ({"lease_minutes": -5}, "lease_minutes must be > 0"),
    ({"token_ttl_days": -1}, "token_ttl_days must be > 0"),
    ({"quotas": {"attribute": "region", "per_item": {"south": -1}}}, "whole numbers >= 0"),
    ({"attributes": [{"name": "region", "values": ["north", "north"]}]}, "more than once"),
    ({"population_shares": {"region": {"north": 0.7}}}, "sum to 1"),
    ({"max_items_per_annotator": 0}, "max_items_per_annotator"),
])
def test_bad_spec_names_the_problem(patch: dict, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        spec_from_dict({**DEMO_SPEC, **patch})


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_import_accepts_three_shapes_and_skips_duplicates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    create_project(url, spec_from_dict(DEMO_SPEC))
    f = _write(tmp_path / "items.jsonl", [
        {"prompt": "p1", "responses": [{"text": "a", "model": "m1", "settings": {"t": 1}}, "b"]},
        {"prompt": "p2", "chosen": "good", "rejected": "bad"},
        {"prompt": "p3", "text": "s1", "model": "m1"}, {"prompt": "p3", "text": "s2", "model": "m2"},
    ])
    assert import_items(url, "demo", f) == (3, 0)
    assert import_items(url, "demo", f) == (0, 3)
    camp = tmp_path / "campaign" / "gen"
    camp.mkdir(parents=True)
    _write(camp / "samples_step1.jsonl", [{"prompt": "p4", "responses": ["x", "y"]}])
    assert import_items(url, "demo", tmp_path / "campaign") == (1, 0)
    assert project_status(url, "demo")["items"] == 4


def test_bad_import_stores_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    create_project(url, spec_from_dict(DEMO_SPEC))
    f = _write(tmp_path / "items.jsonl", [{"prompt": "ok", "responses": ["a", "b"]},
                                          {"prompt": "lonely", "responses": ["only one"]}])
    with pytest.raises(StoreError, match="fewer than 2 responses"):
        import_items(url, "demo", f)
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "responses": ["a", "b"]}\nnot json\n')
    with pytest.raises(StoreError, match="line 2"):
        import_items(url, "demo", tmp_path / "bad.jsonl")
    assert project_status(url, "demo")["items"] == 0
    with pytest.raises(StoreError, match="no project"):
        import_items(url, "nope", _write(tmp_path / "good.jsonl", [{"prompt": "x", "responses": ["a", "b"]}]))


def test_export_rows_follow_the_interface_and_round_trip(tmp_path: Path) -> None:
    import random

    from fastapi.testclient import TestClient

    from preference_data.annotation.app import create_app
    from preference_data.annotation.demo import random_answers

    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=2, n_annotators=2, n_responses=3)
    client = TestClient(create_app(url, "demo"))
    rng = random.Random(0)
    for token in demo.annotator_tokens:
        item = client.get(f"/api/a/{token}/next").json()["item"]
        r = client.post(f"/api/a/{token}/items/{item['item_id']}",
                        json={"answers": random_answers(item, rng), "comment": "fine"})
        assert r.status_code == 200, r.text
    rows = export_judgments(url, "demo")
    assert len(rows) == 2 * 4
    for row in rows:
        assert EXPORT_KEYS <= set(row)
        rids = [r["response_id"] for r in row["responses"]]
        assert sorted(row["display_order"]) == sorted(rids) and len(rids) == 3
        assert all({"response_id", "text", "model", "settings"} <= set(r) for r in row["responses"])
        assert row["annotator_attributes"]["region"] in ("north", "south")
        assert row["comment"] == "fine" and row["time_spent_s"] >= 0
    by_scale = {r["scale"]: r["value"] for r in rows}
    assert isinstance(by_scale["pairwise"], str)
    assert isinstance(by_scale["ranking"], list) and len(by_scale["ranking"]) == 3
    assert isinstance(by_scale["likert"], dict) and all(1 <= v <= 5 for v in by_scale["likert"].values())
    assert isinstance(by_scale["text"], str)
    for suffix in (".jsonl", ".parquet"):
        path = write_export(rows, tmp_path / f"out{suffix}")
        assert read_judgments(path) == json.loads(json.dumps(rows))


def test_fresh_db_is_stamped_and_newer_db_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    engine = annot_db.get_engine(url)
    with engine.connect() as conn:
        assert annot_db.current_version(conn) == annot_db.SCHEMA_VERSION
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {annot_db.VERSION_TABLE} SET version = 99"))
    annot_db.dispose_engine(url)
    with pytest.raises(annot_db.SchemaTooNew):
        annot_db.get_engine(url)


def test_pending_migration_keeps_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    build_demo_project(url, tmp_path, n_items=3, n_annotators=1)
    annot_db.dispose_engine(url)
    steps = dict(annot_db.MIGRATIONS)
    current = annot_db.SCHEMA_VERSION
    steps[current + 1] = lambda c: c.execute(text("ALTER TABLE annotation_items ADD COLUMN tags TEXT"))
    monkeypatch.setattr(annot_db, "MIGRATIONS", steps)
    monkeypatch.setattr(annot_db, "SCHEMA_VERSION", current + 1)
    assert annot_db.migrate(create_engine(url)) == current
    engine = create_engine(url)
    assert "tags" in {c["name"] for c in inspect(engine).get_columns("annotation_items")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM annotation_items")).scalar() == 3
        assert annot_db.current_version(conn) == current + 1


def test_v1_database_upgrades_to_per_judgment_attributes(tmp_path: Path) -> None:
    check_v1_upgrade(f"sqlite:///{tmp_path}/a.db", tmp_path)


def check_v1_upgrade(url: str, tmp_path: Path) -> None:
    """A database written before judgments carried attribute snapshots (schema v1) is upgraded in
    place: new columns and tables appear, every judgment is labelled with the attributes its
    annotator had at upgrade time, and nothing is lost. (Also run on PostgreSQL.)"""
    import random as _random

    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from preference_data.annotation.app import create_app
    from preference_data.annotation.demo import random_answers
    from preference_data.annotation.models import Judgment
    demo = build_demo_project(url, tmp_path, n_items=2, n_annotators=2)
    client = TestClient(create_app(url, "demo"))
    for token in demo.annotator_tokens:
        item = client.get(f"/api/a/{token}/next").json()["item"]
        client.post(f"/api/a/{token}/items/{item['item_id']}", json={"answers": random_answers(item, _random.Random(0))})
    before = export_judgments(url, "demo")
    annot_db.dispose_engine(url)
    engine = create_engine(url)
    v2 = {"annotation_projects": ["join_token_hash", "base_url"], "annotation_items": ["kind", "gold", "messages"],
          "annotation_annotators": ["preset_keys", "max_items", "external_id", "withdrawn_at"],
          "annotation_judgments": ["annotator_attributes", "correct"]}
    with engine.begin() as conn:  # turn it back into a v1 database
        for table, cols in v2.items():
            for col in cols:
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {col}"))
        conn.execute(text("DROP TABLE annotation_adjudications"))
        conn.execute(text(f"UPDATE {annot_db.VERSION_TABLE} SET version = 1"))
    engine.dispose()
    assert annot_db.migrate(create_engine(url)) == 1
    after = export_judgments(url, "demo")
    assert len(after) == len(before) == 8
    strip = ("annotator_quality", "item_kind", "gold", "correct", "kind", "messages")
    assert [{k: v for k, v in r.items() if k not in strip} for r in after] == \
        [{k: v for k, v in r.items() if k not in strip} for r in before]
    with annot_db.session_factory(url)() as s:
        snapshots = s.scalars(select(Judgment.annotator_attributes)).all()
    assert len(snapshots) == 8 and all(snap["region"] in ("north", "south") for snap in snapshots)
    annot_db.dispose_engine(url)
