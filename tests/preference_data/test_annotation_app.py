"""The web app under bad input and abuse: tokens, invalid answers, duplicates, concurrency."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from preference_data.annotation.app import create_app
from preference_data.annotation.db import session_factory
from preference_data.annotation.demo import LoopbackServer, build_demo_project, random_answers
from preference_data.annotation.models import Annotator, Judgment, utcnow
from preference_data.annotation.store import export_judgments


def _n_judgments(url: str) -> int:
    with session_factory(url)() as s:
        return s.scalar(select(func.count()).select_from(Judgment)) or 0


@pytest.fixture()
def demo_app(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=4, n_annotators=3, n_responses=3)
    return demo, TestClient(create_app(url, "demo"), follow_redirects=False)


def test_bad_tokens_see_nothing(demo_app) -> None:
    demo, client = demo_app
    ann_token = demo.annotator_tokens[0]
    with session_factory(demo.db_url)() as s:
        expired = s.get(Annotator, demo.annotator_ids[1])
        expired.expires_at = utcnow() - timedelta(minutes=1)
        s.get(Annotator, demo.annotator_ids[2]).revoked = True
        s.commit()
    item_id = client.get(f"/api/a/{ann_token}/next").json()["item"]["item_id"]
    cases = [("bogus-token", 401), (demo.annotator_tokens[1], 403), (demo.annotator_tokens[2], 403)]
    for token, code in cases:
        for method, path in [("GET", f"/a/{token}"), ("GET", f"/a/{token}/item"),
                             ("GET", f"/api/a/{token}/next"), ("POST", f"/a/{token}/item/{item_id}"),
                             ("POST", f"/api/a/{token}/items/{item_id}")]:
            r = client.request(method, path, json={"answers": {}} if "api" in path else None)
            assert r.status_code == code, (token, path, r.status_code)
            for secret in ("Prompt", "Answer", "Pick the answer", "Demo project", "helpfulness"):
                assert secret not in r.text, (token, path, secret)
    for token in ("nope", ann_token):  # an annotator's token is not an admin token
        for path in (f"/admin/{token}", f"/admin/{token}/export.jsonl", f"/admin/{token}/status.json"):
            r = client.get(path)
            assert r.status_code == 401 and "a-" not in r.text, path
    assert client.get(f"/admin/{demo.admin_token}").status_code == 200
    assert _n_judgments(demo.db_url) == 0


def test_consent_is_required_before_any_item(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1, consent=False)
    client = TestClient(create_app(url, "demo"), follow_redirects=False)
    token = demo.annotator_tokens[0]
    assert client.get(f"/a/{token}/item").status_code == 303
    assert client.get(f"/api/a/{token}/next").status_code == 403
    assert client.post(f"/a/{token}/start", data={}).status_code == 422
    r = client.post(f"/a/{token}/start", data={"consent": "yes", "attr.region": "south",
                                               "attr.age_band": "30-49"})
    assert r.status_code == 303
    with session_factory(url)() as s:
        a = s.get(Annotator, demo.annotator_ids[0])
        # region was preset by the researcher (north): a self-description never overwrites it
        assert a.consent and a.attributes == {"region": "north", "age_band": "30-49"}


def test_invalid_submissions_are_refused_and_store_nothing(demo_app) -> None:
    demo, client = demo_app
    t0, t1 = demo.annotator_tokens[:2]
    item = client.get(f"/api/a/{t0}/next").json()["item"]
    iid = item["item_id"]
    rids = [r["response_id"] for r in item["responses"]]
    good = random_answers(item, random.Random(0))

    def post(token: str, item_id: str, **changes):  # type: ignore[no-untyped-def]
        return client.post(f"/api/a/{token}/items/{item_id}", json={"answers": {**good, **changes}})

    # t1 has not been given this item (and t0 has not been given the others)
    from preference_data.annotation.models import Item
    with session_factory(demo.db_url)() as s:
        other_item = next(i for i in s.scalars(select(Item.id)) if i != iid)
    bad = [
        (post(t1, iid), 403, "not assigned"),
        (post(t0, other_item), 403, "not assigned"),
        (post(t0, "i-doesnotexist"), 403, "not assigned"),
        (post(t0, iid, politeness={rid: 9 for rid in rids}), 422, "out of range"),
        (post(t0, iid, politeness={rid: 3 for rid in rids[:-1]}), 422, "rate every response"),
        (post(t0, iid, overall=[rids[0], rids[0], rids[1]]), 422, "not a permutation"),
        (post(t0, iid, overall=rids[:-1]), 422, "not a permutation"),
        (post(t0, iid, helpfulness="r-someone-else"), 422, "choose one of"),
        (post(t0, iid, helpfulness=None), 422, "required"),
        (post(t0, iid, flavour="x"), 422, "unknown dimension"),
    ]
    for r, code, fragment in bad:
        assert r.status_code == code and fragment in r.json()["error"], (r.status_code, r.text)
    # the HTML form path refuses a non-permutation ranking with a readable page
    form = {f"rank.overall.{rid}": "1" for rid in rids}
    r = client.post(f"/a/{t0}/item/{iid}", data=form)
    assert r.status_code == 422 and "not a permutation" in r.text
    assert _n_judgments(demo.db_url) == 0

    assert post(t0, iid).status_code == 200
    assert _n_judgments(demo.db_url) == 4
    dup = post(t0, iid)
    assert dup.status_code == 409 and "duplicate" in dup.json()["error"]
    assert _n_judgments(demo.db_url) == 4


def test_html_form_submission_and_skip(demo_app) -> None:
    demo, client = demo_app
    token = demo.annotator_tokens[0]
    item = client.get(f"/api/a/{token}/next").json()["item"]
    rids = [r["response_id"] for r in item["responses"]]
    page = client.get(f"/a/{token}/item").text
    assert item["prompt"] in page and all(r["text"] in page for r in item["responses"])
    form = {"pairwise.helpfulness": rids[1], "comment": "ok", "time_spent_s": "1.5"}
    form |= {f"likert.politeness.{rid}": str(i + 2) for i, rid in enumerate(rids)}
    form |= {f"rank.overall.{rid}": str(3 - i) for i, rid in enumerate(rids)}
    r = client.post(f"/a/{token}/item/{item['item_id']}", data=form)
    assert r.status_code == 303
    rows = {row["dimension"]: row for row in export_judgments(demo.db_url, "demo")}
    assert set(rows) == {"helpfulness", "politeness", "overall"}  # optional text left blank
    assert rows["overall"]["value"] == list(reversed(rids))
    assert rows["politeness"]["value"] == {rid: i + 2 for i, rid in enumerate(rids)}
    assert rows["helpfulness"]["time_spent_s"] <= 1.5
    nxt = client.get(f"/api/a/{token}/next").json()["item"]["item_id"]
    assert client.post(f"/a/{token}/item/{nxt}/skip").status_code == 303
    assert client.get(f"/api/a/{token}/next").json()["item"]["item_id"] != nxt


def test_concurrent_annotators_never_overwrite_each_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=6, n_annotators=8, n_responses=2)
    acked: dict[str, tuple[str, str, object]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    with LoopbackServer(create_app(url, "demo")) as srv:
        def work(idx: int, token: str) -> None:
            rng = random.Random(idx)
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                while True:
                    item = c.get(f"/api/a/{token}/next").json()["item"]
                    if item is None:
                        return
                    answers = random_answers(item, rng)
                    r = c.post(f"/api/a/{token}/items/{item['item_id']}", json={"answers": answers})
                    if r.status_code != 200:
                        errors.append(r.text)
                        return
                    names = [d["name"] for d in item["dimensions"] if d["name"] in answers]
                    with lock:
                        for jid, name in zip(r.json()["judgment_ids"], names):
                            acked[jid] = (demo.annotator_ids[idx], name, answers[name])

        threads = [threading.Thread(target=work, args=(i, t)) for i, t in enumerate(demo.annotator_tokens)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    assert not errors, errors[:3]
    rows = export_judgments(url, "demo")
    assert len(rows) == len(acked) == 6 * 3 * 4  # every item reached k=3, 4 dimensions each
    for row in rows:
        assert acked[row["judgment_id"]] == (row["annotator_id"], row["dimension"], row["value"])
    per_item = Counter((r["item_id"], r["annotator_id"]) for r in rows)
    assert all(n == 4 for n in per_item.values())
    assert Counter(i for i, _ in per_item).most_common(1)[0][1] == 3


def test_racing_duplicates_land_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1)
    token = demo.annotator_tokens[0]
    with LoopbackServer(create_app(url, "demo")) as srv:
        item = httpx.get(f"{srv.url}/api/a/{token}/next").json()["item"]
        body = {"answers": random_answers(item, random.Random(3))}
        codes: list[int] = []
        barrier = threading.Barrier(6)

        def fire() -> None:
            barrier.wait()
            codes.append(httpx.post(f"{srv.url}/api/a/{token}/items/{item['item_id']}",
                                    json=body, timeout=30).status_code)

        threads = [threading.Thread(target=fire) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(codes) == [200] + [409] * 5
    assert _n_judgments(url) == 4
