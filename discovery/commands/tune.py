"""`prefdisco tune DIR [--top K] [--trials N] [--json]`: equal-budget tuning of finalists and baselines.

The studies and results live in the campaign's database (see `discovery.tuning`), so a killed
`prefdisco tune` is resumed by running the same command again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

import typer

from discovery.commands.options import config_options
from discovery.commands.views import format_score
from discovery.tuning.config import TuningConfig


def _executor_settings(campaign_dir: Path) -> dict[str, Any]:
    """The campaign's executor lines (what `prefdisco run` evaluated with)."""
    from discovery.archive.campaign_dir import CampaignDir

    from discovery.sandbox import SandboxLimits  # the sandbox reads the campaign's reference cache

    cfg = CampaignDir.open(campaign_dir).config()
    cache_dir = cfg.cascade.cache_dir
    return {"kind": cfg.executor, "num_workers": cfg.workers, "ray_address": cfg.ray_address,
            "num_gpus_per_worker": cfg.num_gpus_per_worker,
            "limits": SandboxLimits(cache_dir=cache_dir) if cache_dir else None}


def register(app: typer.Typer) -> None:
    @app.command("tune")
    @config_options(TuningConfig, flags={"top_k": "--top", "heartbeat_interval_s": "--heartbeat"},
                    exclude=("baselines",))
    def tune(
        campaign_dir: Path = typer.Argument(..., help="Campaign directory (from `prefdisco run`)."),
        baselines: str = typer.Option("all", "--baselines",
                                      help="'all' campaign baselines, or a comma list (dpo is always in)."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Evaluation workers (default: campaign's)."),
        executor: Optional[str] = typer.Option(None, "--executor", help="local or ray (default: campaign's)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address."),
        as_json: bool = typer.Option(False, "--json", help="Print results and the claim as JSON."),
        *,
        config: TuningConfig,
    ) -> None:
        """Tune beta, learning rate and loss constants for the top-K candidates and the baselines
        (equal budget) on a training split of the held-out suite's tier (its regime on other seeds),
        then score them on the held-out suite at those settings; resumable (studies live in the
        campaign database). The verdict is held-out, tuned finalists vs tuned DPO, paired by seed."""
        from discovery.executors import make_executor
        from discovery.tuning.tuner import Tuner

        settings = _executor_settings(campaign_dir)
        if workers is not None:
            settings["num_workers"] = workers
        if executor is not None:
            settings["kind"] = executor
        if ray_address is not None:
            settings["ray_address"] = ray_address
        names = None if baselines.strip().lower() == "all" else [b.strip() for b in baselines.split(",") if b.strip()]
        cfg = dataclasses.replace(config, baselines=names)
        trials = cfg.trials
        kind = settings.pop("kind")
        with make_executor(kind, **settings) as ex:
            tuner = Tuner(campaign_dir, cfg, ex)
            try:
                out = tuner.run()
            finally:
                tuner.close()
        if as_json:
            typer.echo(json.dumps(out, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"tuned vs untuned ({trials} trials per loss)")
        for col in ("id", "name", "fitness (search)", "split untuned", "split tuned", "held-out",
                    "tuned held-out", "tuned params", "trials c/p/f"):
            table.add_column(col, overflow="fold")
        for r in out["results"]:
            params = ", ".join(f"{k}={v:.3g}" for k, v in sorted(r["params"].items()))
            table.add_row(r["candidate_id"], r["name"], format_score(r["untuned_fitness"], r["untuned_fitness_se"]),
                          format_score(r["default_trial_fitness"]),
                          format_score(r["tuned_fitness"], r["tuned_fitness_se"]),
                          format_score(r["untuned_heldout"], r["untuned_heldout_se"]),
                          format_score(r["tuned_heldout"], r["tuned_heldout_se"]), params,
                          f"{r['trials_complete']}/{r['trials_pruned']}/{r['trials_failed']}")
        console = Console()
        console.print(table, width=None if console.is_terminal else 160)  # piped: do not squeeze to 80 columns
        split = next((r["tuning_suite"] for r in out["results"] if r.get("tuning_suite")), "the held-out tier")
        typer.echo(f"tuned on {split}: the held-out suite's tier and regime on seeds it never uses. beta/lr are "
                   "in the held-out suite's units (a trial scales its beta sweep and learning rate by one factor "
                   "each; trial 0 = untuned); the tuned held-out runs use those factors.")
        typer.echo(out["claim"]["text"])
