"""The one contract every preference loss in prefdisco honours.

A loss is a plain function::

    loss(policy_chosen_logps, policy_rejected_logps,
         reference_chosen_logps, reference_rejected_logps, beta, **hyper) -> Tensor[batch]

Each input is a ``[batch]`` tensor of *summed* sequence log-probabilities. The function returns
per-example losses of shape ``[batch]``; the caller takes the mean (or a weighted mean, which is
how per-example weights and group-robust training plug in without touching the loss).
Extra hyper-parameters are keyword arguments with defaults, so tuners can find and search them.

Batch-coupled losses (those whose per-example value depends on statistics of the whole batch,
e.g. DBAQL, AQL, AQFL) still return ``[batch]`` but are flagged ``batch_coupled=True`` in their
``LossSpec``: their value for one example changes with its batch-mates, so weighting or
sub-batching them is not equivalent to re-weighting a fixed per-example quantity.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

CONTRACT_ARGS: tuple[str, ...] = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
    "beta",
)

LossFn = Callable[..., Any]  # (Tensor, Tensor, Tensor, Tensor, float, **hyper) -> Tensor[batch]
Origin = Literal["baseline", "discovered"]


@dataclass(frozen=True)
class LossSpec:
    """Everything prefdisco knows about one loss: what it is, where it came from, how to call it."""

    name: str
    fn: LossFn
    source: str
    origin: Origin = "baseline"
    reference: str = ""
    hyperparameters: dict[str, float] = field(default_factory=dict)
    batch_coupled: bool = False
    summary: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def hyperparameters_of(fn: LossFn) -> dict[str, float]:
    """Keyword hyper-parameters (beyond the five contract arguments) with their defaults."""
    params = inspect.signature(fn).parameters
    return {
        name: p.default
        for name, p in params.items()
        if name not in CONTRACT_ARGS and p.default is not inspect.Parameter.empty
    }


def load_loss_from_source(code: str) -> LossFn:
    """Execute untrusted loss code and return its single top-level function.

    Only ever call this inside a sandboxed worker process (``discovery.sandbox``): it runs the code.
    The namespace starts with ``torch``, ``torch.nn.functional as F`` and ``math`` pre-imported, the
    names the prompt promises to LLM-written code.
    """
    import torch
    import torch.nn.functional as F

    namespace: dict[str, Any] = {"torch": torch, "F": F, "math": math, "__name__": "candidate"}
    exec(compile(code, "<candidate>", "exec"), namespace)  # noqa: S102 - sandbox-only by contract
    functions = [
        v for k, v in namespace.items()
        if inspect.isfunction(v) and getattr(v, "__module__", None) == "candidate"
    ]
    if len(functions) != 1:
        raise ValueError(f"expected exactly one top-level function, found {len(functions)}")
    return functions[0]
