"""`prefdisco annotate ...`: create an annotation project, add annotators, import items, serve.

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

DbOpt = typer.Option(None, "--db", help="SQLite path or SQLAlchemy URL "
                                        "[default: $PREFDISCO_ANNOTATION_DB or ./annotation.db]")
ProjectOpt = typer.Option(..., "--project", "-p", help="Project name (the spec's `name`).")
BaseUrlOpt = typer.Option("http://127.0.0.1:8765", "--base-url",
                          help="Where `annotate serve` is reachable, used to print links.")


def resolve_db(db: Optional[str]) -> str:
    from preference_data.annotation.db import default_db_url
    db = db or os.environ.get("PREFDISCO_ANNOTATION_DB") or "annotation.db"
    return db if "://" in db else default_db_url(db)


def _guard(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Turn the store's and spec's validation errors into one-line UserErrors."""
    from preference_data.annotation.db import SchemaTooNew
    from preference_data.annotation.spec import SpecError
    from preference_data.annotation.store import StoreError
    try:
        return fn(*args, **kwargs)
    except (SpecError, StoreError, SchemaTooNew) as exc:
        raise UserError(str(exc)) from None


@annotate_app.command("create")
def create(spec: Path = typer.Option(..., "--spec", help="Project YAML (see configs/annotation/)."),
           db: Optional[str] = DbOpt, base_url: str = BaseUrlOpt,
           show: bool = typer.Option(False, "--show", help="Print the fully resolved spec."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Create a project from a YAML spec; prints the admin link (shown once)."""
    import yaml

    from preference_data.annotation.spec import load_spec
    from preference_data.annotation.store import create_project
    s = _guard(load_spec, spec)
    url = resolve_db(db)
    token = _guard(create_project, url, s)
    admin = f"{base_url.rstrip('/')}/admin/{token}"
    if as_json:
        typer.echo(json.dumps({"project": s.name, "db": url, "admin_link": admin, "spec": s.to_dict()}))
        return
    if show:
        typer.echo(yaml.safe_dump(s.to_dict(), sort_keys=False))
    typer.echo(f"created project {s.name!r} in {url}")
    typer.echo(f"admin link (keep private): {admin}")


@annotate_app.command("admin-link")
def admin_link(project: str = ProjectOpt, db: Optional[str] = DbOpt, base_url: str = BaseUrlOpt) -> None:
    """Issue a new admin link (the old one stops working)."""
    from preference_data.annotation.store import rotate_admin_token
    token = _guard(rotate_admin_token, resolve_db(db), project)
    typer.echo(f"{base_url.rstrip('/')}/admin/{token}")


@annotate_app.command("add-annotators")
def add_annotators(project: str = ProjectOpt, count: int = typer.Option(1, "--count", "-n", min=1),
                   attr: list[str] = typer.Option([], "--attr",
                                                  help="Preset attribute, e.g. --attr region=south "
                                                       "(repeatable; annotators may also self-describe)."),
                   label: str = typer.Option("", "--label", help="Private note (e.g. a recruitment batch)."),
                   ttl_days: Optional[float] = typer.Option(None, "--ttl-days",
                                                            help="Links expire after this many days."),
                   db: Optional[str] = DbOpt, base_url: str = BaseUrlOpt,
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Add annotators and print their personal links (shown once; only hashes are stored)."""
    from preference_data.annotation.store import add_annotators as _add
    attrs = {}
    for a in attr:
        if "=" not in a:
            raise UserError(f"--attr {a!r}: write NAME=VALUE, e.g. --attr region=south")
        k, v = a.split("=", 1)
        attrs[k.strip()] = v.strip()
    made = _guard(_add, resolve_db(db), project, count, attrs, label, ttl_days)
    links = [{"annotator_id": m.annotator_id, "link": f"{base_url.rstrip('/')}/a/{m.token}"} for m in made]
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


@annotate_app.command("import")
def import_cmd(source: Path = typer.Argument(..., help="JSONL of {prompt, responses:[{text, model, "
                                                       "settings}]} (or TRL pairs), or a campaign dir "
                                                       "holding samples*.jsonl."),
               project: str = ProjectOpt, db: Optional[str] = DbOpt) -> None:
    """Import items; re-importing the same item is skipped."""
    from preference_data.annotation.store import import_items
    added, skipped = _guard(import_items, resolve_db(db), project, source)
    typer.echo(f"imported {added} item(s), skipped {skipped} already present")


@annotate_app.command("status")
def status(project: str = ProjectOpt, db: Optional[str] = DbOpt,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Progress, per-group counts and per-dimension agreement so far."""
    from preference_data.annotation.app import admin_summary
    from preference_data.annotation.db import session_factory
    from preference_data.annotation.store import get_project
    url = resolve_db(db)
    with session_factory(url)() as s:
        p = _guard(get_project, s, project)
        summary = admin_summary(s, url, p)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    st = summary["status"]
    typer.echo(f"{st['project']}: {st['items_complete']}/{st['items']} items complete (k={st['overlap']}), "
               f"{st['submissions']} submissions, {st['judgments']} judgments, {st['annotators']} annotators")
    for g in summary["groups"]:
        typer.echo(f"  {g['attribute']}={g['value']}: {g['annotators']} annotators, "
                   f"{g['submitted']} submissions (share {g['share']}, target {g['target_share']})")
    for name, a in summary["agreement"].items():
        alpha = "-" if a["alpha"] is None else f"{a['alpha']:.3f}"
        typer.echo(f"  agreement {name} ({a['level']}): alpha={alpha} over {a['units']} units {a['note']}")


@annotate_app.command("export")
def export(project: str = ProjectOpt, out: Path = typer.Option(..., "--out", help=".jsonl or .parquet"),
           db: Optional[str] = DbOpt) -> None:
    """Write every raw judgment with full provenance (format: INTERFACES.md)."""
    from preference_data.annotation.store import export_judgments, write_export
    url = resolve_db(db)
    rows = _guard(export_judgments, url, project)
    path = _guard(write_export, rows, out)
    typer.echo(f"wrote {len(rows)} judgment(s) to {path}")


@annotate_app.command("serve")
def serve(project: str = ProjectOpt, db: Optional[str] = DbOpt,
          host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8765, "--port"),
          log_level: str = typer.Option("warning", "--log-level")) -> None:
    """Run the annotation web app (localhost by default)."""
    import uvicorn

    from preference_data.annotation.app import create_app
    app = _guard(create_app, resolve_db(db), project)
    typer.echo(f"serving project {project!r} on http://{host}:{port}/ (annotator links: /a/<token>)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.add_typer(annotate_app, name="annotate")
