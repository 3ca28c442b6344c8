"""The loss contract, the baseline library and promoted discovered losses.

>>> from candidate_losses import get_loss, list_losses
>>> spec = get_loss("dpo"); spec.fn(pc, pr, rc, rr, beta=0.1)   # -> Tensor[batch]

Knows nothing about discovery: it is importable on its own (torch is imported lazily by the
loss modules, only when the registry is first used).
"""

from __future__ import annotations

from candidate_losses.contract import CONTRACT_ARGS, LossFn, LossSpec, hyperparameters_of, load_loss_from_source
from candidate_losses.registry import get_loss, list_losses, register, spec_from_function

__all__ = [
    "CONTRACT_ARGS",
    "LossFn",
    "LossSpec",
    "get_loss",
    "hyperparameters_of",
    "list_losses",
    "load_loss_from_source",
    "register",
    "spec_from_function",
]
