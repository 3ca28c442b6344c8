"""End to end: the annotation app -> judgments from two simulated annotator groups over HTTP ->
aggregation per group and dimension -> group-robust training on the `hf` tier (a tiny random-init
GPT-2 saved to a temp dir) -> a per-group report, all through `prefdisco annotate train`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from discovery.commands import app as cli
from preference_data.annotation.app import create_app
from preference_data.annotation.demo import LoopbackServer
from preference_data.annotation.spec import spec_from_dict
from preference_data.annotation.store import add_annotators, create_project, import_items
from tests import tiny_hf

pytestmark = pytest.mark.slow

SPEC = {"name": "tiny", "overlap": 4,
        "dimensions": [{"name": "liking", "scale": "pairwise"}, {"name": "overall", "scale": "ranking"}],
        "attributes": [{"name": "group", "values": ["majority", "minority"]}],
        "population_shares": {"group": {"majority": 0.5, "minority": 0.5}}}


def _answer(item: dict, group: str, rng: random.Random) -> dict:
    """Majority annotators like positive reviews, the minority negative ones; 10% random clicks."""
    sign = 1 if group == "majority" else -1
    ranked = sorted(item["responses"], key=lambda r: -sign * tiny_hf.sentiment(r["text"]))
    ids = [r["response_id"] for r in ranked]
    if rng.random() < 0.1:
        rng.shuffle(ids)
    return {"liking": ids[0], "overall": ids}


@pytest.mark.timeout(600)
def test_app_to_group_robust_hf_training_and_group_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    create_project(url, spec_from_dict(SPEC))
    items = [{"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"]]} for p in tiny_hf.review_pairs(24)]
    import_items(url, "tiny", tiny_hf.write_jsonl(tmp_path / "items.jsonl", items))
    people = [("majority", t.token) for t in add_annotators(url, "tiny", 5, {"group": "majority"})]
    people += [("minority", t.token) for t in add_annotators(url, "tiny", 3, {"group": "minority"})]
    rng = random.Random(0)
    with LoopbackServer(create_app(url)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        for _, token in people:
            assert c.post(f"/api/a/{token}/consent", json={"consent": True}).status_code == 200
        open_people = list(people)
        while open_people:  # interleave annotators so every item gets both groups
            for group, token in list(open_people):
                item = c.get(f"/api/a/{token}/next").json()["item"]
                if item is None:
                    open_people.remove((group, token))
                    continue
                r = c.post(f"/api/a/{token}/items/{item['item_id']}", json={"answers": _answer(item, group, rng)})
                assert r.status_code == 200, r.text
    model = tiny_hf.build_tiny_gpt2(tmp_path / "model")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["annotate", "train", "-p", "tiny", "--db", url, "--model", str(model),
                                      "--out", str(out), "--steps", "6", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["objective"] == "group-robust" and report["group_attribute"] == "group"
    assert set(report["per_group"]) == {"majority", "minority"}
    for r in report["per_group"].values():
        assert r["pairs"] > 0 and 0.0 <= r["accuracy"] <= 1.0 and r["loss"] is not None
    worst = report["worst_group"]
    assert worst["accuracy"] == min(r["accuracy"] for r in report["per_group"].values())
    weights = report["group_weights"]
    assert set(weights) == {"majority", "minority"} and sum(weights.values()) == pytest.approx(1.0)
    assert weights != {"majority": 0.5, "minority": 0.5}  # the objective moved the group weights
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert {p["group"] for p in pairs} == {"majority", "minority"}
    assert {p["dimension"] for p in pairs} == {"liking", "overall"}
    # the groups disagree: on some item the two groups' pairs point opposite ways
    by_item = {}
    for p in pairs:
        by_item.setdefault((p["provenance"]["item_id"], p["dimension"]), {})[p["group"]] = p["chosen"]
    assert any(len(set(v.values())) == 2 for v in by_item.values() if len(v) == 2)
    assert (out / "model" / "final" / "config.json").exists()
    saved = json.loads((out / "group_report.json").read_text())
    assert saved["per_group"] == report["per_group"]
    # the trainer saw dimension-conditioned prompts
    generations = json.loads((out / "result.json").read_text())["extra"]["generations"]
    assert all(g["prompt"].startswith(("[liking] ", "[overall] ")) for g in generations)
