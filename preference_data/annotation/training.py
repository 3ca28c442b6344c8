"""Annotation project -> aggregated pairs -> a model trained granularly on the `hf` tier -> a
per-group report. What `prefdisco annotate train` runs.

Steps, each leaving a file in the output directory:
1. ``judgments.jsonl``: every judgment of the project (`annotate export`);
2. ``pairs.jsonl`` + ``aggregation_report.json``: `aggregate` per group and per dimension, so each
   pair carries its group's population weight, its group and its dimension;
3. ``train_pairs.jsonl``: the same pairs without provenance (what the trainer reads);
4. ``model/final``: the policy trained by the `hf` tier (TRL) with the group-robust objective
   (the worst-off group's loss drives training) and dimension-conditioned prompts;
5. ``result.json`` (the tier's full result) and ``group_report.json``: held-out accuracy, loss and
   reward margin per group, the worst group, and the final group weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluators.typed_config import build_dataclass, read_yaml_file
from preference_data.aggregation.pipeline import AggregationConfig, aggregate, write_pairs


class TrainingError(ValueError):
    """Bad training input (no pairs, bad config); the message names the fix."""


def _default_aggregation() -> AggregationConfig:
    return AggregationConfig(by_group=True, by_dimension=True)


def _default_hf() -> dict[str, Any]:
    return {"objective": "group-robust", "condition_on_dimension": True, "steps": 50, "learning_rate": 1e-4,
            "batch_size": 8, "logging_steps": 5, "max_new_tokens": 16, "eval_size": 64}


@dataclass
class AnnotationTrainConfig:
    """`prefdisco annotate train --config FILE`: an `aggregation:` and an `hf:` section."""

    loss: str = "dpo"   # registered loss name
    aggregation: AggregationConfig = field(default_factory=_default_aggregation)
    hf: dict[str, Any] = field(default_factory=_default_hf)  # evaluators.hf.HFTierConfig fields


def load_train_config(path: str | Path | None = None, *, objective: str | None = None, steps: int | None = None,
                      loss: str | None = None) -> AnnotationTrainConfig:
    raw = read_yaml_file(path, what="train config", example="configs/annotation/train.yaml",
                         error=TrainingError) if path else {}
    raw = dict(raw or {})
    agg = {**asdict(_default_aggregation()), **(raw.pop("aggregation", None) or {})}
    hf = {**_default_hf(), **(raw.pop("hf", None) or {})}
    cfg: AnnotationTrainConfig = build_dataclass(AnnotationTrainConfig, {**raw, "aggregation": agg, "hf": hf},
                                                 "train config", TrainingError)
    if objective is not None:
        cfg.hf["objective"] = objective
    if steps is not None:
        cfg.hf["steps"] = steps
    if loss is not None:
        cfg.loss = loss
    from evaluators.hf import HFTierConfig
    try:
        HFTierConfig.from_dict({**cfg.hf, "model": "check", "dataset": "check"})
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"train config hf: {exc}") from None
    return cfg


def training_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the trainer reads: TRL columns plus weight, group and dimension (no provenance)."""
    return [{k: p.get(k) for k in ("prompt", "chosen", "rejected", "weight", "group", "dimension")} for p in pairs]


def train_from_project(db_url: str, project: str, model: str, out: str | Path,
                       cfg: AnnotationTrainConfig | None = None) -> dict[str, Any]:
    """Run every step (see the module docstring); returns the per-group report."""
    from candidate_losses import get_loss
    from evaluators.hf import HFTierConfig, run_hf_tier
    from preference_data.aggregation.judgments import parse_judgments
    from preference_data.annotation.sources import load_population_shares
    from preference_data.annotation.store import export_judgments, write_export

    cfg = cfg or AnnotationTrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = export_judgments(db_url, project)
    write_export(rows, out / "judgments.jsonl")
    judgments = parse_judgments(rows)
    if not judgments:
        raise TrainingError(f"project {project!r} has no judgments yet; collect some with `annotate serve`")
    agg_cfg = cfg.aggregation
    if agg_cfg.weighting != "none" and not agg_cfg.population_shares:
        agg_cfg.population_shares = load_population_shares(project, db_url)
    result = aggregate(judgments, agg_cfg)
    if not result.pairs:
        raise TrainingError("aggregation produced no pairs (every vote tied or only text answers); "
                            "collect more judgments")
    write_pairs(result.pairs, out / "pairs.jsonl")
    (out / "aggregation_report.json").write_text(json.dumps(result.report, indent=2, default=str))
    write_pairs(training_rows(result.pairs), out / "train_pairs.jsonl")
    try:
        loss = get_loss(cfg.loss)
    except KeyError as exc:
        raise TrainingError(str(exc.args[0])) from None
    hf_cfg = HFTierConfig.from_dict({**cfg.hf, "model": model, "dataset": str(out / "train_pairs.jsonl"),
                                     "output_dir": str(out / "model"), "save_model": True})
    import contextlib
    import sys
    try:
        with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; stdout stays the report
            tier = run_hf_tier(loss.fn, hf_cfg)
    except OSError as exc:  # transformers: no such local directory / hub id (or offline)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"cannot load --model {model} ({first[:200]}); pass a local model directory "
                            "or a reachable hub id") from None
    (out / "result.json").write_text(json.dumps(tier, indent=2, default=str))
    extra = tier["extra"]
    report = {
        "project": project, "loss": cfg.loss, "objective": hf_cfg.objective,
        "condition_on_dimension": hf_cfg.condition_on_dimension, "method": agg_cfg.method,
        "weighting": agg_cfg.weighting, "group_attribute": result.report["group_attribute"],
        "judgments": len(judgments), "pairs": len(result.pairs), "train_pairs": extra["train_pairs"],
        "eval_pairs": extra["eval_pairs"], "aggregation_groups": result.report["groups"],
        "per_group": extra.get("per_group", {}), "worst_group": extra.get("worst_group"),
        "group_weights": extra.get("group_weights"), "eval_accuracy": tier["accuracy"],
        "model_dir": str(out / "model" / "final"), "out": str(out),
    }
    (out / "group_report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def format_group_report(report: dict[str, Any]) -> str:
    lines = [f"{report['project']}: {report['judgments']} judgments -> {report['pairs']} pairs "
             f"({report['method']}, by {report['group_attribute']} and dimension) -> {report['loss']} with the "
             f"{report['objective']} objective; model in {report['model_dir']}",
             f"{'group':<16}{'held-out pairs':>15}{'accuracy':>10}{'loss':>9}{'margin':>9}{'weight':>9}"]
    weights = report.get("group_weights") or {}
    ranked = sorted(report["per_group"].items(),  # worst group first
                    key=lambda kv: (kv[1]["accuracy"] if kv[1]["accuracy"] is not None else 2.0, kv[0]))
    for g, r in ranked:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        loss = "-" if r["loss"] is None else f"{r['loss']:.4f}"
        margin = "-" if r["reward_margin"] is None else f"{r['reward_margin']:.4f}"
        w = f"{weights[g]:.3f}" if g in weights else "-"
        lines.append(f"{g:<16}{r['pairs']:>15}{acc:>10}{loss:>9}{margin:>9}{w:>9}")
    worst = report.get("worst_group")
    if worst:
        lines.append(f"worst group: {worst['group']} (held-out accuracy {worst['accuracy']:.3f}); "
                     f"report: {report['out']}/group_report.json")
    return "\n".join(lines)
