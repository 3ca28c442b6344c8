"""``evaluate_loss``: score one loss callable on a suite (runs every instance, then aggregates).

Runs are executed in-process, one after the other, with ``torch.set_num_threads(1)`` (restored
afterwards): deterministic, and it does not oversubscribe the shared cores; parallelism comes
from running several candidates in several sandbox workers. The loss callable is assumed to be
trusted *here*: untrusted candidate code reaches this function only inside a sandbox worker,
through ``evaluators.jobs.evaluate_job``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from evaluators.metrics import score_suite
from evaluators.results import RunResult, SuiteResult
from evaluators.suites import Suite, load_suite
from evaluators.tiers import get_tier


def _resolve_loss(loss: Any) -> tuple[Callable[..., Any], str]:
    """A LossSpec, a registered name, or a plain contract function -> (fn, display name)."""
    if isinstance(loss, str):
        from candidate_losses import get_loss

        spec = get_loss(loss)
        return spec.fn, spec.name
    fn = getattr(loss, "fn", None)
    if callable(fn) and hasattr(loss, "name"):
        return fn, str(loss.name)
    if callable(loss):
        return loss, getattr(loss, "__name__", "candidate")
    raise TypeError(f"expected a loss function, LossSpec or name, got {type(loss).__name__}")


def evaluate_loss(
    loss_fn: Any,
    suite: Suite | str,
    *,
    seeds: int | None = None,
    loss_kwargs: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    beta_override: float | list[float] | None = None,
    lr_override: float | None = None,
    loss_name: str | None = None,
    device: str | None = None,
    defer_judging: bool = False,
    instances: list[int] | None = None,
) -> SuiteResult:
    """Train and measure ``loss_fn`` on every instance of ``suite``; return runs + fitness.

    Runs with an LLM judge (``hf`` groups) are judged here, unless ``defer_judging`` (a sandboxed
    job has no network: the parent judges them with ``evaluators.hf_judging.finish_judging``)."""
    import torch

    from evaluators.reference import default_cache_dir

    fn, name = _resolve_loss(loss_fn)
    name = loss_name or name
    suite_obj = load_suite(suite) if isinstance(suite, (str, Path)) else suite
    suite_obj = suite_obj.with_overrides(seeds=seeds, betas=beta_override, lr=lr_override)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    kwargs = dict(loss_kwargs or {})

    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs: list[RunResult] = []
    try:
        specs_all = suite_obj.instances()
        if instances is not None:
            bad = [i for i in instances if not 0 <= i < len(specs_all)]
            if bad:
                raise ValueError(f"instances {bad} out of range: suite {suite_obj.name} has {len(specs_all)} runs")
            specs_all = [specs_all[i] for i in instances]
        for specs in _batches(specs_all):
            cpu_start = time.process_time()
            group_fn = get_tier(specs[0].tier).group_function()
            if group_fn is not None:  # all instances of the group in one pass
                batch = group_fn(specs, fn, kwargs, cache, device)
            else:
                batch = [get_tier(specs[0].tier).run_function()(specs[0], fn, kwargs, cache, device)]
            cpu_each = (time.process_time() - cpu_start) / len(specs)
            for spec, run in zip(specs, batch):
                run.extra["cpu_time_s"] = cpu_each  # vs wall: shows CPU contention
                run.extra["kl_budget"] = spec.kl_budget
                run.extra["task_params"] = dict(spec.task_params)
                run.extra["group"] = spec.group  # suite group index: what paired comparisons match on
                runs.append(run)
    finally:
        torch.set_num_threads(threads)
    if not defer_judging and any(run.extra.get("judge_pending") for run in runs):
        from evaluators.hf_judging import judge_runs

        judge_runs(runs, suite_obj, cache)
    result = SuiteResult(loss=name, suite=suite_obj.name, fitness=float("nan"), fitness_se=float("nan"),
                         runs=runs, wall_time_s=time.perf_counter() - start)
    return score_suite(result, suite_obj)


def _batches(specs: list[Any]) -> list[list[Any]]:
    """Instances in suite order; consecutive ones of one group merged where the tier has a group runner."""
    out: list[list[Any]] = []
    for spec in specs:
        if out and out[-1][0].group == spec.group and get_tier(spec.tier).group_runner:
            out[-1].append(spec)
        else:
            out.append([spec])
    return out
