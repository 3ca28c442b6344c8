"""`prefdisco evaluate`: score one loss (a registered name, or an untrusted FILE run through the
sandbox) on a benchmark suite; print a table, optionally write the JSON result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from discovery.errors import UserError


def _evaluate_file(file: Path, suite: str, seeds: int | None, cache_dir: str,
                   overrides: dict[str, Any], timeout_s: float, settings: list[str]) -> dict[str, Any]:
    """Untrusted candidate code: never exec'd here, only inside a sandbox worker (LLM judges, if
    the suite has any, run here afterwards: the sandbox has no network)."""
    from discovery.sandbox import SandboxLimits, SandboxPool
    from evaluators.jobs import sandbox_read_paths

    code = file.read_text(encoding="utf-8", errors="replace")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    limits = SandboxLimits(wall_timeout_s=timeout_s, cpu_time_s=int(timeout_s) + 60,
                           address_space_mb=16384, cache_dir=cache_dir,
                           readonly_dirs=tuple(sandbox_read_paths([suite], settings)))
    kwargs = {"suite": suite, "seeds": seeds, "loss_name": file.stem, "cache_dir": cache_dir,
              "suite_set": settings or None, **overrides}
    with SandboxPool(size=1, limits=limits) as pool:
        result = pool.run_job(code, "evaluators.jobs:evaluate_job", kwargs, timeout_s=timeout_s)
    if not result.ok:
        raise UserError(f"{file}: rejected by the sandbox [{result.failure_class}]: {result.message}"
                        " (run `prefdisco check FILE` for details)")
    return result.value


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['loss']} on suite {result['suite']}")
    for col in ("tier/task", "seed", "noise", "beta", "gold", "ref", "KL", "win", "acc",
                "score", "flags", "time s"):
        table.add_column(col, justify="left" if col in ("tier/task", "flags") else "right")
    for run in result["runs"]:
        extra = run.get("extra") or {}
        params = ",".join(f"{k}={v}" for k, v in sorted((extra.get("task_params") or {}).items()))
        table.add_row(
            f"{run['tier']}/{run['task']}" + (f"[{params}]" if params else ""),
            str(run["seed"]), f"{run['noise']:g}", f"{run['beta']:g}", _fmt(run["gold_reward"]),
            _fmt(extra.get("reference_reward")), _fmt(run["kl"], 2), _fmt(run["win_rate"]),
            _fmt(run["accuracy"]), _fmt(extra.get("score")), ",".join(run["flags"]),
            _fmt(run["wall_time_s"], 1),
        )
    console = Console(width=max(Console().width, 132))
    console.print(table)
    for task, score in (result.get("per_task") or {}).items():
        console.print(f"  {task}: {_fmt(score)}")
    console.print(f"[bold]fitness {_fmt(result['fitness'], 4)} ± {_fmt(result['fitness_se'], 4)}"
                  f"[/bold]  (s.e. over seeds; {_fmt(result.get('wall_time_s'), 1)} s)")
    for line in _per_beta_lines(result):
        console.print(line)


def _per_beta_lines(result: dict[str, Any]) -> list[str]:
    """Reward and KL per beta (mean over seeds), and the LLM judge's calls, for hf suites."""
    runs = [r for r in result["runs"] if r["tier"] == "hf"]
    by_key: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in runs:
        by_key.setdefault((r["task"], r["beta"]), []).append(r)
    lines = []
    for (task, beta), rs in sorted(by_key.items()):
        def mean(key: str) -> float | None:
            xs = [r[key] for r in rs if r[key] is not None]
            return sum(xs) / len(xs) if xs else None
        lines.append(f"{task} beta={beta:g}: reward {_fmt(mean('gold_reward'))} KL {_fmt(mean('kl'))} "
                     f"win {_fmt(mean('win_rate'))} (n={len(rs)})")
    judged = [r["extra"]["judge"] for r in runs if (r.get("extra") or {}).get("judge")]
    if judged:
        lines.append(f"judge: {sum(j['requests'] for j in judged)} calls, "
                     f"{sum(j['cache_hits'] for j in judged)} from the cache")
    return lines


def _write_frontier(path: Path, results: list[dict[str, Any]]) -> None:
    """Reward vs KL, one line per loss (points: the beta sweep, mean over seeds), per task, as SVG."""
    from discovery.review.plots import PALETTE, SERIES_COLOURS, Chart, _frontier, side_by_side

    tasks = sorted({r["task"] for result in results for r in result["runs"]})
    charts = []
    for task in tasks:
        chart = Chart(f"reward vs KL — {task}", "KL(π ‖ π_ref) [nats]", "reward", width=460, height=300)
        for i, result in enumerate(results):
            front = _frontier([r for r in result["runs"] if r["task"] == task])
            dpo = result["loss"].lower() == "dpo"
            colour = PALETTE["dpo"] if dpo else SERIES_COLOURS[i % len(SERIES_COLOURS)]
            chart.line([p[1] for p in front], [p[2] for p in front], colour=colour, dash="6 4" if dpo else None,
                       label=result["loss"])
            chart.points([p[1] for p in front], [p[2] for p in front], colour=colour,
                         shape="square" if dpo else "circle")
        charts.append(chart)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(side_by_side(charts) if len(charts) > 1 else charts[0].svg())


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        loss: str = typer.Option(..., "--loss", help="Registered loss name (e.g. dpo) or a .py "
                                 "file with one candidate loss (run in the sandbox)."),
        suite: str = typer.Option("screen", "--suite", help="Suite name (screen, fitness, "
                                  "heldout) or path to a suite YAML file."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write the result JSON here."),
        seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Seeds per task group "
                                            "(default: as declared in the suite)."),
        beta: Optional[float] = typer.Option(None, "--beta", help="Replace the suite's beta sweep."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Replace the preference-training lr."),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Reference-model cache "
                                                 "(default: $PREFDISCO_CACHE or ~/.cache/prefdisco)."),
        timeout: float = typer.Option(1800.0, "--timeout", help="Sandbox wall-clock limit (s), FILE only."),
        settings: Optional[list[str]] = typer.Option(None, "--set", help="KEY.PATH=VALUE laid over every "
                                                     "group of the suite (repeatable), e.g. --set "
                                                     "model.policy=/models/gpt2-imdb --set train.steps=100."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Write the reward-vs-KL frontier (SVG), one "
                                            "line per loss; DPO is evaluated too unless it is the loss."),
    ) -> None:
        """Train and score one loss on a benchmark suite (gold reward, KL, win rate, fitness)."""
        from evaluators.suites import load_suite

        settings = list(settings or [])
        try:
            suite_obj = load_suite(suite, settings)
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(str(exc)) from None
        if Path(suite).suffix in (".yaml", ".yml") and Path(suite).is_file():  # absolute: workers run elsewhere
            suite = str(Path(suite).resolve())
        overrides: dict[str, Any] = {}
        if beta is not None:
            overrides["beta_override"] = beta
        if lr is not None:
            overrides["lr_override"] = lr
        from evaluators.reference import default_cache_dir

        cache = str((cache_dir or default_cache_dir()).expanduser().resolve())
        path = Path(loss)
        if path.suffix == ".py" or path.is_file():
            if not path.is_file():
                raise UserError(f"no such file: {loss} (pass a .py file or a registered loss name)")
            result = _evaluate_file(path, suite, seeds, cache, overrides, timeout, settings)
        else:
            from candidate_losses import get_loss
            from evaluators import evaluate_loss

            try:
                spec = get_loss(loss)
            except KeyError as exc:
                raise UserError(str(exc.args[0])) from None
            from evaluators.hf_data import HFSourceError

            try:
                result = evaluate_loss(spec, suite_obj, seeds=seeds, cache_dir=cache, **overrides).to_dict()
            except HFSourceError as exc:
                raise UserError(str(exc)) from None
        _print_table(result)
        if plot is not None:
            results = [result]
            if result["loss"].lower() != "dpo":
                from evaluators import evaluate_loss

                results.insert(0, evaluate_loss("dpo", suite_obj, seeds=seeds, cache_dir=cache, **overrides).to_dict())
            _write_frontier(plot, results)
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(result, indent=2))
