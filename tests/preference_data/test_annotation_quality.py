"""What research teams expect of a preference-collection tool: gold and attention checks with
quality scores, qualification, caps, crowd-platform joins and completion codes, consent
withdrawal, several projects per server, review/adjudication, markdown and conversations, and
exports to CSV and Hugging Face datasets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from preference_data.aggregation import AggregationConfig, aggregate, parse_judgments
from preference_data.annotation.app import create_app
from preference_data.annotation.demo import DEMO_SPEC, build_demo_project, random_answers
from preference_data.annotation.render import render_markdown
from preference_data.annotation.spec import spec_from_dict
from preference_data.annotation.store import (StoreError, add_annotators, create_join_link, create_project,
                                              export_judgments, import_items, read_judgments, write_export)

TWO_DIMS = {"dimensions": [{"name": "helpfulness", "scale": "pairwise"}, {"name": "overall", "scale": "ranking"}]}


def _controls(path: Path, n: int = 2) -> Path:
    """Attention checks: the prompt says which response to pick (index 1 = the second)."""
    rows = [{"prompt": f"Attention check {i}: pick the response that says BANANA.", "kind": "attention",
             "responses": [f"apple {i}", f"BANANA {i}"], "gold": {"helpfulness": 1}} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _answer_all(client: TestClient, token: str, good_on_controls: bool, rng: random.Random) -> list[str]:
    seen = []
    while (item := client.get(f"/api/a/{token}/next").json()["item"]) is not None:
        answers = random_answers(item, rng)
        if item["prompt"].startswith("Attention check"):
            banana = next(r["response_id"] for r in item["responses"] if "BANANA" in r["text"])
            other = next(r["response_id"] for r in item["responses"] if "BANANA" not in r["text"])
            answers["helpfulness"] = banana if good_on_controls else other
        r = client.post(f"/api/a/{token}/items/{item['item_id']}", json={"answers": answers})
        assert r.status_code == 200, r.text
        seen.append(item["prompt"])
    return seen


def test_attention_checks_score_annotators_feed_dawid_skene_and_stay_out_of_pairs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=6, n_annotators=2, spec_overrides={
        **TWO_DIMS, "quality": {"control_every": 3}})
    import_items(url, "demo", _controls(tmp_path / "controls.jsonl"))
    client = TestClient(create_app(url, "demo"))
    rng = random.Random(0)
    careful = _answer_all(client, demo.annotator_tokens[0], True, rng)
    _answer_all(client, demo.annotator_tokens[1], False, rng)
    # controls are interleaved (one per `control_every` regular items), every control seen once
    assert [p.startswith("Attention") for p in careful] == [True, False, False, False, True, False, False, False]
    rows = export_judgments(url, "demo")
    quality = {r["annotator_id"]: r["annotator_quality"] for r in rows}
    assert quality[demo.annotator_ids[0]] == {"correct": 2, "total": 2, "score": 0.75}
    assert quality[demo.annotator_ids[1]] == {"correct": 0, "total": 2, "score": 0.25}
    control_rows = [r for r in rows if r["item_kind"] == "attention" and r["dimension"] == "helpfulness"]
    assert len(control_rows) == 4 and all(r["gold"] is not None for r in control_rows)
    assert {r["correct"] for r in control_rows if r["annotator_id"] == demo.annotator_ids[1]} == {False}
    js = parse_judgments(rows)
    for method in ("majority", "dawid-skene"):
        res = aggregate(js, AggregationConfig(method=method))
        assert not any(p["prompt"].startswith("Attention") for p in res.pairs)
        assert res.report["n_attention_judgments"] == 8
    info = aggregate(js, AggregationConfig(method="dawid-skene")).report["method_info"]
    assert info["annotators_with_quality_scores"] == 2
    rel = info["annotator_reliability"]
    assert rel[demo.annotator_ids[0]] > rel[demo.annotator_ids[1]]  # failed checks lower the accuracy
    status = client.get(f"/admin/{demo.admin_token}/status.json").json()
    assert status["status"]["control_items"] == 2 and status["status"]["items"] == 6


def test_gold_answers_anchor_dawid_skene() -> None:
    def row(jid, ann, item, chosen, kind="regular", gold=None):  # type: ignore[no-untyped-def]
        return {"judgment_id": jid, "project": "p", "item_id": item, "prompt": item,
                "responses": [{"response_id": f"{item}-a", "text": "A"}, {"response_id": f"{item}-b", "text": "B"}],
                "dimension": "d", "scale": "pairwise", "value": f"{item}-{chosen}", "annotator_id": ann,
                "item_kind": kind, "gold": None if gold is None else f"{item}-{gold}"}
    # two annotators always disagree; only the gold item says who is right
    rows = [row("g1", "x", "gold", "a", "gold", "a"), row("g2", "y", "gold", "b", "gold", "a")]
    rows += [row(f"r{i}x", "x", f"i{i}", "a") for i in range(5)] + [row(f"r{i}y", "y", f"i{i}", "b") for i in range(5)]
    res = aggregate(parse_judgments(rows), AggregationConfig(method="dawid-skene"))
    assert res.report["method_info"]["gold_tasks"] == 1
    assert {p["provenance"]["item_id"]: p["chosen"] for p in res.pairs}["i0"] == "A"
    assert res.report["method_info"]["annotator_reliability"]["x"] > res.report["method_info"]["annotator_reliability"]["y"]


def test_qualification_step_stops_annotators_who_fail_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=3, n_annotators=2, spec_overrides={
        **TWO_DIMS, "quality": {"qualification_items": 2, "qualification_min_score": 1.0, "control_every": 100}})
    import_items(url, "demo", _controls(tmp_path / "controls.jsonl"))
    client = TestClient(create_app(url, "demo"))
    rng = random.Random(1)
    passed = _answer_all(client, demo.annotator_tokens[0], True, rng)
    failed = _answer_all(client, demo.annotator_tokens[1], False, rng)
    assert [p.startswith("Attention") for p in passed] == [True, True, False, False, False]
    assert len(failed) == 2  # two qualification items, then nothing
    page = client.get(f"/a/{demo.annotator_tokens[1]}/item").text
    assert 'id="not-qualified"' in page
    people = {p["id"]: p for p in client.get(f"/admin/{demo.admin_token}/status.json").json()["annotators"]}
    assert people[demo.annotator_ids[0]]["qualified"] == "yes" and people[demo.annotator_ids[1]]["qualified"] == "no"


def test_per_annotator_cap_and_crowd_join_with_completion_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    build_demo_project(url, tmp_path, n_items=5, n_annotators=0, spec_overrides={
        **TWO_DIMS, "max_items_per_annotator": 2,
        "crowd": {"completion_code": "C0DE42", "completion_url": "https://example.org/done?cc={code}"}})
    join = create_join_link(url, "demo")
    client = TestClient(create_app(url), follow_redirects=False)
    assert client.get(f"/join/{join}").status_code == 400              # no participant id
    assert client.get(f"/join/{join}?PROLIFIC_PID=<script>").status_code == 400
    assert client.get("/join/wrong?PROLIFIC_PID=p1").status_code == 401
    r = client.get(f"/join/{join}?PROLIFIC_PID=pid-1")
    assert r.status_code == 303
    token = r.headers["location"].rsplit("/", 1)[1]
    assert client.post(f"/a/{token}/start", data={"consent": "yes"}).status_code == 303
    done = _answer_all(client, token, True, random.Random(2))
    assert len(done) == 2  # the cap
    page = client.get(f"/a/{token}/item").text
    assert 'id="completion-code">C0DE42<' in page and "https://example.org/done?cc=C0DE42" in page
    again = client.get(f"/join/{join}?PROLIFIC_PID=pid-1").headers["location"].rsplit("/", 1)[1]
    assert client.get(f"/api/a/{again}/next").json()["item"] is None   # same person, still capped
    with pytest.raises(StoreError, match="max-items"):
        add_annotators(url, "demo", 1, max_items=0)
    (special,) = add_annotators(url, "demo", 1, max_items=4)
    client.post(f"/api/a/{special.token}/consent", json={"consent": True})
    assert len(_answer_all(client, special.token, True, random.Random(3))) == 4  # per-annotator override


def test_consent_withdrawal_deletes_the_annotators_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=3, n_annotators=2)
    client = TestClient(create_app(url, "demo"), follow_redirects=False)
    a, b = demo.annotator_tokens
    for token in (a, b):
        item = client.get(f"/api/a/{token}/next").json()["item"]
        client.post(f"/api/a/{token}/items/{item['item_id']}", json={"answers": random_answers(item, random.Random(0))})
    assert client.post(f"/a/{a}/withdraw", data={}).status_code == 422          # needs the confirmation box
    r = client.post(f"/a/{a}/withdraw", data={"confirm": "yes"})
    assert r.status_code == 200 and "4 answers" in r.text
    assert {r["annotator_id"] for r in export_judgments(url, "demo")} == {demo.annotator_ids[1]}
    assert client.get(f"/a/{a}").status_code == 403 and client.get(f"/api/a/{a}/next").status_code == 403
    assert client.post(f"/api/a/{b}/withdraw", json={"confirm": True}).json()["deleted_judgments"] == 4
    assert export_judgments(url, "demo") == []
    people = client.get(f"/admin/{demo.admin_token}/status.json").json()["annotators"]
    assert all(p["withdrawn"] and p["attributes"] == {} for p in people)


def test_one_server_serves_several_projects_with_an_admin_view_each(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    first = build_demo_project(url, tmp_path, n_items=2, n_annotators=1)
    second = build_demo_project(url, tmp_path, n_items=3, n_annotators=1,
                                spec_overrides={"name": "second", "title": "Second study"})
    client = TestClient(create_app(url))
    assert "Second study" in client.get(f"/a/{second.annotator_tokens[0]}").text
    assert client.get(f"/api/a/{first.annotator_tokens[0]}/next").json()["item"]["prompt"].startswith("Prompt")
    assert client.get(f"/admin/{first.admin_token}/status.json").json()["status"]["items"] == 2
    assert client.get(f"/admin/{second.admin_token}/status.json").json()["status"]["items"] == 3
    single = TestClient(create_app(url, "demo"))  # a server for one project refuses the other's links
    assert single.get(f"/a/{second.annotator_tokens[0]}").status_code == 401
    assert single.get(f"/admin/{second.admin_token}").status_code == 401


def test_review_page_lists_disputes_and_adjudication_decides_the_pair(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=3, spec_overrides=TWO_DIMS)
    client = TestClient(create_app(url, "demo"), follow_redirects=False)
    item = client.get(f"/api/a/{demo.annotator_tokens[0]}/next").json()["item"]
    rids = [r["response_id"] for r in item["responses"]]
    for token, pick in zip(demo.annotator_tokens, (0, 0, 1)):
        client.get(f"/api/a/{token}/next")
        client.post(f"/api/a/{token}/items/{item['item_id']}",
                    json={"answers": {"helpfulness": rids[pick], "overall": [rids[pick], rids[1 - pick]]}})
    page = client.get(f"/admin/{demo.admin_token}/review").text
    assert page.count('class="card dispute"') == 2 and "Save decision" in page
    before = aggregate(parse_judgments(export_judgments(url, "demo")), AggregationConfig())
    assert {p["dimension"]: p["provenance"]["chosen_response_id"] for p in before.pairs}["helpfulness"] == rids[0]
    r = client.post(f"/admin/{demo.admin_token}/review/{item['item_id']}/helpfulness",
                    data={"chosen": rids[1], "note": "the minority is right: response 1 is wrong"})
    assert r.status_code == 303
    assert client.post(f"/admin/{demo.admin_token}/review/{item['item_id']}/helpfulness",
                       data={"chosen": "r-bogus"}).status_code == 422
    rows = export_judgments(url, "demo")
    adj = [r for r in rows if r["kind"] == "adjudication"]
    assert len(adj) == 1 and adj[0]["value"] == rids[1] and adj[0]["comment"].startswith("the minority")
    after = aggregate(parse_judgments(rows), AggregationConfig())
    decided = {p["dimension"]: p for p in after.pairs}
    assert decided["helpfulness"]["provenance"]["chosen_response_id"] == rids[1]
    assert decided["helpfulness"]["provenance"]["confidence"] == 1.0 and decided["helpfulness"]["provenance"]["adjudication"]
    assert decided["overall"]["provenance"]["chosen_response_id"] == rids[0]  # other dimension untouched
    assert "decided" in client.get(f"/admin/{demo.admin_token}/review").text


def test_markdown_is_rendered_and_raw_html_never_is() -> None:
    html = str(render_markdown("**bold** <script>alert(1)</script> [x](javascript:alert(1)) "
                               "<img src=x onerror=alert(1)>\n\n```python\ndef f(): return '<b>'\n```\n"
                               "![pic](http://evil.example/p.png)"))
    assert "<strong>bold</strong>" in html and "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and 'href="javascript' not in html and "evil.example" not in html
    assert "<pre><code" in html and "&lt;b&gt;" in html and 'class="k"' in html  # pygments spans


def test_conversations_import_render_and_become_conversational_pairs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    create_project(url, spec_from_dict({**DEMO_SPEC, **TWO_DIMS}))
    conv = [{"role": "user", "content": "Hi, I need a **recipe**."}, {"role": "assistant", "content": "Sure, which?"},
            {"role": "user", "content": "Pancakes <b>now</b>"}]
    f = tmp_path / "conv.jsonl"
    f.write_text(json.dumps({"prompt": conv, "responses": ["Mix flour, eggs, milk.", "No."]}) + "\n")
    assert import_items(url, "demo", f) == (1, 0)
    (ann,) = add_annotators(url, "demo", 1)
    client = TestClient(create_app(url, "demo"))
    client.post(f"/api/a/{ann.token}/consent", json={"consent": True})
    item = client.get(f"/api/a/{ann.token}/next").json()["item"]
    assert item["messages"] == conv
    page = client.get(f"/a/{ann.token}/item").text
    assert 'class="turn user" id="turn-1"' in page and "<strong>recipe</strong>" in page
    assert "&lt;b&gt;now&lt;/b&gt;" in page and "<b>now</b>" not in page
    mix = next(r["response_id"] for r in item["responses"] if r["text"].startswith("Mix"))
    other = next(r["response_id"] for r in item["responses"] if r["response_id"] != mix)
    client.post(f"/api/a/{ann.token}/items/{item['item_id']}",
                json={"answers": {"helpfulness": mix, "overall": [mix, other]}})
    pairs = aggregate(parse_judgments(export_judgments(url, "demo")), AggregationConfig()).pairs
    assert pairs[0]["prompt"] == conv
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "Mix flour, eggs, milk."}]


def test_export_to_csv_and_a_hugging_face_dataset_round_trips(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=2, n_annotators=2)
    client = TestClient(create_app(url, "demo"))
    for token in demo.annotator_tokens:
        _answer_all(client, token, True, random.Random(4))
    rows = export_judgments(url, "demo")
    expected = json.loads(json.dumps(rows))
    for target in (tmp_path / "j.csv", tmp_path / "hf_dataset"):
        path = write_export(rows, target)
        assert read_judgments(path) == expected, target
    import datasets
    ds = datasets.load_from_disk(str(tmp_path / "hf_dataset"))
    assert len(ds) == len(rows) and "annotator_attributes" in ds.column_names
    csv_download = client.get(f"/admin/{demo.admin_token}/export.csv")
    assert csv_download.status_code == 200 and csv_download.text.startswith("judgment_id,")
    with pytest.raises(StoreError, match="unknown export format"):
        write_export(rows, tmp_path / "j.xlsx")


def test_only_attributes_the_spec_opens_are_self_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1, attributes=[{"region": "south"}],
                              consent=False, spec_overrides={"attributes": [
                                  {"name": "region", "values": ["north", "south"]},
                                  {"name": "age_band", "values": ["18-29", "50+"], "self_report": False},
                                  {"name": "language"}]})
    client = TestClient(create_app(url, "demo"), follow_redirects=False)
    token = demo.annotator_tokens[0]
    page = client.get(f"/a/{token}").text
    assert 'id="attr-region" class="locked">south<' in page          # preset: shown, not editable
    assert 'id="attr-age_band" class="locked">' in page              # closed to self-report by the spec
    assert '<input type="text" name="attr.language"' in page
    client.post(f"/a/{token}/start", data={"consent": "yes", "attr.region": "north", "attr.age_band": "50+",
                                           "attr.language": "Welsh"})
    status = client.get(f"/admin/{demo.admin_token}/status.json").json()
    assert status["annotators"][0]["attributes"] == {"region": "south", "language": "Welsh"}
