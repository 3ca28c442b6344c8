"""The researcher's views of a project: progress, groups, quality, agreement, disputed items."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from preference_data.annotation import store
from preference_data.annotation.agreement import agreement_by_dimension
from preference_data.annotation.assignment import annotator_state
from preference_data.annotation.models import Annotator, Assignment, Project


def disputed_items(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """(item, dimension) pairs whose annotators named different best responses, most split first."""
    best: dict[tuple[str, str], Counter] = defaultdict(Counter)
    adjudicated: dict[tuple[str, str], dict[str, Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = (r["item_id"], r["dimension"])
        info[r["item_id"]] = r
        if r.get("kind") == "adjudication":
            adjudicated[key] = r
            continue
        if r.get("item_kind", "regular") != "regular":
            continue
        v = r["value"]
        if r["scale"] == "pairwise":
            top = v
        elif r["scale"] == "ranking":
            top = v[0] if v else None
        elif r["scale"] == "likert":
            hi = max(v.values())
            tops = [k for k, x in v.items() if x == hi]
            top = tops[0] if len(tops) == 1 else None
        else:
            top = None
        if top is not None:
            best[key][top] += 1
    out = []
    for (item_id, dim), votes in best.items():
        if len(votes) < 2:
            continue
        row = info[item_id]
        adj = adjudicated.get((item_id, dim))
        out.append({"item_id": item_id, "dimension": dim, "prompt": row["prompt"],
                    "top_share": max(votes.values()) / sum(votes.values()), "votes": dict(votes),
                    "responses": row["responses"], "adjudicated": adj["value"] if adj else None,
                    "note": adj["comment"] if adj else ""})
    out.sort(key=lambda d: (d["top_share"], d["item_id"], d["dimension"]))
    return out


def admin_summary(s: Session, db_url: str, project: Project) -> dict[str, Any]:
    """Progress per annotator and per group, quality, and agreement per dimension."""
    spec = store.project_spec(project)
    status = store.project_status(db_url, project.name)
    annotators = s.scalars(select(Annotator).where(Annotator.project_id == project.id)
                           .order_by(Annotator.created_at)).all()
    rows = store.export_judgments(db_url, project.name)
    quality = store.annotator_quality(s, project)
    asgs = s.execute(select(Assignment.annotator_id, Assignment.status, Assignment.item_id)
                     .join(Annotator, Annotator.id == Assignment.annotator_id)
                     .where(Annotator.project_id == project.id)).all()
    per_ann: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for aid, st, _ in asgs:
        per_ann[aid][st] += 1
    times: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r.get("kind") != "adjudication":
            times[r["annotator_id"]][r["item_id"]] = r["time_spent_s"]
    people = []
    for a in annotators:
        qualified = (annotator_state(s, project, spec, a).qualified
                     if spec.quality.qualification_items else None)
        people.append({
            "id": a.id, "label": a.label, "attributes": a.attributes or {}, "consent": a.consent,
            "withdrawn": a.withdrawn_at is not None, "external_id": a.external_id,
            "submitted": per_ann[a.id]["submitted"], "skipped": per_ann[a.id]["skipped"],
            "open": per_ann[a.id]["assigned"],
            "median_time_s": round(statistics.median(times[a.id].values()), 1) if times[a.id] else None,
            "quality": quality.get(a.id, {"correct": 0, "total": 0, "score": 0.5}),
            "qualified": "–" if qualified is None else ("yes" if qualified else "no")})
    groups = []
    total_sub = sum(p["submitted"] for p in people) or 1
    for attr in spec.attributes:
        values = list(attr.values) + sorted({str(p["attributes"].get(attr.name)) for p in people
                                             if p["attributes"].get(attr.name) not in attr.values
                                             and p["attributes"].get(attr.name) is not None})
        for v in values + [None]:
            members = [p for p in people if p["attributes"].get(attr.name) == v]
            if v is None and not members:
                continue
            sub = sum(p["submitted"] for p in members)
            groups.append({"attribute": attr.name, "value": v if v is not None else "(not given)",
                           "annotators": len(members), "submitted": sub,
                           "share": round(sub / total_sub, 3),
                           "target_share": spec.population_shares.get(attr.name, {}).get(v)})
    scored = [r for r in rows if r.get("kind") != "adjudication" and r.get("item_kind", "regular") == "regular"]
    agreement = agreement_by_dimension(scored)
    ordered = {d.name: agreement[d.name] for d in project.dimensions if d.name in agreement}
    return {"status": status, "annotators": people, "groups": groups, "agreement": ordered,
            "disputed": len(disputed_items(rows))}
