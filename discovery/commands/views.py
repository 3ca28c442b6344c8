"""`prefdisco leaderboard DIR`, `prefdisco show DIR ID`, `prefdisco compare DIR ID1 ID2`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from discovery.errors import UserError

LEADERBOARD_FIELDS = ("id", "name", "status", "failure_class", "fitness", "fitness_se", "screen_fitness",
                      "heldout", "heldout_se", "proposer", "parent_ids", "generation", "island", "origin",
                      "duplicate_of")
TUNED_FIELDS = ("tuned_fitness", "tuned_fitness_se", "tuned_heldout", "tuned_heldout_se")  # from `prefdisco tune`


PAIRED_FIELDS = ("fitness_vs_dpo", "fitness_vs_dpo_se", "heldout_vs_dpo", "heldout_vs_dpo_se", "paired_n")


def _stage_scorings(cascade: Any) -> dict[str, Any]:
    """The scoring of the campaign's fitness and held-out suites (how runs combine into a score)."""
    from evaluators.suites import load_suite

    return {"fitness": load_suite(cascade.fitness_suite).scoring, "heldout": load_suite(cascade.heldout_suite).scoring}


def _paired_by_stage(stages: dict[str, Any], other: dict[str, Any], scorings: dict[str, Any]) -> dict[str, Any]:
    """{stage: PairedDifference of stages - other} on the fitness and held-out suites, where the runs pair."""
    from discovery.archive.verdict import paired_vs

    pairs = {stage: paired_vs(stages.get(stage), other.get(stage), scorings[stage]) for stage in scorings}
    return {stage: d for stage, d in pairs.items() if d is not None}


def _paired_columns(stages: dict[str, Any], dpo_stages: dict[str, Any], scorings: dict[str, Any]) -> dict[str, Any]:
    """Paired difference with DPO (same seeds, data, labels, noise) on the fitness and held-out suites."""
    out: dict[str, Any] = dict.fromkeys(PAIRED_FIELDS)
    for stage, d in _paired_by_stage(stages, dpo_stages, scorings).items():
        out[f"{stage}_vs_dpo"] = d.difference
        out[f"{stage}_vs_dpo_se"] = d.se if d.se == d.se else None
        out["paired_n"] = out["paired_n"] or {}
        out["paired_n"][stage] = d.n
    return out


def leaderboard_rows(campaign_dir: Path) -> list[dict[str, Any]]:
    from discovery.archive.campaign_dir import CampaignDir
    from discovery.review.report import read_stage_results
    from discovery.tuning.results import load_tuned_results

    campaign = CampaignDir.open(campaign_dir)
    scorings = _stage_scorings(campaign.config().cascade)
    db = campaign.database()
    try:
        rows = db.leaderboard()
        tuned = load_tuned_results(db.url)  # {} until `prefdisco tune` has run
        stage_results = read_stage_results(db)
        dpo = db.dpo()
    finally:
        db.close()
    dpo_stages = stage_results.get(dpo.id, {}) if dpo else {}
    out = []
    for c in rows:
        r = c.to_dict()
        item = {k: r[k] for k in LEADERBOARD_FIELDS}
        item["parents"] = item.pop("parent_ids")
        item.update(_paired_columns(stage_results.get(r["id"], {}), dpo_stages, scorings)
                    if dpo is not None and not c.is_dpo else dict.fromkeys(PAIRED_FIELDS))
        t = tuned.get(r["id"]) or {}
        item.update({k: t.get(k) for k in TUNED_FIELDS}, tuned_params=t.get("params"))
        out.append(item)
    return out


def campaign_verdict_of(campaign_dir: Path) -> Any:
    """The held-out verdict (vs tuned DPO where `prefdisco tune` ran) of a campaign directory."""
    from discovery.archive.campaign_dir import CampaignDir
    from discovery.review.verdict import campaign_verdict

    campaign = CampaignDir.open(campaign_dir)
    db = campaign.database()
    try:
        return campaign_verdict(db, campaign.config().cascade.heldout_suite)
    finally:
        db.close()


def format_score(x: Any, se: Any = None) -> str:
    """A score with its standard error for terminal tables ("—" when not computed)."""
    if x is None:
        return "—"
    return f"{x:.4f}" + (f" ± {se:.4f}" if se is not None else "")


def format_signed(x: Any, se: Any = None) -> str:
    """A paired difference with its s.e. ("—" when not computed)."""
    if x is None:
        return "—"
    return f"{x:+.4f}" + (f" ± {se:.4f}" if se is not None else "")


def _paired_pair(campaign_dir: Path, first: str, second: str) -> dict[str, Any]:
    """{"fitness"|"heldout": PairedDifference of first - second} where both have runs that pair."""
    from discovery.archive.campaign_dir import CampaignDir
    from discovery.review.report import read_stage_results

    campaign = CampaignDir.open(campaign_dir)
    db = campaign.database()
    try:
        stages = read_stage_results(db)
    finally:
        db.close()
    return _paired_by_stage(stages.get(first, {}), stages.get(second, {}), _stage_scorings(campaign.config().cascade))


def _get(campaign_dir: Path, cid: str) -> dict[str, Any]:
    """One candidate as plain values (what `show --json` prints)."""
    from discovery.archive.campaign_dir import CampaignDir

    db = CampaignDir.open(campaign_dir).database()
    try:
        row = db.get(cid)
    finally:
        db.close()
    if row is None:
        raise UserError(f"no candidate {cid!r} in {campaign_dir}; list ids with `prefdisco leaderboard {campaign_dir}`")
    return row.to_dict()


def register(app: typer.Typer) -> None:
    @app.command("leaderboard")
    def leaderboard(
        campaign_dir: Path = typer.Argument(..., help="Campaign directory."),
        as_json: bool = typer.Option(False, "--json", help="Every candidate as JSON (for scripts)."),
        limit: int = typer.Option(30, "--limit", help="Rows in the table view (JSON lists all)."),
    ) -> None:
        """Candidates ranked by fitness (held-out shown where computed)."""
        rows = leaderboard_rows(campaign_dir)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        verdict = campaign_verdict_of(campaign_dir)
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"leaderboard — {campaign_dir}")
        widths = {"name": 24, "parents": 18}  # the proposer is in `show` and --json
        tuned = any(r["tuned_fitness"] is not None for r in rows)  # columns appear after `prefdisco tune`
        cols = ("#", "id", "name", "status", "fitness", "vs DPO", "held-out", "held-out vs DPO") + (
            ("tuned", "tuned held-out") if tuned else ()) + ("parents",)
        for col in cols:
            table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=widths.get(col),
                             min_width=2 if col == "#" else None if col in widths else min(len(col) + 6, 16))
        for i, r in enumerate(rows[:limit], 1):
            status = r["status"] + (f" ({r['failure_class']})" if r["failure_class"] else "")
            style = "bold green" if r["origin"] == "proposal" and r["status"] == "evaluated" and i <= 3 else None
            extra = (format_score(r["tuned_fitness"], r["tuned_fitness_se"]), format_score(r["tuned_heldout"], r["tuned_heldout_se"]))
            table.add_row(str(i), r["id"], r["name"], status, format_score(r["fitness"], r["fitness_se"]),
                          format_signed(r["fitness_vs_dpo"], r["fitness_vs_dpo_se"]),
                          format_score(r["heldout"], r["heldout_se"]),
                          format_signed(r["heldout_vs_dpo"], r["heldout_vs_dpo_se"]), *(extra if tuned else ()),
                          ",".join(r["parents"]), style=style)
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # piped output: do not squeeze to 80 columns
        console.print(table)
        console.print("vs DPO: paired difference with DPO on the same seeds, data, labels and sampling noise "
                      "± its paired s.e.", highlight=False)
        console.print(verdict.text, highlight=False, soft_wrap=True)

    @app.command("show")
    def show(campaign_dir: Path = typer.Argument(..., help="Campaign directory."),
             candidate: str = typer.Argument(..., help="Candidate id (see the leaderboard)."),
             as_json: bool = typer.Option(False, "--json")) -> None:
        """One candidate: scores, per-stage metrics, lineage, errors and its code."""
        row = _get(campaign_dir, candidate)
        if as_json:
            typer.echo(json.dumps(row, indent=2, default=str))
            return
        from rich.console import Console
        from rich.syntax import Syntax
        from rich.table import Table

        console = Console()
        table = Table(title=f"{row['id']} — {row['name']}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for key in ("status", "failure_class", "error", "duplicate_of", "origin", "proposer", "parent_ids",
                    "generation", "island"):
            if row.get(key) not in (None, "", []):
                table.add_row(key, str(row[key]))
        table.add_row("screen", format_score(row["screen_fitness"]))
        table.add_row("fitness", format_score(row["fitness"], row["fitness_se"]))
        table.add_row("held-out", format_score(row["heldout"], row["heldout_se"]))
        per_task = ((row["metrics"].get("fitness") or {}).get("per_task") or {})
        if per_task:
            table.add_row("per task", ", ".join(f"{k}={format_score(v)}" for k, v in sorted(per_task.items())))
        if row.get("behaviour"):
            table.add_row("behaviour", row["behaviour"])
        fit = row["metrics"].get("fit") or {}
        if fit:  # fit.trials > 0: constants and beta scale fitted before scoring (the fit stage's record)
            table.add_row("fitted", f"{fit.get('trials')} trials, best trial {fit.get('best')}, "
                                    f"gain {format_score(fit.get('gain'))}")
        if row.get("thought"):
            table.add_row("thought", row["thought"])
        table.add_row("timings (s)", json.dumps(row["timings"]))
        table.add_row("tokens / cost", f"{row['prompt_tokens'] + row['completion_tokens']} / ${row['cost_usd']:.4f}")
        console.print(table)
        if row["code"]:
            console.print(Syntax(row["code"], "python", line_numbers=True))

    @app.command("compare")
    def compare(campaign_dir: Path = typer.Argument(..., help="Campaign directory."),
                first: str = typer.Argument(..., help="Candidate id."),
                second: str = typer.Argument(..., help="Candidate id.")) -> None:
        """Two candidates side by side: scores per stage (differences paired on common seeds) and per task, then both codes."""
        a, b = _get(campaign_dir, first), _get(campaign_dir, second)
        from rich.columns import Columns
        from rich.console import Console
        from rich.panel import Panel
        from rich.syntax import Syntax
        from rich.table import Table

        table = Table(title=f"{a['id']} vs {b['id']}")
        table.add_column("metric", style="bold")
        table.add_column(f"{a['id']} ({a['name']})")
        table.add_column(f"{b['id']} ({b['name']})")
        table.add_column("difference")
        def diff(x: Any, y: Any) -> str:
            return "—" if x is None or y is None else f"{x - y:+.4f}"
        paired = _paired_pair(campaign_dir, a["id"], b["id"])
        table.add_row("status", a["status"], b["status"], "")
        for label, key, se in (("screen", "screen_fitness", None), ("fitness", "fitness", "fitness_se"),
                               ("held-out", "heldout", "heldout_se")):
            d = paired.get(key)
            table.add_row(label, format_score(a[key], a.get(se) if se else None), format_score(b[key], b.get(se) if se else None),
                          diff(a[key], b[key]) if d is None else f"{format_signed(d.difference, d.se if d.se == d.se else None)} (paired, n={d.n})")
        ta = (a["metrics"].get("fitness") or {}).get("per_task") or {}
        tb = (b["metrics"].get("fitness") or {}).get("per_task") or {}
        for task in sorted(set(ta) | set(tb)):
            table.add_row(f"  {task}", format_score(ta.get(task)), format_score(tb.get(task)), diff(ta.get(task), tb.get(task)))
        console = Console()
        console.print(table)
        console.print(Columns([Panel(Syntax(r["code"] or "", "python"), title=r["id"]) for r in (a, b)]))
