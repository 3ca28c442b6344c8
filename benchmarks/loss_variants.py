"""Fixed variants of the library's losses, for the fidelity matrix (``benchmarks/fidelity.py``) and
the calibration report: small, known edits of the kind a search proposes (label smoothing, scaled
or offset margins, hinge margins, different temperatures), plus two controls with a known verdict
(a sign-flipped DPO that must rank last; likelihood on the chosen answers only).

Each is a contract function ``(pc, pr, rc, rr, beta, **hyper) -> Tensor[batch]``; ``VARIANTS`` maps
a name to (function, keyword arguments).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F


def _margin(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
    return (pc - rc) - (pr - rr)


def dpo_scaled(pc, pr, rc, rr, beta, scale=2.0):
    """DPO on a scaled margin: -logsigmoid(scale * beta * h) (equals DPO at beta * scale)."""
    return -F.logsigmoid(scale * beta * _margin(pc, pr, rc, rr))


def dpo_offset(pc, pr, rc, rr, beta, offset=1.0):
    """DPO with a margin offset: -logsigmoid(beta * h - offset) (asks for a margin before it rests)."""
    return -F.logsigmoid(beta * _margin(pc, pr, rc, rr) - offset)


def hinge_margin(pc, pr, rc, rr, beta, margin=2.0):
    """Hinge with a wider margin: max(0, margin - beta * h)."""
    return torch.relu(margin - beta * _margin(pc, pr, rc, rr))


def squared_hinge(pc, pr, rc, rr, beta):
    """Squared hinge: max(0, 1 - beta * h)^2 (smooth at the margin, quadratic inside it)."""
    return torch.relu(1 - beta * _margin(pc, pr, rc, rr)) ** 2


def exponential(pc, pr, rc, rr, beta):
    """Exponential (boosting) loss: exp(-beta * h), with a linear tail beyond exp(30)."""
    x = -beta * _margin(pc, pr, rc, rr)
    return torch.where(x <= 30.0, torch.exp(x.clamp(max=30.0)), torch.exp(torch.tensor(30.0)) * (x - 29.0))


def sigmoid_ramp(pc, pr, rc, rr, beta):
    """Smoothed 0-1 loss: 1 - sigmoid(beta * h) (bounded; ignores pairs it gets badly wrong)."""
    return 1 - torch.sigmoid(beta * _margin(pc, pr, rc, rr))


def chosen_likelihood(pc, pr, rc, rr, beta):
    """Control: maximise the chosen answers' likelihood only (SFT on the winners), scaled by beta."""
    return -beta * (pc - rc)


def sign_flipped_dpo(pc, pr, rc, rr, beta):
    """Control: DPO with chosen and rejected swapped -- must come last on any faithful suite."""
    return -F.logsigmoid(-beta * _margin(pc, pr, rc, rr))


def _registry(name: str) -> Callable[..., Any]:
    from candidate_losses import get_loss

    return get_loss(name).fn


VARIANTS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "cdpo_eps0.25": (_registry("cdpo"), {"label_smoothing": 0.25}),
    "robust_eps0.25": (_registry("robust"), {"label_smoothing": 0.25}),
    "dpo_scaled_x2": (dpo_scaled, {"scale": 2.0}),
    "dpo_scaled_x0.5": (dpo_scaled, {"scale": 0.5}),
    "dpo_offset1": (dpo_offset, {"offset": 1.0}),
    "hinge_margin2": (hinge_margin, {"margin": 2.0}),
    "squared_hinge": (squared_hinge, {}),
    "exponential": (exponential, {}),
    "sigmoid_ramp": (sigmoid_ramp, {}),
    "lrml_tau0.5": (_registry("lrml"), {"tau": 0.5}),
    # PFL on the unscaled log-ratio, as DiscoPOP's LLM first wrote it: the library's pfl_original,
    # kept under the name the earlier score stores use (fidelity.loss_names lists it once).
    "pfl_on_log_ratio": (_registry("pfl_original"), {}),
    "chosen_likelihood": (chosen_likelihood, {}),
    "sign_flipped_dpo": (sign_flipped_dpo, {}),
}


def resolve(name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """A variant by name, or a registered library loss (with no extra keyword arguments)."""
    if name in VARIANTS:
        return VARIANTS[name]
    return _registry(name), {}
