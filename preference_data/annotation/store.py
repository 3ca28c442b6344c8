"""Projects, annotators, item import and judgment export (the data side; no web code here).

`export_judgments(db_url, project)` returns the rows of the agreed export format (see
INTERFACES.md): one dict per judgment with the item, every response and its provenance, the
annotator's attributes and the order the responses were shown in.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from preference_data.annotation.db import session_factory
from preference_data.annotation.models import (Annotator, Assignment, Dimension, Item, Judgment,
                                               Project, Response, utcnow)
from preference_data.annotation.spec import ProjectSpec


class StoreError(ValueError):
    """Bad request against the store (unknown project, malformed import row...)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def as_utc(ts: datetime | None) -> datetime | None:
    """SQLite drops tzinfo; every stored timestamp is UTC."""
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------- projects & annotators
def create_project(db_url: str, spec: ProjectSpec) -> str:
    """Create the project; returns the admin token (shown once, only its hash is stored)."""
    token = new_token()
    with session_factory(db_url)() as s, s.begin():
        if s.scalar(select(Project).where(Project.name == spec.name)) is not None:
            raise StoreError(f"project {spec.name!r} already exists in this database")
        project = Project(name=spec.name, title=spec.title, guidelines=spec.guidelines,
                          overlap=spec.overlap, spec=spec.to_dict(), admin_token_hash=hash_token(token))
        s.add(project)
        s.flush()
        for i, d in enumerate(spec.dimensions):
            s.add(Dimension(project_id=project.id, name=d.name, description=d.description,
                            scale=d.scale, likert_min=d.min if d.scale == "likert" else None,
                            likert_max=d.max if d.scale == "likert" else None,
                            required=d.required, position=i))
    return token


def get_project(s: Session, name: str) -> Project:
    project = s.scalar(select(Project).options(selectinload(Project.dimensions))
                       .where(Project.name == name))
    if project is None:
        raise StoreError(f"no project {name!r} in this database; create it with "
                         "`prefdisco annotate create --spec FILE`")
    return project


def project_spec(project: Project) -> ProjectSpec:
    from preference_data.annotation.spec import spec_from_dict
    return spec_from_dict(project.spec)


def rotate_admin_token(db_url: str, project: str) -> str:
    token = new_token()
    with session_factory(db_url)() as s, s.begin():
        get_project(s, project).admin_token_hash = hash_token(token)
    return token


@dataclass
class NewAnnotator:
    annotator_id: str
    token: str  # plaintext, only available at creation


def add_annotators(db_url: str, project: str, count: int, attributes: dict[str, str] | None = None,
                   label: str = "", ttl_days: float | None = None) -> list[NewAnnotator]:
    attributes = dict(attributes or {})
    out: list[NewAnnotator] = []
    with session_factory(db_url)() as s, s.begin():
        p = get_project(s, project)
        spec = project_spec(p)
        allowed = {a.name: a.values for a in spec.attributes}
        for k, v in attributes.items():
            if k not in allowed:
                raise StoreError(f"attribute {k!r} is not declared in project {project!r}; "
                                 f"declared: {sorted(allowed)}")
            if allowed[k] and v not in allowed[k]:
                raise StoreError(f"attribute {k}={v!r} not allowed; choose one of {allowed[k]}")
        ttl = ttl_days if ttl_days is not None else spec.token_ttl_days
        expires = utcnow() + timedelta(days=ttl) if ttl is not None else None
        for _ in range(count):
            token = new_token()
            a = Annotator(project_id=p.id, token_hash=hash_token(token), attributes=attributes,
                          label=label, expires_at=expires)
            s.add(a)
            s.flush()
            out.append(NewAnnotator(a.id, token))
    return out


def revoke_annotators(db_url: str, project: str, annotator_ids: list[str]) -> int:
    with session_factory(db_url)() as s, s.begin():
        p = get_project(s, project)
        found = s.scalars(select(Annotator).where(Annotator.project_id == p.id,
                                                  Annotator.id.in_(annotator_ids))).all()
        missing = set(annotator_ids) - {a.id for a in found}
        if missing:
            raise StoreError(f"no annotator(s) {sorted(missing)} in project {project!r}")
        for a in found:
            a.revoked = True
        return len(found)


def annotator_for_token(s: Session, project: Project, token: str) -> tuple[Annotator | None, str]:
    """(annotator, "") when the token is valid, else (None, "unknown"|"expired"|"revoked")."""
    a = s.scalar(select(Annotator).where(Annotator.token_hash == hash_token(token),
                                         Annotator.project_id == project.id))
    if a is None:
        return None, "unknown"
    if a.revoked:
        return None, "revoked"
    if a.expires_at is not None and as_utc(a.expires_at) <= utcnow():
        return None, "expired"
    return a, ""


# ---------------------------------------------------------------- import
def _normalise_response(r: Any, where: str) -> dict[str, Any]:
    if isinstance(r, str):
        return {"text": r, "model": "", "settings": {}}
    if not isinstance(r, dict) or not isinstance(r.get("text"), str):
        raise StoreError(f"{where}: each response must be a string or {{text, model, settings}}")
    settings = r.get("settings") or {}
    if not isinstance(settings, dict):
        raise StoreError(f"{where}: response 'settings' must be a mapping")
    return {"text": r["text"], "model": str(r.get("model") or ""), "settings": settings}


def rows_to_items(rows: Iterable[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Accept three shapes: {prompt, responses:[...]}; TRL pairs {prompt, chosen, rejected};
    and per-sample rows {prompt, text|completion, model, settings} grouped by prompt."""
    items: list[dict[str, Any]] = []
    grouped: dict[str, list[dict[str, Any]]] = {}
    for n, row in enumerate(rows, 1):
        where = f"{source} line {n}"
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise StoreError(f"{where}: each line needs a string 'prompt'")
        if "responses" in row:
            resp = row["responses"]
            if not isinstance(resp, list):
                raise StoreError(f"{where}: 'responses' must be a list")
            items.append({"prompt": row["prompt"],
                          "responses": [_normalise_response(r, where) for r in resp],
                          "meta": {k: v for k, v in row.items() if k not in ("prompt", "responses")}})
        elif "chosen" in row and "rejected" in row:
            items.append({"prompt": row["prompt"],
                          "responses": [_normalise_response(row["chosen"], where),
                                        _normalise_response(row["rejected"], where)], "meta": {}})
        elif "text" in row or "completion" in row:
            text = row.get("text", row.get("completion"))
            grouped.setdefault(row["prompt"], []).append(
                _normalise_response({"text": text, "model": row.get("model"),
                                     "settings": row.get("settings")}, where))
        else:
            raise StoreError(f"{where}: expected 'responses', 'chosen'/'rejected' or 'text'")
    items += [{"prompt": p, "responses": r, "meta": {}} for p, r in grouped.items()]
    for it in items:
        if len(it["responses"]) < 2:
            raise StoreError(f"{source}: prompt {it['prompt'][:40]!r} has fewer than 2 responses")
    return items


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise StoreError(f"{path} line {n}: not JSON ({exc.msg})") from None
    return rows


def sample_files(path: Path) -> list[Path]:
    """A JSONL file, or a campaign directory holding samples*.jsonl files (searched recursively)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.rglob("samples*.jsonl"))
        if not files:
            raise StoreError(f"no samples*.jsonl under {path}; pass a JSONL file of "
                             "{prompt, responses:[{text, model, settings}]}")
        return files
    raise StoreError(f"{path} not found; pass a JSONL file or a campaign directory")


def import_items(db_url: str, project: str, path: str | Path) -> tuple[int, int]:
    """Import items; returns (added, skipped_as_duplicates). All-or-nothing per call."""
    files = sample_files(Path(path))
    items = []
    for f in files:
        for it in rows_to_items(_read_jsonl(f), str(f)):
            it["meta"]["file"] = str(f)
            items.append(it)
    added = skipped = 0
    with session_factory(db_url)() as s, s.begin():
        p = get_project(s, project)
        seen = set(s.scalars(select(Item.content_hash).where(Item.project_id == p.id)))
        for it in items:
            h = hashlib.sha256(json.dumps([it["prompt"], it["responses"]], sort_keys=True)
                               .encode()).hexdigest()
            if h in seen:
                skipped += 1
                continue
            seen.add(h)
            item = Item(project_id=p.id, prompt=it["prompt"], content_hash=h, source=it["meta"])
            s.add(item)
            s.flush()
            for i, r in enumerate(it["responses"]):
                s.add(Response(item_id=item.id, position=i, text=r["text"], model=r["model"],
                               settings=r["settings"]))
            added += 1
    return added, skipped


# ---------------------------------------------------------------- export
def export_judgments(db_url: str, project: str) -> list[dict[str, Any]]:
    """Every judgment of the project as an INTERFACES.md export row, oldest first."""
    with session_factory(db_url)() as s:
        p = get_project(s, project)
        dims = {d.id: d for d in p.dimensions}
        q = (select(Judgment, Assignment, Annotator, Item)
             .join(Assignment, Judgment.assignment_id == Assignment.id)
             .join(Annotator, Judgment.annotator_id == Annotator.id)
             .join(Item, Judgment.item_id == Item.id)
             .options(selectinload(Item.responses))
             .where(Item.project_id == p.id)
             .order_by(Judgment.created_at, Judgment.id))
        rows = []
        for j, asg, ann, item in s.execute(q):
            d = dims[j.dimension_id]
            rows.append({
                "judgment_id": j.id, "project": p.name, "item_id": item.id, "prompt": item.prompt,
                "responses": [{"response_id": r.id, "text": r.text, "model": r.model,
                               "settings": r.settings} for r in item.responses],
                "dimension": d.name, "scale": d.scale, "value": j.value,
                "annotator_id": ann.id, "annotator_attributes": dict(ann.attributes or {}),
                "display_order": list(asg.display_order), "comment": j.comment,
                "created_at": as_utc(j.created_at).isoformat(), "time_spent_s": j.time_spent_s,
                "item_source": item.source,
            })
        return rows


_PARQUET_JSON_COLUMNS = ("responses", "value", "annotator_attributes", "item_source")


def write_export(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """JSONL, or parquet where nested/mixed-type columns are JSON-encoded strings."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        flat = [{k: json.dumps(v) if k in _PARQUET_JSON_COLUMNS else v for k, v in r.items()}
                for r in rows]
        pq.write_table(pa.Table.from_pylist(flat), tmp)
    elif out.suffix in (".jsonl", ".json"):
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        raise StoreError(f"unknown export format {out.suffix!r}; use .jsonl or .parquet")
    tmp.replace(out)
    return out


def read_judgments(path: str | Path) -> list[dict[str, Any]]:
    """Read an export (JSONL or parquet) back into the row dicts of `export_judgments`."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        rows = pq.read_table(path).to_pylist()
        return [{k: json.loads(v) if k in _PARQUET_JSON_COLUMNS and isinstance(v, str) else v
                 for k, v in r.items()} for r in rows]
    return _read_jsonl(path)


# ---------------------------------------------------------------- status
def project_status(db_url: str, project: str) -> dict[str, Any]:
    with session_factory(db_url)() as s:
        p = get_project(s, project)
        n_items = s.scalar(select(func.count()).select_from(Item).where(Item.project_id == p.id)) or 0
        per_item = dict(s.execute(
            select(Assignment.item_id, func.count()).join(Item, Item.id == Assignment.item_id)
            .where(Item.project_id == p.id, Assignment.status == "submitted")
            .group_by(Assignment.item_id)).all())
        complete = sum(1 for c in per_item.values() if c >= p.overlap)
        n_ann = s.scalar(select(func.count()).select_from(Annotator)
                         .where(Annotator.project_id == p.id)) or 0
        n_judg = s.scalar(select(func.count()).select_from(Judgment)
                          .join(Item, Item.id == Judgment.item_id).where(Item.project_id == p.id)) or 0
        return {"project": p.name, "items": n_items, "items_complete": complete,
                "submissions": sum(per_item.values()), "judgments": n_judg, "annotators": n_ann,
                "overlap": p.overlap, "dimensions": [d.name for d in p.dimensions]}
