"""Validate one submission (all dimensions of one item) and record it in one transaction.

Every refusal raises `SubmissionError` with an HTTP status and a message fit to show the
annotator; nothing is written unless the whole submission is valid. The status flip of the
assignment from `assigned` to `submitted` is a conditional UPDATE, so two racing copies of the
same submission cannot both land (the unique constraint on judgments is the second guard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from preference_data.annotation.models import (Annotator, Assignment, Dimension, Item, Judgment,
                                               Project, utcnow)
from preference_data.annotation.store import as_utc

MAX_TEXT = 10_000


class SubmissionError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def answers_from_form(form: Mapping[str, str], dims: list[Dimension],
                      response_ids: list[str]) -> dict[str, Any]:
    """HTML form fields -> {dimension: value} in the export's value shapes."""
    answers: dict[str, Any] = {}
    for d in dims:
        if d.scale == "pairwise":
            v = form.get(f"pairwise.{d.name}")
            if v:
                answers[d.name] = v
        elif d.scale == "ranking":
            ranks = {rid: form.get(f"rank.{d.name}.{rid}") for rid in response_ids}
            if any(ranks.values()):
                try:
                    parsed = {rid: int(v) for rid, v in ranks.items() if v}
                except ValueError:
                    raise SubmissionError(422, f"{d.name}: ranks must be whole numbers") from None
                if len(parsed) != len(response_ids) or sorted(parsed.values()) != list(
                        range(1, len(response_ids) + 1)):
                    raise SubmissionError(422, f"{d.name}: the ranking is not a permutation — give "
                                               f"each response a different rank from 1 to "
                                               f"{len(response_ids)}")
                answers[d.name] = sorted(parsed, key=parsed.__getitem__)
        elif d.scale == "likert":
            vals = {rid: form.get(f"likert.{d.name}.{rid}") for rid in response_ids}
            if any(vals.values()):
                try:
                    answers[d.name] = {rid: int(v) if v else None for rid, v in vals.items()}
                except ValueError:
                    raise SubmissionError(422, f"{d.name}: ratings must be whole numbers") from None
        else:
            v = form.get(f"text.{d.name}", "")
            if v.strip():
                answers[d.name] = v
    return answers


def validate_value(d: Dimension, response_ids: list[str], value: Any) -> Any:
    """Check one answer against its dimension's scale; returns the value to store."""
    rids = set(response_ids)
    if d.scale == "pairwise":
        if not isinstance(value, str) or value not in rids:
            raise SubmissionError(422, f"{d.name}: choose one of this item's responses")
        return value
    if d.scale == "ranking":
        if (not isinstance(value, list) or len(value) != len(rids) or set(value) != rids
                or not all(isinstance(v, str) for v in value)):
            raise SubmissionError(422, f"{d.name}: the ranking is not a permutation of this "
                                       f"item's {len(rids)} responses")
        return list(value)
    if d.scale == "likert":
        lo, hi = d.likert_min, d.likert_max
        if not isinstance(value, dict) or set(value) != rids:
            raise SubmissionError(422, f"{d.name}: rate every response ({lo}-{hi})")
        for rid, v in value.items():
            if v is None:
                raise SubmissionError(422, f"{d.name}: rate every response ({lo}-{hi})")
            if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi):  # type: ignore[operator]
                raise SubmissionError(422, f"{d.name}: rating {v!r} is out of range {lo}-{hi}")
        return {rid: int(value[rid]) for rid in response_ids}
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise SubmissionError(422, f"{d.name}: answer must be text of at most {MAX_TEXT} characters")
    return value


def matches_gold(expected: Any, value: Any) -> bool:
    """Pairwise: the same response. Ranking: the same best response (the rest is taste)."""
    if isinstance(expected, list):
        return isinstance(value, list) and bool(value) and value[0] == expected[0]
    return value == expected


def record_submission(s: Session, project: Project, annotator: Annotator, item_id: str,
                      answers: dict[str, Any], comment: str = "",
                      client_time_s: float | None = None) -> list[Judgment]:
    """Validate and store one item's answers atomically (one commit = one submission)."""
    item = s.get(Item, item_id) if isinstance(item_id, str) else None
    asg = None
    if item is not None and item.project_id == project.id:
        asg = s.scalar(select(Assignment).where(Assignment.annotator_id == annotator.id,
                                                Assignment.item_id == item_id))
    if asg is None:
        raise SubmissionError(403, "this item is not assigned to you; nothing was saved")
    if asg.status == "submitted":
        raise SubmissionError(409, "you already submitted this item; duplicate refused")
    if asg.status == "skipped":
        raise SubmissionError(409, "you skipped this item; it can no longer be answered")
    if not isinstance(answers, dict):
        raise SubmissionError(422, "answers must map dimension names to values")
    dims = {d.name: d for d in project.dimensions}
    unknown = set(answers) - set(dims)
    if unknown:
        raise SubmissionError(422, f"unknown dimension(s) {sorted(unknown)}; expected {sorted(dims)}")
    response_ids = [r.id for r in item.responses]  # type: ignore[union-attr]
    values: dict[int, Any] = {}
    for name, d in dims.items():
        if name not in answers or answers[name] in (None, "", [], {}):
            if d.required:
                raise SubmissionError(422, f"{name}: an answer is required")
            continue
        values[d.id] = validate_value(d, response_ids, answers[name])
    if not isinstance(comment, str) or len(comment) > MAX_TEXT:
        raise SubmissionError(422, f"comment must be text of at most {MAX_TEXT} characters")

    now = utcnow()
    elapsed = max(0.0, (now - as_utc(asg.shown_at)).total_seconds())  # type: ignore[operator]
    spent = elapsed
    if isinstance(client_time_s, (int, float)) and 0 <= client_time_s <= elapsed + 2:
        spent = float(client_time_s)  # the page's own timer excludes time the tab was hidden
    try:
        flipped = s.execute(update(Assignment)
                            .where(Assignment.id == asg.id, Assignment.status == "assigned")
                            .values(status="submitted", finished_at=now)).rowcount
        if flipped != 1:
            raise SubmissionError(409, "you already submitted this item; duplicate refused")
        gold = item.gold or {}  # type: ignore[union-attr]
        names = {d.id: d.name for d in dims.values()}
        snapshot = dict(annotator.attributes or {})  # frozen: later edits never relabel this judgment
        judgments = [Judgment(assignment_id=asg.id, item_id=item_id, annotator_id=annotator.id,
                              dimension_id=dim_id, value=v, comment=comment, created_at=now,
                              time_spent_s=round(spent, 3), annotator_attributes=snapshot,
                              correct=matches_gold(gold[names[dim_id]], v) if names[dim_id] in gold else None)
                     for dim_id, v in values.items()]
        s.add_all(judgments)
        s.commit()
    except IntegrityError:
        s.rollback()
        raise SubmissionError(409, "you already submitted this item; duplicate refused") from None
    except SubmissionError:
        s.rollback()
        raise
    return judgments
