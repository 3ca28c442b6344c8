"""`prefdisco report DIR [--out PATH] [--json]`: the static HTML campaign report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from discovery.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        campaign_dir: Path = typer.Argument(..., help="Campaign directory (holds campaign.db)."),
        out: Optional[Path] = typer.Option(
            None, "--out", help="HTML file to write (default DIR/report.html); a folder (no .html suffix) gets index.html."),
        as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON (for scripts)."),
    ) -> None:
        """Write a self-contained HTML report: summary, leaderboard, and every candidate's code, diff, lineage and plots."""
        from discovery.review.report import write_report

        if not campaign_dir.is_dir():
            raise UserError(f"{campaign_dir} is not a directory; pass a campaign directory made by `prefdisco run`")
        summary = write_report(campaign_dir, out)
        if as_json:
            typer.echo(json.dumps(summary.__dict__, indent=2))
            return
        typer.echo(f"wrote {summary.path} ({summary.candidates} candidates, {summary.evaluated} on the leaderboard, "
                   f"{summary.images} plots, {summary.bytes / 1e6:.1f} MB, {summary.wall_time_s:.1f}s)")
