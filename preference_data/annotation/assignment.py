"""Who sees which item next: overlap k per item, per-group quotas, leases for opened items.

An item's k slots are counted as submitted judgments plus open leases (an item shown to an
annotator and not yet answered, younger than `lease_minutes`). An item leaves every queue once it
has k submissions. A quota reserves slots per item for a group (an attribute value), so an
annotator from a large group cannot take the last slots a small group still needs.

Control items (gold / attention checks) sit outside the k slots: every annotator gets each one
once, first as a qualification step when the spec asks for one, then one per `control_every`
regular items. A per-annotator cap stops the regular items, never the control ones in progress.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from preference_data.annotation.models import Annotator, Assignment, Item, Judgment, Project, utcnow
from preference_data.annotation.spec import ProjectSpec
from preference_data.annotation.store import as_utc

# Serialises "pick an item and lease it" within one server process, so two annotators asking at
# the same moment never both take the last slot. (Across processes the unique constraints still
# prevent duplicate work; at worst an item gets one judgment more than k.)
ASSIGN_LOCK = threading.Lock()


@dataclass
class SlotCount:
    submitted: int = 0
    leased: int = 0
    by_group: dict[str | None, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def taken(self) -> int:
        return self.submitted + self.leased


def group_of(annotator: Annotator, spec: ProjectSpec) -> str | None:
    if not spec.quotas.attribute:
        return None
    value = (annotator.attributes or {}).get(spec.quotas.attribute)
    return None if value is None else str(value)


def may_take(count: SlotCount, k: int, group: str | None, quotas: dict[str, int]) -> bool:
    """True if one more judgment from `group` still leaves room for every other group's quota."""
    slots_left = k - count.taken
    if slots_left < 1:
        return False
    reserved = sum(max(0, need - count.by_group.get(g, 0)) for g, need in quotas.items() if g != group)
    return slots_left - 1 >= reserved


def slot_counts(s: Session, project: Project, spec: ProjectSpec, now: datetime) -> dict[str, SlotCount]:
    lease_start = now - timedelta(minutes=spec.lease_minutes)
    counts: dict[str, SlotCount] = defaultdict(SlotCount)
    rows = s.execute(select(Assignment.item_id, Assignment.status, Assignment.shown_at,
                            Annotator.attributes)
                     .join(Annotator, Annotator.id == Assignment.annotator_id)
                     .join(Item, Item.id == Assignment.item_id)
                     .where(Annotator.project_id == project.id, Assignment.status != "skipped",
                            Item.kind == "regular"))
    attr = spec.quotas.attribute
    for item_id, status, shown_at, attrs in rows:
        c = counts[item_id]
        if status == "submitted":
            c.submitted += 1
        elif as_utc(shown_at) >= lease_start:
            c.leased += 1
        else:
            continue  # an expired lease frees its slot
        if attr:
            c.by_group[(attrs or {}).get(attr)] += 1
    return counts


def current_assignment(s: Session, annotator: Annotator) -> Assignment | None:
    """The item this annotator opened and has not answered yet (resume after a reload)."""
    return s.scalar(select(Assignment).where(Assignment.annotator_id == annotator.id,
                                             Assignment.status == "assigned")
                    .order_by(Assignment.shown_at).limit(1))


@dataclass
class AnnotatorState:
    """Where one annotator stands: counts, qualification and cap."""

    regular_done: int = 0
    control_done: int = 0                # control items submitted
    control_correct: int = 0             # ... answered as expected on every gold dimension
    qualification_done: int = 0          # control items counted towards qualification
    qualification_correct: int = 0
    qualified: bool | None = None        # None: not decided yet (or no qualification step)
    cap: int | None = None
    pending_controls: list[str] = field(default_factory=list)

    @property
    def cap_reached(self) -> bool:
        return self.cap is not None and self.regular_done >= self.cap


def annotator_state(s: Session, project: Project, spec: ProjectSpec, annotator: Annotator) -> AnnotatorState:
    st = AnnotatorState(cap=annotator.max_items if annotator.max_items is not None
                        else spec.max_items_per_annotator)
    controls = s.scalars(select(Item.id).where(Item.project_id == project.id, Item.kind != "regular")
                         .order_by(Item.created_at, Item.id)).all()
    q = spec.quality.qualification_items
    if not controls and st.cap is None:  # the common case needs no per-annotator counts
        st.qualified = True if q > 0 else None
        return st
    mine = s.execute(select(Assignment.item_id, Assignment.status, Assignment.finished_at, Item.kind)
                     .join(Item, Item.id == Assignment.item_id)
                     .where(Assignment.annotator_id == annotator.id)).all()
    touched = {i for i, *_ in mine}
    st.regular_done = sum(1 for _, status, _, kind in mine if status == "submitted" and kind == "regular")
    # correctness per control submission: every gold dimension answered as expected
    verdicts: dict[str, bool] = {}
    for item_id, ok in s.execute(select(Judgment.item_id, Judgment.correct)
                                 .where(Judgment.annotator_id == annotator.id, Judgment.correct.is_not(None))):
        verdicts[item_id] = verdicts.get(item_id, True) and bool(ok)
    done_controls = sorted(((fin, i) for i, status, fin, kind in mine
                            if status == "submitted" and kind != "regular"), key=lambda x: (str(x[0]), x[1]))
    st.control_done = len(done_controls)
    st.control_correct = sum(bool(verdicts.get(i)) for _, i in done_controls)
    first = done_controls[:q]
    st.qualification_done = len(first)
    st.qualification_correct = sum(bool(verdicts.get(i)) for _, i in first)
    st.pending_controls = [i for i in controls if i not in touched]
    if q > 0 and (st.qualification_done >= q or not st.pending_controls):
        st.qualified = (st.qualification_done == 0  # no control items imported: nothing to pass
                        or st.qualification_correct / st.qualification_done
                        >= spec.quality.qualification_min_score - 1e-12)
    return st


def _lease(s: Session, annotator: Annotator, item_id: str, now: datetime, rng: random.Random) -> Assignment | None:
    item = s.get(Item, item_id)
    assert item is not None
    order = [r.id for r in item.responses]
    rng.shuffle(order)
    asg = Assignment(item_id=item.id, annotator_id=annotator.id, status="assigned",
                     display_order=order, shown_at=now)
    s.add(asg)
    try:
        s.commit()
    except IntegrityError:  # same annotator in two tabs raced us; use the row that won
        s.rollback()
        return current_assignment(s, annotator)
    return asg


def next_assignment(s: Session, project: Project, spec: ProjectSpec, annotator: Annotator,
                    rng: random.Random | None = None) -> Assignment | None:
    """Resume the open assignment or lease a new item; None when nothing is left for this person
    (queue empty, cap reached, or qualification failed: see `annotator_state`)."""
    rng = rng or random.Random()
    with ASSIGN_LOCK:
        open_one = current_assignment(s, annotator)
        if open_one is not None:
            return open_one
        now = utcnow()
        st = annotator_state(s, project, spec, annotator)
        q = spec.quality.qualification_items
        if q > 0 and st.qualified is None:  # the qualification step: control items first
            return _lease(s, annotator, st.pending_controls[0], now, rng)
        if st.qualified is False or st.cap_reached:
            return None
        if st.pending_controls and st.control_done * spec.quality.control_every <= st.regular_done:
            return _lease(s, annotator, st.pending_controls[0], now, rng)
        counts = slot_counts(s, project, spec, now)
        done = set(s.scalars(select(Assignment.item_id)
                             .where(Assignment.annotator_id == annotator.id)))
        group = group_of(annotator, spec)
        quotas = spec.quotas.per_item
        best: tuple[tuple[int, int], str] | None = None
        for item_id, in s.execute(select(Item.id).where(Item.project_id == project.id, Item.kind == "regular")
                                  .order_by(Item.created_at, Item.id)):
            if item_id in done:
                continue
            c = counts.get(item_id, SlotCount())
            if not may_take(c, project.overlap, group, quotas):
                continue
            # Prefer items where this person's group is still under quota, then nearly-done items.
            under_quota = int(group in quotas and c.by_group.get(group, 0) < quotas[group])
            key = (under_quota, c.taken)
            if best is None or key > best[0]:
                best = (key, item_id)
        if best is None:
            return None
        return _lease(s, annotator, best[1], now, rng)


def skip_assignment(s: Session, annotator: Annotator, item_id: str) -> bool:
    asg = s.scalar(select(Assignment).where(Assignment.annotator_id == annotator.id,
                                            Assignment.item_id == item_id,
                                            Assignment.status == "assigned"))
    if asg is None:
        return False
    asg.status = "skipped"
    asg.finished_at = utcnow()
    s.commit()
    return True
