"""Trusted sandbox job for tuning: a suite with its betas and learning rates scaled, one seed at a time.

Runs inside a sandbox worker (``SandboxPool.run_job(code, TUNE_JOB, kwargs)``), like
``evaluators.jobs:evaluate_job``, but (1) scales every group's beta sweep and training learning
rate by the trial's factors, so a scale of 1 is exactly the untuned suite, (2) can replace every
group's seeds by a training split's (the same tier and regime on seeds the suite never uses), and
(3) can restrict every group to its i-th seed, so a study can report per-seed values and prune.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

TUNE_JOB = "discovery.tuning.scaled_suite:scaled_suite_job"


def training_split_seeds(suite: Any, count: int | None = None, *, avoid: Any = None) -> list[int]:
    """Seeds for tuning on `suite`'s own tier: the `count` (default: as many as its groups have)
    integers after its largest seed (and `avoid`'s: e.g. the suite as declared, when `suite` uses
    fewer seeds), so the split shares no instance with the suite itself."""
    seeds = [s for x in (suite, avoid) if x is not None for g in x.groups for s in g.seeds]
    n = count if count is not None else max(len(g.seeds) for g in suite.groups)
    if n < 1:
        raise ValueError("a training split needs at least one seed")
    return [max(seeds) + 1 + i for i in range(n)]


def scaled_suite(suite: Any, *, beta_scale: float = 1.0, lr_scale: float = 1.0, seeds: int | None = None,
                 seed_index: int | None = None, split_seeds: list[int] | None = None) -> Any:
    """`suite` with betas x beta_scale, train.lr x lr_scale, the first `seeds` seeds (or every group's
    seeds replaced by `split_seeds`: a training split of the same tier), then seed i only."""
    suite = suite.with_overrides(seeds=seeds) if seeds is not None else suite
    if split_seeds is not None:
        held = {s for g in suite.groups for s in g.seeds}
        if held & set(split_seeds):
            raise ValueError(f"training split seeds {sorted(held & set(split_seeds))} are {suite.name}'s own seeds")
        suite = replace(suite, name=f"{suite.name}[split]",
                        groups=tuple(replace(g, seeds=tuple(int(s) for s in split_seeds)) for g in suite.groups))
    groups = []
    for g in suite.groups:
        config = {k: dict(v) if isinstance(v, dict) else v for k, v in g.config.items()}
        if lr_scale != 1.0:
            train = config.setdefault("train", {})
            if "lr" not in train:
                raise ValueError(f"suite {suite.name}: group {g.tier}/{g.task} declares no train.lr to scale")
            train["lr"] = float(train["lr"]) * lr_scale
        new = replace(g, betas=tuple(float(b) * beta_scale for b in g.betas), config=config)
        if seed_index is not None:
            if seed_index >= len(g.seeds):
                raise ValueError(f"seed_index {seed_index} out of range for group {g.tier}/{g.task}")
            new = replace(new, seeds=(g.seeds[seed_index],))
        groups.append(new)
    return replace(suite, groups=tuple(groups))


def scaled_suite_job(loss_fn: Callable[..., Any] | None, *, suite: str, loss_name: str = "candidate",
                     loss_kwargs: dict[str, Any] | None = None, cache_dir: str | None = None,
                     beta_scale: float = 1.0, lr_scale: float = 1.0, seeds: int | None = None,
                     seed_index: int | None = None, split_seeds: list[int] | None = None,
                     device: str | None = None,
                     reference_hashes: dict[str, str] | None = None,
                     suite_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """``SuiteResult.to_dict()`` of the scaled suite; ``loss_fn=None`` runs baseline `loss_name`."""
    from evaluators.api import evaluate_loss
    from evaluators.reference import trust_hashes
    from evaluators.suites import load_suite, suite_from_dict

    trust_hashes(reference_hashes or {})
    base = suite_from_dict(suite_data, path=suite) if suite_data is not None else load_suite(suite)
    scaled = scaled_suite(base, beta_scale=beta_scale, lr_scale=lr_scale, seeds=seeds,
                          seed_index=seed_index, split_seeds=split_seeds)
    loss: Any = loss_fn if loss_fn is not None else loss_name
    result = evaluate_loss(loss, scaled, loss_kwargs=loss_kwargs, cache_dir=cache_dir,
                           loss_name=loss_name if loss_fn is not None else None, device=device)
    return result.to_dict()


def prepare_scaled_suite(kwargs: dict[str, Any], *, cache_dir: str, gpu: bool = False) -> dict[str, Any]:
    """Parent side (trusted): build the reference caches the job will read, pin their hashes."""
    from evaluators.jobs import _device
    from evaluators.reference import prepare_references
    from evaluators.suites import suite_data, suite_from_dict

    kwargs = dict(kwargs)
    kwargs.setdefault("cache_dir", cache_dir)
    kwargs["device"] = kwargs.get("device") or _device(gpu)
    kwargs["suite_data"], path = suite_data(kwargs["suite"])
    suite = scaled_suite(suite_from_dict(kwargs["suite_data"], path=path), seeds=kwargs.get("seeds"),
                         seed_index=kwargs.get("seed_index"), split_seeds=kwargs.get("split_seeds"))
    kwargs["reference_hashes"] = prepare_references(suite, kwargs["cache_dir"], kwargs["device"])
    return kwargs


scaled_suite_job.prepare_in_parent = prepare_scaled_suite  # type: ignore[attr-defined]
