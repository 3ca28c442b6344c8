"""`prefdisco annotate ...`: create an annotation project, add annotators, import items, serve,
export, and train a model on the aggregated judgments.

The database defaults to ./annotation.db (SQLite); pass --db with a path or a SQLAlchemy URL
(e.g. postgresql+psycopg://user@host/db) for a shared deployment, or set PREFDISCO_ANNOTATION_DB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from discovery.errors import UserError

annotate_app = typer.Typer(help="Collect human judgments on LLM outputs (per dimension, with "
                                "annotator demographics) through a small web app.",
                           no_args_is_help=True)

DEFAULT_BASE_URL = "http://127.0.0.1:8765"
DbOpt = typer.Option(None, "--db", help="SQLite path or SQLAlchemy URL.",
                     show_default="$PREFDISCO_ANNOTATION_DB or ./annotation.db")
ProjectOpt = typer.Option(..., "--project", "-p", help="Project name (the spec's `name`).")
BaseUrlOpt = typer.Option(None, "--base-url", help="Where `annotate serve` is reachable, used to print links.",
                          show_default="the address `annotate serve` last recorded, else " + DEFAULT_BASE_URL)


def resolve_db(db: Optional[str]) -> str:
    from preference_data.annotation.db import default_db_url
    db = db or os.environ.get("PREFDISCO_ANNOTATION_DB") or "annotation.db"
    if "://" in db:
        return db
    parent = Path(db).expanduser().resolve().parent
    if not parent.is_dir():
        raise UserError(f"--db {db}: directory {parent} does not exist; create it or pick another path")
    return default_db_url(db)


def _guard(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Turn the store's, spec's and database's errors into one-line UserErrors."""
    from sqlalchemy.exc import SQLAlchemyError

    from preference_data.annotation.db import SchemaTooNew
    from preference_data.annotation.spec import SpecError
    from preference_data.annotation.store import StoreError
    try:
        return fn(*args, **kwargs)
    except (SpecError, StoreError, SchemaTooNew) as exc:
        raise UserError(str(exc)) from None
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise UserError(f"database error: {detail}; check --db") from None


def _base_url(db_url: str, project: str, given: Optional[str]) -> str:
    if given:
        return given.rstrip("/")
    from preference_data.annotation.store import base_url_for
    return (_guard(base_url_for, db_url, project) or DEFAULT_BASE_URL).rstrip("/")


@annotate_app.command("create")
def create(spec: Path = typer.Option(..., "--spec", help="Project YAML (see configs/annotation/)."),
           db: Optional[str] = DbOpt, base_url: Optional[str] = BaseUrlOpt,
           show: bool = typer.Option(False, "--show", help="Print the fully resolved spec."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Create a project from a YAML spec; prints the admin link (shown once)."""
    import yaml

    from preference_data.annotation.spec import load_spec
    from preference_data.annotation.store import create_project, set_base_url
    s = _guard(load_spec, spec)
    url = resolve_db(db)
    token = _guard(create_project, url, s)
    if base_url:
        _guard(set_base_url, url, base_url, s.name)
    admin = f"{_base_url(url, s.name, base_url)}/admin/{token}"
    if as_json:
        typer.echo(json.dumps({"project": s.name, "db": url, "admin_link": admin, "spec": s.to_dict()}))
        return
    if show:
        typer.echo(yaml.safe_dump(s.to_dict(), sort_keys=False))
    typer.echo(f"created project {s.name!r} in {url}")
    typer.echo(f"admin link (keep private): {admin}")


@annotate_app.command("admin-link")
def admin_link(project: str = ProjectOpt, db: Optional[str] = DbOpt, base_url: Optional[str] = BaseUrlOpt) -> None:
    """Issue a new admin link (the old one stops working)."""
    from preference_data.annotation.store import rotate_admin_token
    url = resolve_db(db)
    token = _guard(rotate_admin_token, url, project)
    typer.echo(f"{_base_url(url, project, base_url)}/admin/{token}")


@annotate_app.command("join-link")
def join_link(project: str = ProjectOpt, db: Optional[str] = DbOpt, base_url: Optional[str] = BaseUrlOpt) -> None:
    """Issue the shared study link for a crowd platform (e.g. Prolific); replaces the old one.

    Each participant who opens it with ?<crowd.id_param>=<their id> becomes one annotator; when
    they are done the page shows the spec's `crowd.completion_code`."""
    from preference_data.annotation.db import session_factory
    from preference_data.annotation.store import create_join_link, get_project, project_spec
    url = resolve_db(db)
    token = _guard(create_join_link, url, project)
    with session_factory(url)() as s:
        param = project_spec(get_project(s, project)).crowd.id_param
    typer.echo(f"{_base_url(url, project, base_url)}/join/{token}?{param}={{{{%{param}%}}}}")


@annotate_app.command("add-annotators")
def add_annotators(project: str = ProjectOpt, count: int = typer.Option(1, "--count", "-n", min=1),
                   attr: list[str] = typer.Option([], "--attr",
                                                  help="Preset attribute, e.g. --attr region=south "
                                                       "(repeatable; annotators cannot change a preset value)."),
                   label: str = typer.Option("", "--label", help="Private note (e.g. a recruitment batch)."),
                   ttl_days: Optional[float] = typer.Option(None, "--ttl-days",
                                                            help="Links expire after this many days (> 0)."),
                   max_items: Optional[int] = typer.Option(None, "--max-items",
                                                           help="Cap on regular items for these annotators "
                                                                "(default: the spec's max_items_per_annotator)."),
                   db: Optional[str] = DbOpt, base_url: Optional[str] = BaseUrlOpt,
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Add annotators and print their personal links (shown once; only hashes are stored)."""
    from preference_data.annotation.store import add_annotators as _add
    attrs = {}
    for a in attr:
        if "=" not in a:
            raise UserError(f"--attr {a!r}: write NAME=VALUE, e.g. --attr region=south")
        k, v = a.split("=", 1)
        attrs[k.strip()] = v.strip()
    url = resolve_db(db)
    made = _guard(_add, url, project, count, attrs, label, ttl_days, max_items)
    base = _base_url(url, project, base_url)
    links = [{"annotator_id": m.annotator_id, "link": f"{base}/a/{m.token}"} for m in made]
    if as_json:
        typer.echo(json.dumps(links, indent=2))
    else:
        for row in links:
            typer.echo(f"{row['annotator_id']}  {row['link']}")


@annotate_app.command("revoke")
def revoke(project: str = ProjectOpt,
           annotator: list[str] = typer.Option(..., "--annotator", "-a", help="Annotator id (a-...)."),
           db: Optional[str] = DbOpt) -> None:
    """Withdraw annotator links (their judgments so far are kept)."""
    from preference_data.annotation.store import revoke_annotators
    n = _guard(revoke_annotators, resolve_db(db), project, annotator)
    typer.echo(f"revoked {n} annotator link(s)")


@annotate_app.command("withdraw")
def withdraw(project: str = ProjectOpt,
             annotator: list[str] = typer.Option(..., "--annotator", "-a", help="Annotator id (a-...)."),
             db: Optional[str] = DbOpt) -> None:
    """An annotator withdrew consent: delete all their judgments and attributes (irreversible)."""
    from preference_data.annotation.store import withdraw_annotators
    n = _guard(withdraw_annotators, resolve_db(db), project, annotator)
    typer.echo(f"deleted {n} judgment(s) of {len(annotator)} annotator(s); their links no longer work")


@annotate_app.command("import")
def import_cmd(source: Path = typer.Argument(..., help="JSONL of {prompt, responses:[{text, model, "
                                                       "settings}], kind?, gold?} (or TRL pairs), or a "
                                                       "campaign dir holding samples*.jsonl."),
               project: str = ProjectOpt, db: Optional[str] = DbOpt) -> None:
    """Import items; re-importing the same item is skipped.

    `prompt` may be a conversation (list of {role, content}). Gold and attention-check items carry
    `kind: gold|attention` and `gold: {dimension: response index | [indices best first]}`."""
    from preference_data.annotation.store import import_items
    added, skipped = _guard(import_items, resolve_db(db), project, source)
    typer.echo(f"imported {added} item(s), skipped {skipped} already present")


@annotate_app.command("status")
def status(project: str = ProjectOpt, db: Optional[str] = DbOpt,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Progress, per-group counts, annotator quality and per-dimension agreement so far."""
    from preference_data.annotation.admin import admin_summary
    from preference_data.annotation.db import session_factory
    from preference_data.annotation.store import get_project

    def summarise(url: str) -> dict:
        with session_factory(url)() as s:
            return admin_summary(s, url, get_project(s, project))

    url = resolve_db(db)
    summary = _guard(summarise, url)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    st = summary["status"]
    typer.echo(f"{st['project']}: {st['items_complete']}/{st['items']} items complete (k={st['overlap']}), "
               f"{st['submissions']} submissions, {st['judgments']} judgments, {st['annotators']} annotators, "
               f"{st['control_items']} gold/attention items, {summary['disputed']} disputed")
    for g in summary["groups"]:
        typer.echo(f"  {g['attribute']}={g['value']}: {g['annotators']} annotators, "
                   f"{g['submitted']} submissions (share {g['share']}, target {g['target_share']})")
    for name, a in summary["agreement"].items():
        alpha = "-" if a["alpha"] is None else f"{a['alpha']:.3f}"
        typer.echo(f"  agreement {name} ({a['level']}): alpha={alpha} over {a['units']} units {a['note']}")


@annotate_app.command("export")
def export(project: str = ProjectOpt,
           out: Path = typer.Option(..., "--out", help=".jsonl, .parquet, .csv, or a directory (no suffix) "
                                    "for a Hugging Face dataset written with save_to_disk."),
           db: Optional[str] = DbOpt) -> None:
    """Write every raw judgment with full provenance (row format: `prefdisco annotate --help`
    and the preference_data.annotation.store module docstring)."""
    from preference_data.annotation.store import export_judgments, write_export
    url = resolve_db(db)
    rows = _guard(export_judgments, url, project)
    path = _guard(write_export, rows, out)
    typer.echo(f"wrote {len(rows)} judgment(s) to {path}")


@annotate_app.command("serve")
def serve(project: Optional[str] = typer.Option(None, "--project", "-p",
                                                help="Serve only this project.", show_default="every project in --db"),
          db: Optional[str] = DbOpt,
          host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8765, "--port"),
          public_url: Optional[str] = typer.Option(None, "--public-url",
                                                   help="Address annotators use (behind a proxy); links "
                                                        "printed later start with it.",
                                                   show_default="http://HOST:PORT"),
          log_level: str = typer.Option("warning", "--log-level")) -> None:
    """Run the annotation web app (localhost by default); records its address for printed links."""
    import uvicorn

    from preference_data.annotation.app import create_app
    from preference_data.annotation.store import set_base_url
    from preference_data.annotation.db import session_factory
    from preference_data.annotation.models import Project
    url = resolve_db(db)
    app = _guard(create_app, url, project)
    address = (public_url or f"http://{host}:{port}").rstrip("/")

    def recorded() -> set[str]:
        with session_factory(url)() as s:
            return {p.base_url or DEFAULT_BASE_URL for p in s.query(Project)
                    if project is None or p.name == project}

    before = _guard(recorded)
    _guard(set_base_url, url, address, project)
    typer.echo(f"serving {'project ' + repr(project) if project else 'every project'} on {address}/ "
               "(annotator links: /a/<token>, admin: /admin/<token>)")
    for old in sorted(before - {address}):
        typer.echo(f"note: links printed earlier start with {old}; open them as {address}/... "
                   "(links printed from now on use this address)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


@annotate_app.command("train")
def train(project: str = ProjectOpt,
          model: str = typer.Option(..., "--model", help="Causal LM to train: local directory or hub id."),
          out: Path = typer.Option(..., "--out", help="Directory for judgments, pairs, the model and reports."),
          db: Optional[str] = DbOpt,
          config: Optional[Path] = typer.Option(None, "--config", help="YAML with `aggregation:` and `hf:` "
                                                "sections (AnnotationTrainConfig); flags below override it."),
          loss: str = typer.Option("dpo", "--loss", help="Registered loss name."),
          objective: Optional[str] = typer.Option(None, "--objective",
                                                  help="group-robust | weighted | mean", show_default="group-robust"),
          steps: Optional[int] = typer.Option(None, "--steps", min=1),
          as_json: bool = typer.Option(False, "--json", help="Print the per-group report as JSON.")) -> None:
    """Annotation project -> aggregated pairs (per group and dimension) -> a model trained on the
    `hf` tier with a group-robust objective -> a per-group report (worst group first)."""
    from preference_data.annotation.training import (TrainingError, load_train_config, train_from_project,
                                                      format_group_report)
    url = resolve_db(db)
    try:
        cfg = load_train_config(config, objective=objective, steps=steps, loss=loss)
        report = _guard(train_from_project, url, project, model, out, cfg)
    except TrainingError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        typer.echo(format_group_report(report))


def register(app: typer.Typer) -> None:
    app.add_typer(annotate_app, name="annotate")
