"""Where judgments and population targets come from: an export file, or the annotation database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from preference_data.aggregation.judgments import Judgment, parse_judgments
from preference_data.annotation.db import session_factory
from preference_data.annotation.store import export_judgments, get_project, project_spec, read_judgments

DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def as_db_url(source: str) -> str | None:
    """A DB URL for `source` if it names a database (URL or SQLite file), else None."""
    if "://" in source:
        return source
    if Path(source).suffix in DB_SUFFIXES:
        return f"sqlite:///{Path(source).resolve()}"
    return None


def project_name(project: str) -> str:
    """`--project` is a name or a project YAML path; return the name."""
    if project.endswith((".yaml", ".yml")) and Path(project).is_file():
        return str((yaml.safe_load(Path(project).read_text()) or {}).get("name", ""))
    return project


def load_judgments(source: str | Path, project: str | None = None) -> list[Judgment]:
    """Judgments from an export (.jsonl/.parquet) or from the annotation DB (URL or .db file)."""
    source = str(source)
    name = project_name(project) if project else None
    url = as_db_url(source)
    if url is not None:
        if not name:
            raise ValueError("reading from a database needs --project NAME")
        rows: list[dict[str, Any]] = export_judgments(url, name)
    else:
        if not Path(source).is_file():
            raise FileNotFoundError(f"no judgments file {source}")
        rows = read_judgments(source)
    return parse_judgments(rows, name or None)


def load_population_shares(project: str | None, source: str | Path | None = None
                           ) -> dict[str, dict[str, float]]:
    """`population_shares` from a project YAML, or from the project stored in the annotation DB."""
    if not project:
        return {}
    if project.endswith((".yaml", ".yml")) and Path(project).is_file():
        raw = yaml.safe_load(Path(project).read_text()) or {}
        return {k: {str(v): float(s) for v, s in d.items()} for k, d in (raw.get("population_shares") or {}).items()}
    url = as_db_url(str(source)) if source is not None else None
    if url is None:
        return {}
    with session_factory(url)() as s:
        return dict(project_spec(get_project(s, project)).population_shares)
