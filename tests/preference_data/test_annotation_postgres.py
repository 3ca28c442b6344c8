"""The same data model on PostgreSQL (a throwaway cluster on loopback, started by the test)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from preference_data.annotation.demo import build_demo_project, random_answers

from tests.pg_fixture import INITDB, pg_server, pg_url  # noqa: F401  (shared throwaway cluster)

pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.skipif(not INITDB, reason="needs Debian postgresql (run scripts/services)")]


@pytest.mark.timeout(180)
def test_session_on_postgres(pg_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from preference_data.annotation.app import create_app
    from preference_data.annotation.db import dispose_engine
    from preference_data.annotation.store import export_judgments

    demo = build_demo_project(pg_url, tmp_path, n_items=2, n_annotators=2, n_responses=3)
    client = TestClient(create_app(pg_url, "demo"))
    rng = random.Random(0)
    for token in demo.annotator_tokens:
        item = client.get(f"/api/a/{token}/next").json()["item"]
        body = {"answers": random_answers(item, rng)}
        assert client.post(f"/api/a/{token}/items/{item['item_id']}", json=body).status_code == 200
        dup = client.post(f"/api/a/{token}/items/{item['item_id']}", json=body)
        assert dup.status_code == 409
    rows = export_judgments(pg_url, "demo")
    assert len(rows) == 8 and {r["annotator_id"] for r in rows} == set(demo.annotator_ids)
    assert client.get(f"/admin/{demo.admin_token}").status_code == 200
    dispose_engine(pg_url)


@pytest.mark.timeout(180)
def test_v1_database_upgrades_on_postgres(pg_url: str, tmp_path: Path) -> None:
    from tests.preference_data.test_annotation_store import check_v1_upgrade
    check_v1_upgrade(pg_url, tmp_path)
