"""`prefdisco run CONFIG [--out DIR] [--record]`, `prefdisco run --resume DIR` and
`prefdisco run --replay DIR --out NEW`: the main job."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from discovery.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        config: Optional[Path] = typer.Argument(None, help="Campaign YAML (e.g. configs/quickstart.yaml)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Campaign directory (default runs/<name>-<time>)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the campaign in this directory."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Override the config's seed."),
        heldout_top: Optional[int] = typer.Option(
            None, "--heldout-top", help="With --resume: evaluate the top K on the held-out suite now."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
        as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON."),
        record: bool = typer.Option(
            False, "--record", help="LLM campaigns: store every prompt, reply and token usage in "
                                    "DIR/transcript.jsonl, so `--replay DIR` can re-run it without the endpoint."),
        replay: Optional[Path] = typer.Option(
            None, "--replay", help="Re-run the recorded campaign in this directory from its transcript, asking "
                                   "no endpoint, into --out (its config is reused; the archive comes out the same)."),
    ) -> None:
        """Run a discovery campaign to its budget (Ctrl-C stops cleanly; --resume continues)."""
        from discovery.search.campaign import Campaign
        from discovery.config import dump_config, load_config

        if replay is not None:
            if config is not None or resume is not None or seed is not None:
                raise UserError("give --replay DIR alone (with --out NEW_DIR): the replay reuses DIR's config and seed")
            cfg = _replay_config(replay)
            if print_config:
                typer.echo(dump_config(cfg))
                return
            out_dir = out or Path("runs") / f"{cfg.name}-replay-{time.strftime('%Y%m%d-%H%M%S')}"
            campaign = Campaign.create(cfg, out_dir)
        elif (config is None) == (resume is None):
            raise UserError("give either a CONFIG file or --resume DIR (not both)")
        elif resume is not None:
            if record:
                raise UserError("--record starts with a campaign (prefdisco run CONFIG --record); a resumed "
                                "campaign keeps recording if it was started that way")
            campaign = Campaign.resume(resume)
            if heldout_top is not None:
                _heldout_now(campaign, heldout_top)
                return
        else:
            cfg = load_config(config)
            if seed is not None:
                cfg.seed = seed
            if record:
                cfg.proposer.llm.record = True
                _check(cfg)
            if print_config:
                typer.echo(dump_config(cfg))
                return
            out_dir = out or Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            campaign = Campaign.create(cfg, out_dir)
        try:
            result = campaign.run()
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        from discovery.commands.views import campaign_verdict_of

        result.verdict = campaign_verdict_of(result.out_dir).to_dict()  # vs tuned DPO where `prefdisco tune` ran
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        typer.echo(f"campaign {result.out_dir}: {result.candidates} candidates, {result.evaluated} fully evaluated "
                   f"({result.stopped_by}, {result.wall_time_s:.0f}s)")
        if result.dpo_fitness is not None:
            typer.echo(f"DPO fitness {result.dpo_fitness:.4f} ± {result.dpo_fitness_se or 0:.4f}")
        if result.best_id is not None:
            typer.echo(f"best on the search fitness {result.best_id}: {result.best_fitness:.4f} ± "
                       f"{result.best_fitness_se or 0:.4f}" + _paired_text(result.fitness_vs_dpo)
                       + " (fitness is what the search optimised, not the verdict)")
        typer.echo(f"review: prefdisco leaderboard {result.out_dir}")
        typer.echo((result.verdict or {}).get("text") or "no held-out verdict")


def _check(cfg) -> None:  # type: ignore[no-untyped-def]
    try:
        cfg.check()
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _replay_config(source: Path):  # type: ignore[no-untyped-def]
    """The recorded campaign's config, set to answer every prompt from its transcript."""
    from discovery.archive.campaign_dir import CampaignDir
    from discovery.proposers.transcript import transcript_path

    if not source.is_dir():
        raise UserError(f"--replay takes the directory of a recorded campaign; {source} is not a directory")
    transcript_path(source)  # a one-line error when DIR was not recorded
    recorded = CampaignDir.open(source).config()
    if recorded.proposer.kind != "llm":
        raise UserError(f"{source} ran the {recorded.proposer.kind} proposer; only LLM campaigns are replayed")
    recorded.proposer.llm.record = False
    recorded.proposer.llm.replay = str(Path(source).resolve())
    _check(recorded)
    return recorded


def _paired_text(d: dict | None) -> str:  # type: ignore[type-arg]
    if not d:
        return ""
    se = f"{d['se']:.4f}" if d.get("se") is not None else "n/a"
    return f", vs DPO {d['difference']:+.4f} ± {se} (paired s.e., n={d['n']})"

def _heldout_now(campaign, k: int) -> None:  # type: ignore[no-untyped-def]
    from discovery.archive.candidate import Status

    rows = campaign.db.all(status=Status.EVALUATED)
    finalists = sorted((r for r in rows if not r.is_baseline), key=lambda r: (-r.fitness, r.seq))[:k]
    dpo = [r for r in rows if r.is_dpo]
    try:
        campaign.evaluate_heldout(dpo + finalists)
    finally:
        campaign.close()
    from discovery.commands.views import campaign_verdict_of

    typer.echo(f"held-out suite evaluated for {len(finalists)} finalist(s) and DPO")
    typer.echo(campaign_verdict_of(campaign.out_dir).text)
