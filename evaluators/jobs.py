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
    **overrides: Any,
) -> dict[str, Any]:
    """``SuiteResult.to_dict()`` of ``loss_fn`` on ``suite``; ``loss_fn=None`` evaluates the
    registered baseline called ``loss_name``. ``overrides``: beta_override, lr_override, device.
    ``reference_hashes`` and ``suite_data`` (the suite's YAML mapping) come from
    ``prepare_evaluate``, the trusted parent side."""
    from evaluators.api import evaluate_loss
    from evaluators.reference import trust_hashes
    from evaluators.suites import suite_from_dict

    trust_hashes(reference_hashes or {})
    suite_arg: Any = suite_from_dict(suite_data, path=suite) if suite_data is not None else suite

    allowed = {"beta_override", "lr_override", "device"}
    unknown = set(overrides) - allowed
    if unknown:
        raise TypeError(f"evaluate_job: unknown arguments {sorted(unknown)}")
    loss: Any = loss_fn if loss_fn is not None else loss_name
    result = evaluate_loss(loss, suite_arg, seeds=seeds, loss_kwargs=loss_kwargs,
                           cache_dir=cache_dir, loss_name=loss_name if loss_fn is not None else None,
                           **overrides)
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
    suite = suite_from_dict(kwargs["suite_data"], path=path).with_overrides(seeds=kwargs.get("seeds"))
    kwargs["reference_hashes"] = prepare_references(suite, kwargs["cache_dir"], kwargs["device"])
    return kwargs


def _device(gpu: bool) -> str:
    if not gpu:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


evaluate_job.prepare_in_parent = prepare_evaluate  # type: ignore[attr-defined]
