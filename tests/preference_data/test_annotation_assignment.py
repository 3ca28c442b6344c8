"""Overlap k, per-group quotas, leases and skips decide who sees which item."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from preference_data.annotation.assignment import may_take, next_assignment, skip_assignment, SlotCount
from preference_data.annotation.db import session_factory
from preference_data.annotation.demo import build_demo_project, random_answers
from preference_data.annotation.judging import record_submission
from preference_data.annotation.models import Annotator, Assignment
from preference_data.annotation.store import get_project, project_spec


def _answer(url: str, annotator_id: str) -> str | None:
    """Lease the next item for this annotator and answer it; returns the item id (None if none)."""
    with session_factory(url)() as s:
        p = get_project(s, "demo")
        a = s.get(Annotator, annotator_id)
        asg = next_assignment(s, p, project_spec(p), a, random.Random(0))
        if asg is None:
            return None
        item = {"responses": [{"response_id": r} for r in asg.display_order],
                "dimensions": [{"name": d.name, "scale": d.scale, "min": d.likert_min,
                                "max": d.likert_max} for d in p.dimensions]}
        record_submission(s, p, a, asg.item_id, random_answers(item, random.Random(1)))
        return asg.item_id


def test_item_leaves_queue_after_k_submissions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=2, n_annotators=4, spec_overrides={"overlap": 2})
    first = [_answer(url, a) for a in demo.annotator_ids]
    # the first two annotators complete item A (nearly-done items are preferred), the next two item B
    assert first[0] == first[1] and first[2] == first[3] and first[0] != first[2]
    assert [_answer(url, a) for a in demo.annotator_ids] == [None] * 4  # both items are complete
    with session_factory(url)() as s:
        per_item: dict[str, int] = {}
        for (item_id,) in s.execute(select(Assignment.item_id).where(Assignment.status == "submitted")):
            per_item[item_id] = per_item.get(item_id, 0) + 1
    assert sorted(per_item.values()) == [2, 2]  # never more than k


def test_quota_reserves_a_slot_for_the_small_group() -> None:
    quotas = {"south": 1}
    c = SlotCount(submitted=1, by_group={"north": 1})
    assert not may_take(c, 2, "north", quotas)          # last slot is south's
    assert may_take(c, 2, "south", quotas)
    assert may_take(SlotCount(), 2, "north", quotas)
    assert not may_take(SlotCount(submitted=2), 2, "south", quotas)


def test_quota_in_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=3,
                              spec_overrides={"overlap": 2, "quotas": {"attribute": "region",
                                                                       "per_item": {"south": 1}}},
                              attributes=[{"region": "north"}, {"region": "north"}, {"region": "south"}])
    n1, n2, s1 = demo.annotator_ids
    assert _answer(url, n1) is not None
    assert _answer(url, n2) is None          # the second slot waits for a southerner
    assert _answer(url, s1) is not None


def test_expired_lease_frees_slot_and_skip_releases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=2, spec_overrides={"overlap": 1})
    a1, a2 = demo.annotator_ids
    with session_factory(url)() as s:
        p = get_project(s, "demo")
        spec = project_spec(p)
        asg = next_assignment(s, p, spec, s.get(Annotator, a1))
        assert asg is not None
        assert next_assignment(s, p, spec, s.get(Annotator, a2)) is None   # leased to a1
        asg.shown_at = asg.shown_at - timedelta(minutes=spec.lease_minutes + 1)
        s.commit()
        asg2 = next_assignment(s, p, spec, s.get(Annotator, a2))
        assert asg2 is not None and asg2.item_id == asg.item_id            # lease expired
        assert skip_assignment(s, s.get(Annotator, a2), asg2.item_id)
        assert next_assignment(s, p, spec, s.get(Annotator, a2)) is None   # skipped: not shown again
