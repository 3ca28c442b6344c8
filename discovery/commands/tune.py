"""`prefdisco tune DIR [--top K] [--trials N] [--json]`: equal-budget tuning of finalists and baselines.

The studies and results live in the campaign's database (see `discovery.tuning`), so a killed
`prefdisco tune` is resumed by running the same command again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from discovery.commands.views import format_score
from discovery.errors import UserError


def _executor_settings(campaign_dir: Path) -> dict[str, Any]:
    """The campaign's executor lines (absent keys: this machine's sandbox pool)."""
    import yaml

    path = campaign_dir / "config.resolved.yaml"
    if not path.exists():
        raise UserError(f"{campaign_dir} is not a campaign directory (no config.resolved.yaml)")
    cfg = yaml.safe_load(path.read_text()) or {}
    from discovery.sandbox import SandboxLimits  # the sandbox reads the campaign's reference cache

    cache_dir = (cfg.get("cascade") or {}).get("cache_dir")
    return {"kind": cfg.get("executor") or "local", "num_workers": int(cfg.get("workers") or 2),
            "ray_address": cfg.get("ray_address"), "num_gpus_per_worker": float(cfg.get("num_gpus_per_worker") or 0),
            "limits": SandboxLimits(cache_dir=cache_dir) if cache_dir else None}


def register(app: typer.Typer) -> None:
    @app.command("tune")
    def tune(
        campaign_dir: Path = typer.Argument(..., help="Campaign directory (from `prefdisco run`)."),
        top: int = typer.Option(3, "--top", help="Discovered finalists to tune (best untuned fitness first)."),
        trials: int = typer.Option(20, "--trials", help="Optuna trials per loss (the same for every loss)."),
        baselines: str = typer.Option("all", "--baselines",
                                      help="'all' campaign baselines, or a comma list (dpo is always in)."),
        heldout: bool = typer.Option(True, "--heldout/--no-heldout", help="Held-out suite at the tuned settings."),
        pruning: bool = typer.Option(True, "--pruning/--no-pruning", help="Median pruning on per-seed means."),
        seed: int = typer.Option(0, "--seed", help="Sampler seed."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Evaluation workers (default: campaign's)."),
        executor: Optional[str] = typer.Option(None, "--executor", help="local or ray (default: campaign's)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address."),
        heartbeat: int = typer.Option(10, "--heartbeat", help="Seconds between trial heartbeats; a killed run's "
                                                               "trial is retried after 3x this."),
        as_json: bool = typer.Option(False, "--json", help="Print results and the claim as JSON."),
    ) -> None:
        """Tune beta, learning rate and loss constants for the top-K candidates and the baselines
        (equal budget), then score them on the held-out suite; resumable (studies live in the
        campaign database). The winner's claim is made against tuned DPO."""
        from discovery.executors import make_executor
        from discovery.tuning import Tuner, TuningConfig

        if top < 0 or trials < 1 or heartbeat < 1:
            raise UserError("--top must be >= 0, --trials >= 1 and --heartbeat >= 1")
        settings = _executor_settings(campaign_dir)
        if workers is not None:
            settings["num_workers"] = workers
        if executor is not None:
            settings["kind"] = executor
        if ray_address is not None:
            settings["ray_address"] = ray_address
        names = None if baselines.strip().lower() == "all" else [b.strip() for b in baselines.split(",") if b.strip()]
        cfg = TuningConfig(top_k=top, trials=trials, baselines=names, heldout=heldout, seed=seed, pruning=pruning,
                           heartbeat_interval_s=heartbeat, grace_period_s=3 * heartbeat)
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
        for col in ("id", "name", "fitness", "tuned fitness", "held-out", "tuned held-out", "tuned params",
                    "trials c/p/f"):
            table.add_column(col, overflow="fold")
        for r in out["results"]:
            params = ", ".join(f"{k}={v:.3g}" for k, v in sorted(r["params"].items()))
            table.add_row(r["candidate_id"], r["name"], format_score(r["untuned_fitness"], r["untuned_fitness_se"]),
                          format_score(r["tuned_fitness"], r["tuned_fitness_se"]),
                          format_score(r["untuned_heldout"], r["untuned_heldout_se"]),
                          format_score(r["tuned_heldout"], r["tuned_heldout_se"]), params,
                          f"{r['trials_complete']}/{r['trials_pruned']}/{r['trials_failed']}")
        Console().print(table)
        typer.echo("beta/lr are in the fitness suite's units: a trial scales every beta of the sweep and every "
                   "learning rate by one factor each (trial 0 = untuned); held-out runs use the tuned factors.")
        typer.echo(f"claim: {out['claim']['text']}")
