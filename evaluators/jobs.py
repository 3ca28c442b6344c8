"""Entry points run inside a sandbox worker by ``SandboxPool.run_job`` (trusted code; the
candidate arrives already loaded as ``loss_fn``). They return JSON-able dicts only."""

from __future__ import annotations

from typing import Any, Callable


def evaluate_job(
    loss_fn: Callable[..., Any] | None,
    *,
    suite: str,
    seeds: int | None = None,
    loss_name: str = "candidate",
    loss_kwargs: dict[str, Any] | None = None,
    cache_dir: str | None = None,
    reference_hashes: dict[str, str] | None = None,
    suite_data: dict[str, Any] | None = None,
    suite_set: list[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """``SuiteResult.to_dict()`` of ``loss_fn`` on ``suite``; ``loss_fn=None`` evaluates the
    registered baseline called ``loss_name``. ``overrides``: beta_override, lr_override, device,
    instances (indices of the suite's runs).
    ``reference_hashes`` and ``suite_data`` (the suite's YAML mapping, ``suite_set`` settings
    applied) come from ``prepare_evaluate``, the trusted parent side; LLM judges run afterwards in
    the parent (``finish_evaluate``), since the sandbox has no network."""
    from evaluators.api import evaluate_loss
    from evaluators.reference import trust_hashes
    from evaluators.suites import suite_from_dict

    trust_hashes(reference_hashes or {})
    if suite_data is None:
        from evaluators.suites import load_suite

        suite_arg: Any = load_suite(suite, suite_set)
    else:
        suite_arg = suite_from_dict(suite_data, path=suite)

    allowed = {"beta_override", "lr_override", "device", "instances"}
    unknown = set(overrides) - allowed
    if unknown:
        raise TypeError(f"evaluate_job: unknown arguments {sorted(unknown)}")
    loss: Any = loss_fn if loss_fn is not None else loss_name
    result = evaluate_loss(loss, suite_arg, seeds=seeds, loss_kwargs=loss_kwargs,
                           cache_dir=cache_dir, loss_name=loss_name if loss_fn is not None else None,
                           defer_judging=True, **overrides)
    return result.to_dict()


def prepare_evaluate(kwargs: dict[str, Any], *, cache_dir: str, gpu: bool = False) -> dict[str, Any]:
    """Parent side of ``evaluate_job`` (trusted, unsandboxed): build the reference caches the
    suite needs, which the sandbox may only read, and pin their hashes and the device."""
    kwargs = dict(kwargs)
    kwargs.setdefault("cache_dir", cache_dir)
    kwargs["device"] = kwargs.get("device") or _device(gpu)
    from evaluators.reference import prepare_references
    from evaluators.suites import suite_data, suite_from_dict

    kwargs["suite_data"], path = suite_data(kwargs["suite"])
    if kwargs.get("suite_set"):
        from evaluators.suites import apply_settings

        kwargs["suite_data"] = apply_settings(kwargs["suite_data"], kwargs["suite_set"])
    suite = suite_from_dict(kwargs["suite_data"], path=path).with_overrides(seeds=kwargs.get("seeds"))
    kwargs["reference_hashes"] = prepare_references(suite, kwargs["cache_dir"], kwargs["device"])
    return kwargs


def _device(gpu: bool) -> str:
    if not gpu:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def finish_evaluate(kwargs: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """Parent side after ``evaluate_job``: judge the runs that wait for an LLM judge (cached,
    counted) and rescore; a no-op for suites without judges."""
    if not any((run.get("extra") or {}).get("judge_pending") for run in value.get("runs") or []):
        return value
    from evaluators.hf_judging import finish_judging
    from evaluators.suites import load_suite, suite_from_dict

    data = kwargs.get("suite_data")
    suite = suite_from_dict(data, path=kwargs["suite"]) if data is not None else load_suite(kwargs["suite"])
    return finish_judging(value, suite, kwargs.get("cache_dir"))


def sandbox_read_paths(suites: list[Any], settings: list[str] | None = None) -> list[str]:
    """Paths outside the project and the cache that sandboxed runs of ``suites`` (names, paths or
    Suite objects) must read: pass them as ``SandboxLimits.readonly_dirs``."""
    from evaluators.suites import Suite, load_suite
    from evaluators.tiers import get_tier

    paths: set[str] = set()
    for item in suites:
        if item is None:
            continue
        suite = item if isinstance(item, Suite) else load_suite(item, settings)
        for spec in suite.instances():
            hook = get_tier(spec.tier).read_paths_function()
            if hook is not None:
                paths.update(hook(spec))
    return sorted(paths)


evaluate_job.prepare_in_parent = prepare_evaluate  # type: ignore[attr-defined]
evaluate_job.finish_in_parent = finish_evaluate  # type: ignore[attr-defined]
