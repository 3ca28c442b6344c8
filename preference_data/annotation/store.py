"""Projects, annotators, item import and judgment export (the data side; no web code here).

`export_judgments(db_url, project)` returns the export rows (the format `prefdisco aggregate`
reads), one dict per judgment:

    judgment_id, project, item_id, prompt (text), messages (multi-turn prompt or null),
    responses [{response_id, text, model, settings}], dimension, scale, value
    (pairwise: response id; ranking: response ids best first; likert: {response id: rating};
    text: str), annotator_id, annotator_attributes (as they were when judged), display_order,
    comment, created_at, time_spent_s, item_source, item_kind (regular | gold | attention),
    gold (the expected value on control items, else null), correct (control items: bool),
    annotator_quality {correct, total, score}, kind ("judgment", or "adjudication" for a
    researcher's final answer on a disputed item: value = the preferred response id).
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
from preference_data.annotation.models import (Adjudication, Annotator, Assignment, Dimension, Item,
                                               Judgment, Project, Response, utcnow)
from preference_data.annotation.spec import ITEM_KINDS, ProjectSpec


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


def check_attributes(spec: ProjectSpec, attributes: dict[str, str], project: str) -> None:
    allowed = {a.name: a.values for a in spec.attributes}
    for k, v in attributes.items():
        if k not in allowed:
            raise StoreError(f"attribute {k!r} is not declared in project {project!r}; "
                             f"declared: {sorted(allowed)}")
        if allowed[k] and v not in allowed[k]:
            raise StoreError(f"attribute {k}={v!r} not allowed; choose one of {allowed[k]}")


def add_annotators(db_url: str, project: str, count: int, attributes: dict[str, str] | None = None,
                   label: str = "", ttl_days: float | None = None,
                   max_items: int | None = None) -> list[NewAnnotator]:
    """New annotators whose `attributes` are researcher-preset (annotators cannot change them)."""
    attributes = dict(attributes or {})
    if count < 1:
        raise StoreError("--count must be >= 1")
    if ttl_days is not None and not ttl_days > 0:
        raise StoreError(f"--ttl-days must be > 0 (got {ttl_days:g}); a link must not be born expired")
    if max_items is not None and max_items < 1:
        raise StoreError(f"--max-items must be >= 1 (got {max_items})")
    out: list[NewAnnotator] = []
    with session_factory(db_url)() as s, s.begin():
        p = get_project(s, project)
        spec = project_spec(p)
        check_attributes(spec, attributes, project)
        ttl = ttl_days if ttl_days is not None else spec.token_ttl_days
        expires = utcnow() + timedelta(days=ttl) if ttl is not None else None
        for _ in range(count):
            token = new_token()
            a = Annotator(project_id=p.id, token_hash=hash_token(token), attributes=attributes,
                          preset_keys=sorted(attributes), label=label, expires_at=expires,
                          max_items=max_items)
            s.add(a)
            s.flush()
            out.append(NewAnnotator(a.id, token))
    return out


def create_join_link(db_url: str, project: str) -> str:
    """A shared join token for crowd platforms (a new one replaces the old)."""
    token = new_token()
    with session_factory(db_url)() as s, s.begin():
        get_project(s, project).join_token_hash = hash_token(token)
    return token


def join_annotator(s: Session, join_token: str, external_id: str) -> tuple[Project, str] | None:
    """Find or create the annotator for a crowd participant; returns (project, personal token).

    The personal token is re-issued on every join (only hashes are stored), so a participant who
    opens the study link again continues as the same annotator.
    """
    project = s.scalar(select(Project).where(Project.join_token_hash == hash_token(join_token)))
    if project is None:
        return None
    spec = project_spec(project)
    a = s.scalar(select(Annotator).where(Annotator.project_id == project.id,
                                         Annotator.external_id == external_id))
    token = new_token()
    if a is None:
        ttl = spec.token_ttl_days
        a = Annotator(project_id=project.id, token_hash=hash_token(token), attributes={},
                      preset_keys=[], label="crowd join", external_id=external_id,
                      expires_at=utcnow() + timedelta(days=ttl) if ttl is not None else None)
        s.add(a)
    elif a.revoked or a.withdrawn_at is not None:
        return project, ""
    else:
        a.token_hash = hash_token(token)
    s.commit()
    return project, token


def set_base_url(db_url: str, base_url: str, project: str | None = None) -> None:
    """Record where `serve` answers, so links printed later use the real host and port."""
    with session_factory(db_url)() as s, s.begin():
        q = select(Project) if project is None else select(Project).where(Project.name == project)
        for p in s.scalars(q):
            p.base_url = base_url.rstrip("/")


def base_url_for(db_url: str, project: str) -> str | None:
    with session_factory(db_url)() as s:
        return get_project(s, project).base_url


def withdraw_annotator(s: Session, annotator: Annotator) -> int:
    """Consent withdrawn: delete every judgment and assignment of this annotator and their
    attributes; the link stops working. Returns the number of judgments deleted."""
    from sqlalchemy import delete
    n = s.scalar(select(func.count()).select_from(Judgment).where(Judgment.annotator_id == annotator.id)) or 0
    s.execute(delete(Judgment).where(Judgment.annotator_id == annotator.id))
    s.execute(delete(Assignment).where(Assignment.annotator_id == annotator.id))
    annotator.attributes, annotator.preset_keys = {}, []
    annotator.consent, annotator.consent_at = False, None
    annotator.withdrawn_at = utcnow()
    s.commit()
    return n


def _project_annotators(s: Session, project: str, annotator_ids: list[str]) -> list[Annotator]:
    """The named annotators of ``project``; one unknown id refuses the whole request."""
    p = get_project(s, project)
    found = list(s.scalars(select(Annotator).where(Annotator.project_id == p.id,
                                                   Annotator.id.in_(annotator_ids))).all())
    missing = set(annotator_ids) - {a.id for a in found}
    if missing:
        raise StoreError(f"no annotator(s) {sorted(missing)} in project {project!r}")
    return found


def withdraw_annotators(db_url: str, project: str, annotator_ids: list[str]) -> int:
    with session_factory(db_url)() as s:
        return sum(withdraw_annotator(s, a) for a in _project_annotators(s, project, annotator_ids))


def revoke_annotators(db_url: str, project: str, annotator_ids: list[str]) -> int:
    with session_factory(db_url)() as s, s.begin():
        found = _project_annotators(s, project, annotator_ids)
        for a in found:
            a.revoked = True
        return len(found)


def annotator_for_token(s: Session, project: Project | None, token: str) -> tuple[Annotator | None, str]:
    """(annotator, "") when the token is valid, else (None, "unknown"|"expired"|"revoked"|"withdrawn").

    With `project=None` the token may belong to any project in the database (tokens are unique)."""
    q = select(Annotator).where(Annotator.token_hash == hash_token(token))
    if project is not None:
        q = q.where(Annotator.project_id == project.id)
    a = s.scalar(q)
    if a is None:
        return None, "unknown"
    if a.withdrawn_at is not None:
        return None, "withdrawn"
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


def _messages(prompt: Any, where: str) -> list[dict[str, str]] | None:
    """A conversational prompt (TRL's list of {role, content}), or None for a plain text prompt."""
    if isinstance(prompt, str):
        return None
    if (not isinstance(prompt, list) or not prompt
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                       and isinstance(m.get("content"), str) for m in prompt)):
        raise StoreError(f"{where}: 'prompt' must be text or a list of {{role, content}} messages")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def readable_prompt(prompt: str, messages: list[dict[str, str]] | None) -> str:
    if not messages:
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def rows_to_items(rows: Iterable[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Accept three shapes: {prompt, responses:[...]}; TRL pairs {prompt, chosen, rejected};
    and per-sample rows {prompt, text|completion, model, settings} grouped by prompt.

    `prompt` is text or a conversation (list of {role, content}); the first shape may also carry
    `kind` (regular | gold | attention) and `gold` ({dimension: expected answer}, see import_items).
    """
    items: list[dict[str, Any]] = []
    grouped: dict[str, list[dict[str, Any]]] = {}
    for n, row in enumerate(rows, 1):
        where = f"{source} line {n}"
        if not isinstance(row, dict) or "prompt" not in row:
            raise StoreError(f"{where}: each line needs a 'prompt' (text or a list of messages)")
        messages = _messages(row["prompt"], where)
        prompt = readable_prompt(row["prompt"] if messages is None else "", messages)
        extra = {"messages": messages, "gold": row.get("gold"), "where": where,
                 "kind": row.get("kind", "gold" if row.get("gold") is not None else "regular")}
        if extra["kind"] not in ITEM_KINDS:
            raise StoreError(f"{where}: 'kind' must be one of {ITEM_KINDS}")
        if extra["kind"] != "regular" and not isinstance(extra["gold"], dict):
            raise StoreError(f"{where}: a {extra['kind']} item needs 'gold': {{dimension: expected answer}}")
        if "responses" in row:
            resp = row["responses"]
            if not isinstance(resp, list):
                raise StoreError(f"{where}: 'responses' must be a list")
            items.append({"prompt": prompt, **extra,
                          "responses": [_normalise_response(r, where) for r in resp],
                          "meta": {k: v for k, v in row.items()
                                   if k not in ("prompt", "responses", "kind", "gold")}})
        elif "chosen" in row and "rejected" in row:
            items.append({"prompt": prompt, **extra,
                          "responses": [_normalise_response(_completion(row["chosen"]), where),
                                        _normalise_response(_completion(row["rejected"]), where)], "meta": {}})
        elif "text" in row or "completion" in row:
            if messages is not None:
                raise StoreError(f"{where}: per-sample rows need a text prompt")
            text = row.get("text", row.get("completion"))
            grouped.setdefault(prompt, []).append(
                _normalise_response({"text": text, "model": row.get("model"),
                                     "settings": row.get("settings")}, where))
        else:
            raise StoreError(f"{where}: expected 'responses', 'chosen'/'rejected' or 'text'")
    items += [{"prompt": p, "messages": None, "kind": "regular", "gold": None, "where": source,
               "responses": r, "meta": {}} for p, r in grouped.items()]
    for it in items:
        if not it["prompt"].strip():
            raise StoreError(f"{it['where']}: the prompt is empty")
        if len(it["responses"]) < 2:
            raise StoreError(f"{it['where']}: prompt {it['prompt'][:40]!r} has fewer than 2 responses")
        texts = [r["text"].strip() for r in it["responses"]]
        if not all(texts):
            raise StoreError(f"{it['where']}: prompt {it['prompt'][:40]!r} has an empty response")
        if len(set(texts)) != len(texts):
            raise StoreError(f"{it['where']}: prompt {it['prompt'][:40]!r} has identical responses; "
                             "annotators could not tell them apart")
    return items


def _completion(value: Any) -> Any:
    """TRL conversational completions are [{role: assistant, content}]: keep the text."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and "content" in value[0]:
        return value[0]["content"]
    return value


def _gold_ids(gold: dict[str, Any], dims: dict[str, Dimension], rids: list[str], where: str) -> dict[str, Any]:
    """`gold` answers by response index -> by response id (pairwise: index; ranking: indices best first)."""
    out: dict[str, Any] = {}
    for name, answer in gold.items():
        d = dims.get(name)
        if d is None:
            raise StoreError(f"{where}: gold names unknown dimension {name!r}; declared: {sorted(dims)}")
        if d.scale == "pairwise" and isinstance(answer, int) and not isinstance(answer, bool) \
                and 0 <= answer < len(rids):
            out[name] = rids[answer]
        elif d.scale == "ranking" and isinstance(answer, list) and sorted(answer) == list(range(len(rids))):
            out[name] = [rids[i] for i in answer]
        else:
            raise StoreError(f"{where}: gold.{name} must be a response index (pairwise) or a list of "
                             f"all response indices best first (ranking); {d.scale} cannot be gold")
    if not out:
        raise StoreError(f"{where}: 'gold' is empty")
    return out


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
        dims = {d.name: d for d in p.dimensions}
        seen = set(s.scalars(select(Item.content_hash).where(Item.project_id == p.id)))
        for it in items:
            h = hashlib.sha256(json.dumps([it["prompt"], it["responses"]], sort_keys=True)
                               .encode()).hexdigest()
            if h in seen:
                skipped += 1
                continue
            seen.add(h)
            item = Item(project_id=p.id, prompt=it["prompt"], content_hash=h, source=it["meta"],
                        kind=it["kind"], messages=it["messages"])
            s.add(item)
            s.flush()
            responses = [Response(item_id=item.id, position=i, text=r["text"], model=r["model"],
                                  settings=r["settings"]) for i, r in enumerate(it["responses"])]
            s.add_all(responses)
            s.flush()
            if it["gold"] is not None:
                item.gold = _gold_ids(it["gold"], dims, [r.id for r in responses], it["where"])
            added += 1
    return added, skipped


# ---------------------------------------------------------------- export
def annotator_quality(s: Session, project: Project) -> dict[str, dict[str, Any]]:
    """annotator id -> {correct, total, score}: answers on gold/attention items that matched.

    score = (correct + 1) / (total + 2), the posterior mean under a uniform prior, so an annotator
    with no control answers yet scores 0.5 rather than 0 or 1.
    """
    rows = s.execute(select(Judgment.annotator_id, Judgment.correct)
                     .join(Item, Item.id == Judgment.item_id)
                     .where(Item.project_id == project.id, Judgment.correct.is_not(None)))
    counts: dict[str, list[int]] = {}
    for aid, ok in rows:
        c = counts.setdefault(aid, [0, 0])
        c[0] += bool(ok)
        c[1] += 1
    return {a: {"correct": c, "total": n, "score": round((c + 1) / (n + 2), 4)} for a, (c, n) in counts.items()}


def export_judgments(db_url: str, project: str) -> list[dict[str, Any]]:
    """Every judgment of the project as an export row (see the module docstring), oldest first,
    then the researcher's adjudications."""
    with session_factory(db_url)() as s:
        p = get_project(s, project)
        dims = {d.id: d for d in p.dimensions}
        quality = annotator_quality(s, p)
        no_quality = {"correct": 0, "total": 0, "score": 0.5}
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
            attrs = j.annotator_attributes if j.annotator_attributes is not None else ann.attributes
            rows.append({
                "judgment_id": j.id, "project": p.name, "item_id": item.id, "prompt": item.prompt,
                "messages": item.messages,
                "responses": [{"response_id": r.id, "text": r.text, "model": r.model,
                               "settings": r.settings} for r in item.responses],
                "dimension": d.name, "scale": d.scale, "value": j.value,
                "annotator_id": ann.id, "annotator_attributes": dict(attrs or {}),
                "display_order": list(asg.display_order), "comment": j.comment,
                "created_at": as_utc(j.created_at).isoformat(), "time_spent_s": j.time_spent_s,
                "item_source": item.source, "item_kind": item.kind or "regular",
                "gold": (item.gold or {}).get(d.name), "correct": j.correct,
                "annotator_quality": quality.get(ann.id, no_quality), "kind": "judgment",
            })
        adj = (select(Adjudication, Item).join(Item, Item.id == Adjudication.item_id)
               .options(selectinload(Item.responses)).where(Item.project_id == p.id)
               .order_by(Adjudication.created_at, Adjudication.id))
        for a, item in s.execute(adj):
            d = dims[a.dimension_id]
            rows.append({
                "judgment_id": f"adj-{a.id}", "project": p.name, "item_id": item.id, "prompt": item.prompt,
                "messages": item.messages,
                "responses": [{"response_id": r.id, "text": r.text, "model": r.model,
                               "settings": r.settings} for r in item.responses],
                "dimension": d.name, "scale": "pairwise", "value": a.chosen_response_id,
                "annotator_id": "adjudicator", "annotator_attributes": {}, "display_order": [],
                "comment": a.note, "created_at": as_utc(a.created_at).isoformat(), "time_spent_s": 0.0,
                "item_source": item.source, "item_kind": item.kind or "regular", "gold": None,
                "correct": None, "annotator_quality": no_quality, "kind": "adjudication",
            })
        return rows


_JSON_COLUMNS = ("responses", "value", "annotator_attributes", "item_source", "messages", "gold",
                 "annotator_quality", "display_order")
EXPORT_FORMATS = ".jsonl (or .json), .parquet, .csv, or a directory for a Hugging Face dataset (save_to_disk)"


def _flat(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nested / mixed-type columns as JSON strings (parquet, CSV and Arrow need one type per column)."""
    return [{k: json.dumps(v) if k in _JSON_COLUMNS else v for k, v in r.items()} for r in rows]


def _unflat(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v for k, v in r.items()}
            for r in rows]


def write_export(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """JSONL, parquet, CSV, or a `datasets` dataset directory (no suffix); written atomically."""
    out = Path(out)
    fmt = out.suffix if out.suffix else "hf"
    if fmt not in (".jsonl", ".json", ".parquet", ".csv", "hf"):
        raise StoreError(f"unknown export format {out.suffix!r}; use {EXPORT_FORMATS}")
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.Table.from_pylist(_flat(rows)), tmp)
        elif fmt == ".csv":
            import csv
            flat = _flat(rows)
            columns = list(dict.fromkeys(k for r in flat for k in r))
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(flat)
        elif fmt == "hf":
            import shutil

            import datasets
            if out.exists() and not (out / "dataset_info.json").exists() and any(out.iterdir()):
                raise StoreError(f"{out} is a non-empty directory that is not a dataset; pick a new path")
            datasets.Dataset.from_list(_flat(rows)).save_to_disk(str(tmp))
            if out.exists():
                shutil.rmtree(out)
        else:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        tmp.replace(out)
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror or exc}; pick a writable path") from None
    return out


def read_judgments(path: str | Path) -> list[dict[str, Any]]:
    """Read an export (JSONL, parquet, CSV or dataset directory) back into export rows."""
    path = Path(path)
    if path.is_dir():
        import datasets
        return _unflat(datasets.load_from_disk(str(path)).to_list())
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        return _unflat(pq.read_table(path).to_pylist())
    if path.suffix == ".csv":
        import csv
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:  # CSV has no types: restore the numeric and boolean columns
            r["time_spent_s"] = float(r["time_spent_s"]) if r.get("time_spent_s") else 0.0
            if "correct" in r:
                r["correct"] = {"True": True, "False": False}.get(r["correct"])
        return _unflat(rows)
    return _read_jsonl(path)


# ---------------------------------------------------------------- status
def project_status(db_url: str, project: str) -> dict[str, Any]:
    with session_factory(db_url)() as s:
        p = get_project(s, project)
        kinds = dict(s.execute(select(Item.kind, func.count()).where(Item.project_id == p.id)
                               .group_by(Item.kind)).all())
        n_items = kinds.get("regular", 0)
        per_item = dict(s.execute(
            select(Assignment.item_id, func.count()).join(Item, Item.id == Assignment.item_id)
            .where(Item.project_id == p.id, Item.kind == "regular", Assignment.status == "submitted")
            .group_by(Assignment.item_id)).all())
        complete = sum(1 for c in per_item.values() if c >= p.overlap)
        n_ann = s.scalar(select(func.count()).select_from(Annotator)
                         .where(Annotator.project_id == p.id)) or 0
        n_judg = s.scalar(select(func.count()).select_from(Judgment)
                          .join(Item, Item.id == Judgment.item_id).where(Item.project_id == p.id)) or 0
        return {"project": p.name, "items": n_items, "items_complete": complete,
                "control_items": kinds.get("gold", 0) + kinds.get("attention", 0),
                "submissions": sum(per_item.values()), "judgments": n_judg, "annotators": n_ann,
                "overlap": p.overlap, "dimensions": [d.name for d in p.dimensions]}
