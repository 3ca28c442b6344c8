"""`prefdisco spa CONFIG`: run the SPA self-generated-preference loop and report every stage.

    prefdisco spa configs/spa.yaml                       # table: per iteration label agreement, gold reward, KL
    prefdisco spa configs/spa.yaml --json                # the same as JSON (plus every stage field)
    prefdisco spa configs/spa.yaml --out runs/spa0       # also write pairs.jsonl (TRL format) + stages.json
    prefdisco spa configs/spa.yaml --print-config        # the fully resolved config, then exit
    prefdisco spa configs/spa_hf.yaml                    # `backend: hf`: any HF causal LM + TRL dataset
                                                         # (+ win rates vs pi_init: the `evaluation` section)

Only registered (trusted) losses run here (``--loss``); to score untrusted candidate code on
the SPA loop use the ``spa`` suite (``prefdisco evaluate --suite spa``), which runs in the sandbox.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from discovery.errors import UserError


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _stage_line(stage: Any, backend: str) -> str:
    """One table row. tinylm: labels and policy against the gold reward; hf (no gold reward): the
    judge's agreement with the dataset's own labels (n/a for a prompt file), KL, comparison judges."""
    name = "seed DPO" if stage.iteration == 0 else f"iter {stage.iteration}"
    if backend == "hf":
        agreement = _fmt(stage.label_agreement) if stage.agreement_pairs else "n/a"
        others = "".join(f"  {k} agrees {_fmt(v)}" for k, v in stage.compare_agreement.items())
        return (f"{name:>9}  pairs {stage.pairs:5d}  label agreement {agreement}  "
                f"flagged {_fmt(stage.flagged_share, '.2f')}  KL {_fmt(stage.kl, '.2f')}{others}"
                + _hf_evaluation(stage))
    return (f"{name:>9}  pairs {stage.pairs:5d}  label agreement {_fmt(stage.label_accuracy)}  "
            f"flagged {_fmt(stage.flagged_share, '.2f')}  gold reward {_fmt(stage.gold_reward)}  "
            f"KL {_fmt(stage.kl, '.2f')}  win {_fmt(stage.win_rate)}  length {_fmt(stage.response_length, '.1f')}  "
            f"chosen longer {_fmt(stage.chosen_longer, '.2f')}"
            + (f"  FLAGS {','.join(stage.flags)}: {stage.message}" if stage.flags else ""))


def _hf_evaluation(stage: Any) -> str:
    """An hf row's evaluation columns (pi_i vs pi_init) and the self-labels' length bias, where measured."""
    parts = []
    if math.isfinite(stage.reward_model_score):
        parts.append(f"RM {_fmt(stage.reward_model_score)} (init {_fmt(stage.evaluation.get('init_reward_model_score'))})"
                     f"  RM win {_fmt(stage.reward_model_win_rate)}")
    if math.isfinite(stage.judge_win_rate):
        parts.append(f"judge win {_fmt(stage.judge_win_rate)}")
    if math.isfinite(stage.judge_lc_win_rate):
        parts.append(f"LC win {_fmt(stage.judge_lc_win_rate)}")
    if "judge_error" in stage.evaluation:
        parts.append(f"judge failed ({stage.evaluation['judge_error'][:80]})")
    if math.isfinite(stage.chosen_longer):
        parts.append(f"chosen longer {_fmt(stage.chosen_longer, '.2f')}")
    if math.isfinite(stage.response_length):
        parts.append(f"length {_fmt(stage.response_length, '.1f')} (init {_fmt(stage.init_response_length, '.1f')})")
    return "".join(f"  {p}" for p in parts)


def register(app: typer.Typer) -> None:
    @app.command("spa")
    def spa(
        config: Path = typer.Argument(..., help="SPA config YAML (configs/spa.yaml; `backend: hf` as in configs/spa_hf.yaml)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
        out: Optional[Path] = typer.Option(None, "--out", help="Directory for pairs.jsonl (TRL) and stages.json."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Override the config's seed."),
        loss: Optional[str] = typer.Option(None, "--loss", help="Registered loss name (overrides train.loss)."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu / cuda (default: $PREFDISCO_DEVICE or auto)."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
        deviations: bool = typer.Option(False, "--deviations",
                                        help="Print how this backend differs from the authors' released SPA, and exit."),
    ) -> None:
        """Seed DPO, then SPA iterations: sample, self-label, refine, train. Prints per iteration the
        self-labels' agreement with the gold reward, the policy's gold reward and its KL to pi_init
        (`backend: hf`: agreement with the dataset's own labels, or n/a, KL, and with an `evaluation`
        section the reward-model / LLM-judge win rates over pi_init and the answer lengths)."""
        from preference_data.spa.config import dump_spa_config
        from preference_data.spa.hf_config import SPAHFConfig, load_spa_yaml

        try:
            cfg = load_spa_yaml(config)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        hf = isinstance(cfg, SPAHFConfig)
        if seed is not None:
            cfg.seed = seed
        if out is not None:
            cfg.out_dir = str(out)
        if loss is not None:
            cfg.train.loss = _check_loss(loss)
        if device is not None and hf:
            cfg.train.device = device
        if print_config:
            typer.echo(dump_spa_config(cfg), nl=False)
            return
        if deviations:
            if hf:
                from preference_data.spa.hf import HF_DEVIATIONS as text
            else:
                from preference_data.spa import DEVIATIONS as text
            typer.echo(text, nl=False)
            return

        from evaluators.results import finite_or_none

        def show(stage: Any) -> None:
            if not as_json:
                typer.echo(_stage_line(stage, cfg.backend))

        if not as_json:
            typer.echo(_header(cfg))
        try:
            if hf:
                from preference_data.spa.hf import run_spa_hf

                result = run_spa_hf(cfg, on_stage=show)
            else:
                from preference_data.spa.pipeline import run_spa

                result = run_spa(cfg, device=device, on_stage=show)
        except (ValueError, OSError) as exc:
            raise UserError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        if as_json:
            typer.echo(json.dumps(finite_or_none(result.to_dict()), indent=2))
            return
        if not hf:
            typer.echo(f"pi_init gold reward {_fmt(result.reference_reward)}; ", nl=False)
        typer.echo(f"{len(result.store)} pairs stored" + (f" in {out}/pairs.jsonl" if out else ""))


def _header(cfg: Any) -> str:
    refinement = f"refinement {'on' if cfg.refinement.enabled else 'off'}"
    if cfg.backend == "hf":
        return f"SPA (hf) on {cfg.model} / {cfg.data.dataset} seed {cfg.seed}: judge {cfg.judge.kind}, {refinement}"
    total = cfg.data.seed_pairs + sum(cfg.data.prompts_per_iteration)
    return (f"SPA on {cfg.task.name} seed {cfg.seed}: {cfg.data.seed_pairs} gold pairs "
            f"({100 * cfg.data.gold_fraction:.1f} % of {total}), judge {cfg.judge.kind}, {refinement}")


def _check_loss(loss: str) -> str:
    from candidate_losses import list_losses

    names = {s.name for s in list_losses()}
    if loss.lower() not in names:
        raise UserError(f"unknown loss {loss!r}; registered: {', '.join(sorted(names))}")
    return loss.lower()
