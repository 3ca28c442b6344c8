"""Tier ``spa`` for benchmark suites: score a candidate loss by the gold reward it reaches after
the SPA loop from a small gold seed (self-generated, self-labelled, noisy data in between).

A suite group with ``tier: spa`` carries the tinylm reference knobs (``model``, ``sft``, ``data``)
and an ``spa`` mapping with the rest of an ``SPAConfig`` (``data``, ``sampling``, ``judge``,
``refinement``, ``train``). The grid's seed is the SPA seed, beta is the DPO/judge beta and
noise flips gold seed labels. The returned ``RunResult`` is scored by the suite's usual formula
(gain in gold reward over pi_init, KL penalty beyond the group's budget).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from evaluators.results import RunResult
from evaluators.suites import RunSpec
from preference_data.spa.config import spa_config_from_dict

DIVERGE_KL = 60.0   # same guard as the tinylm tier: beyond this a run is flagged "diverged"


def spa_config_for(spec: RunSpec, cache_dir: Path | str | None) -> Any:
    """The SPAConfig of one suite instance."""
    raw = {k: dict(v) for k, v in (spec.config.get("spa") or {}).items()}
    raw["task"] = {"name": spec.task, "params": dict(spec.task_params)}
    raw["reference"] = {k: dict(spec.config.get(k) or {}) for k in ("model", "sft", "data")}
    train = raw.setdefault("train", {})
    train["beta"] = spec.beta
    group_train = spec.config.get("train") or {}
    if set(group_train) - {"lr"}:
        raise ValueError(f"spa tier: a group's train section takes only lr (the override "
                         f"Suite.with_overrides sets); put {sorted(set(group_train) - {'lr'})} under spa.train")
    if "lr" in group_train:
        train["lr"] = group_train["lr"]
    raw["seed"] = spec.seed
    raw["cache_dir"] = str(cache_dir) if cache_dir is not None else None
    return spa_config_from_dict(raw)


def reference_specs(spec: RunSpec, cache_dir: Path | str | None = None) -> list[tuple[Any, int, Any]]:
    """The cached reference one SPA run starts from (built by the parent before the job)."""
    from evaluators.tasks import make_task
    from evaluators.tinylm_config import TinyLMConfig

    cfg = spa_config_for(spec, cache_dir)
    tcfg = TinyLMConfig.from_dict({"model": cfg.reference.model, "sft": cfg.reference.sft,
                                   "data": cfg.reference.data})
    return [(make_task(cfg.task.name, **cfg.task.params), cfg.seed, tcfg)]


def run_spa_tier(spec: RunSpec, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any],
                 cache_dir: Path | str | None, device: str | None = None) -> RunResult:
    from preference_data.spa.pipeline import run_spa

    start = time.perf_counter()
    cfg = spa_config_for(spec, cache_dir)
    result = run_spa(cfg, loss_fn, loss_kwargs=loss_kwargs, seed_noise=spec.noise, device=device)
    final = result.final
    flags = sorted({f for s in result.stages for f in s.flags})
    if len(result.stages) < cfg.iterations + 1 and not flags:
        flags.append("error")
    if math.isfinite(final.kl) and final.kl > DIVERGE_KL:
        flags.append("diverged")
    return RunResult(
        task=spec.task, tier="spa", seed=spec.seed, beta=spec.beta, noise=spec.noise,
        gold_reward=final.gold_reward, kl=final.kl, win_rate=final.win_rate,
        accuracy=final.heldout_accuracy, flags=flags, wall_time_s=time.perf_counter() - start,
        curve=[x for s in result.stages for x in s.curve],
        extra={
            "reference_reward": result.reference_reward, "reward_range": result.reward_range,
            "message": final.message, "gold_fraction": result.gold_fraction,
            "seed_only_gold_reward": result.stages[0].gold_reward,
            "stages": [{"iteration": s.iteration, "gold_reward": s.gold_reward, "kl": s.kl,
                        "label_accuracy": s.label_accuracy, "flagged_share": s.flagged_share,
                        "pairs": s.pairs, "steps": s.steps} for s in result.stages],
        },
    )
