"""`prefdisco aggregate`: raw human judgments -> weighted TRL-format pairs + an audit report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from discovery.errors import UserError

# Same choices as AggregationConfig's Literal types (kept here so `--help` does not import numpy; a test ties them).
METHOD_CHOICES = ("majority", "dawid-skene", "bradley-terry", "plackett-luce")
WEIGHTING_CHOICES = ("none", "poststrat", "raking")


def _shares(text: Optional[str]) -> dict[str, dict[str, float]] | None:
    """--population-shares: inline JSON/YAML mapping or a YAML/JSON file."""
    if not text:
        return None
    import yaml

    from preference_data.annotation.spec import SpecError, check_population_shares
    example = '\'{"region": {"north": 0.5, "south": 0.5}}\''
    try:
        raw = yaml.safe_load(Path(text).read_text()) if Path(text).is_file() else yaml.safe_load(text)
    except (yaml.YAMLError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--population-shares is neither a readable file nor JSON/YAML ({first}); "
                        f"e.g. {example}") from None
    if isinstance(raw, dict) and "population_shares" in raw:
        raw = raw["population_shares"]
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise UserError(f"--population-shares must map attribute -> {{value: share}}, e.g. {example}")
    try:
        return check_population_shares(raw, where="--population-shares")
    except SpecError as exc:
        raise UserError(str(exc)) from None


def aggregate_command(
    judgments: str = typer.Option(..., "--judgments", help="Export file (.jsonl/.parquet) from "
                                  "`prefdisco annotate export`, or the annotation DB (path or URL)."),
    project: str = typer.Option(..., "--project", "-p", help="Project name, or its YAML spec (for "
                                "population_shares when reading a file)."),
    method: str = typer.Option("majority", "--method", help=f"One of {', '.join(METHOD_CHOICES)}."),
    weighting: str = typer.Option("none", "--weighting", help="none | poststrat | raking: re-weight "
                                  "annotator groups to the project's population_shares."),
    by_dimension: bool = typer.Option(True, "--by-dimension/--pool-dimensions",
                                      help="Decide each dimension separately (default), or pool every "
                                           "dimension's votes into one decision per item."),
    by_group: bool = typer.Option(False, "--by-group", help="Decide each annotator group separately; "
                                  "pair weights carry each group's (weighted) population mass."),
    group_attribute: Optional[str] = typer.Option(None, "--group-attribute", help="Attribute that "
                                                  "defines groups (default: the first attribute of population_shares)."),
    population_shares: Optional[str] = typer.Option(None, "--population-shares", help="Override the "
                                                    "targets: JSON/YAML mapping or file."),
    noise_threshold: float = typer.Option(0.7, "--noise-threshold", help="Dawid-Skene: flag annotators "
                                          "whose estimated accuracy is below this."),
    out: Path = typer.Option(..., "--out", help="Where to write the TRL-format pairs (JSONL)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the full report (JSON) here."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Aggregate judgments into weighted preference pairs; report agreement, hot-spots, clusters."""
    if method not in METHOD_CHOICES:
        raise UserError(f"--method must be one of {', '.join(METHOD_CHOICES)}")
    if weighting not in WEIGHTING_CHOICES:
        raise UserError(f"--weighting must be one of {', '.join(WEIGHTING_CHOICES)}")
    from preference_data.aggregation import AggregationConfig, JudgmentError, aggregate, write_pairs
    from preference_data.annotation.sources import load_judgments, load_population_shares
    try:
        rows = load_judgments(judgments, project)
        shares = _shares(population_shares) or load_population_shares(project, judgments)
    except (FileNotFoundError, JudgmentError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # store errors (unknown project, bad DB) carry their own fix
        if type(exc).__name__ in ("OperationalError", "DatabaseError", "ProgrammingError"):
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise UserError(f"cannot read the annotation database {judgments} ({detail}); check --judgments") from None
        if type(exc).__name__ in ("StoreError", "SchemaTooNew"):
            raise UserError(str(exc).splitlines()[0]) from None
        raise
    if not rows:
        raise UserError(f"no judgments for project {project!r} in {judgments}; check --project")
    cfg = AggregationConfig(method=method, weighting=weighting, by_dimension=by_dimension,
                            by_group=by_group, group_attribute=group_attribute,
                            population_shares=shares, noise_threshold=noise_threshold)
    try:
        result = aggregate(rows, cfg)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        write_pairs(result.pairs, out)
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(result.report, indent=2, default=str))
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or out}: {exc.strerror or exc}; pick a writable "
                        "--out/--report path") from None
    if as_json:
        typer.echo(json.dumps({"out": str(out), **result.report}, default=str))
        return
    r = result.report
    typer.echo(f"{r['pairs']} pairs from {r['n_judgments']} judgments by {r['n_annotators']} annotators "
               f"on {r['n_items']} items ({method}, weighting={weighting}) -> {out}")
    for dim, a in r["agreement"]["by_dimension"].items():
        typer.echo(f"  alpha[{dim}] = {a['alpha']} ({a['level']}, {a['units']} units)")
    for g, info in r["groups"].items():
        pairs = (f", {info['pairs']} pairs, total pair weight {info['pair_weight_total']}"
                 if by_group else "")
        typer.echo(f"  group {g}: {info['annotators']} annotators, {info['judgments']} judgments{pairs}")
    if "flagged_noisy" in r["method_info"]:
        typer.echo(f"  flagged as noisy (Dawid-Skene accuracy < {noise_threshold}): "
                   f"{', '.join(r['method_info']['flagged_noisy']) or 'none'}")
    cl = r["clusters"]
    typer.echo(f"  annotator clusters: k={cl['k']} sizes={[c['size'] for c in cl['clusters']]}")


def register(app: typer.Typer) -> None:
    app.command("aggregate")(aggregate_command)
