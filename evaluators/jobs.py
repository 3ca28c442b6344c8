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
    **overrides: Any,
) -> dict[str, Any]:
    """``SuiteResult.to_dict()`` of ``loss_fn`` on ``suite``; ``loss_fn=None`` evaluates the
    registered baseline called ``loss_name``. ``overrides``: beta_override, lr_override, device."""
    from evaluators.api import evaluate_loss

    allowed = {"beta_override", "lr_override", "device"}
    unknown = set(overrides) - allowed
    if unknown:
        raise TypeError(f"evaluate_job: unknown arguments {sorted(unknown)}")
    loss: Any = loss_fn if loss_fn is not None else loss_name
    result = evaluate_loss(loss, suite, seeds=seeds, loss_kwargs=loss_kwargs,
                           cache_dir=cache_dir, loss_name=loss_name if loss_fn is not None else None,
                           **overrides)
    return result.to_dict()
