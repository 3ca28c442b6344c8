"""Noise-aware self-refinement (SPA Sec. 4.2): smooth only the labels the model is least sure of.

Confidence of a self-labelled pair (chosen y_w, rejected y_l) is the DPO margin

    m = beta * ([log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)])

With de-coupled noise detection (DND) pi is replaced by the linearly *extrapolated* model whose
per-token logits are ``(1 + lam) * z_theta - lam * z_ref`` (a guess at a more aligned model,
so a stronger noise detector than the model being trained; the authors' released recipe runs
with it off). Pairs whose margin is not above tau are flagged; flagged pairs get label smoothing
with epsilon = alpha, the rest are unchanged. Two rules for tau:

* ``released`` (default; the authors' code): tau is fixed *before* a batch from the margins of
  the last 50 pairs of earlier batches -- the mean of the 6th and 7th smallest (K = 10 %:
  sorted[int(50 K)] and the next) -- and is 0 until 50 margins have been seen. A pair is
  confident iff its margin > tau. (Their trainer runs one pair per micro-batch, so its "last 50
  step margins" are the last 50 pairs' margins.)
* ``quantile`` (our first version): the K-quantile of a running window that includes the
  current batch; flagged iff margin < tau.

For DPO this is exactly the paper's loss
``-(1-alpha+alpha*c) log sigma(beta h) - alpha (1-c) log sigma(-beta h)`` (c = 1: confident).
For an arbitrary contract loss L we smooth the same way, by mixing in the loss of the swapped pair:

    L_smoothed = (1 - eps) * L(pc, pr, rc, rr) + eps * L(pr, pc, rr, rc)

which reduces to the formula above when L is DPO. For batch-coupled losses the swapped term is
computed on the whole swapped batch (its batch statistics are those of the swapped batch).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import torch


def dpo_margins(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                reference_chosen: torch.Tensor, reference_rejected: torch.Tensor,
                beta: float) -> torch.Tensor:
    """beta * h: the implicit-reward gap of chosen over rejected (the confidence in the label)."""
    return beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))


def extrapolated_sequence_logps(policy_logits: torch.Tensor, reference_logits: torch.Tensor,
                                tokens: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """[B] summed log-probs of ``tokens`` under softmax((1+lam) z_theta - lam z_ref), token by token.

    The renormalisation per token is what makes DND differ from simply scaling h by (1+lam):
    at the sequence level ``(1+lam) log pi - lam log pi_ref`` would only rescale every margin and
    leave the ranking of confidences -- hence the flags -- unchanged.
    """
    logits = (1.0 + lam) * policy_logits.float() - lam * reference_logits.float()
    token_logp = torch.log_softmax(logits, dim=-1).gather(2, tokens.unsqueeze(2)).squeeze(2)
    return (token_logp * mask).sum(dim=1)


def dnd_lambda(iteration: int, lambda0: float, decay: float) -> float:
    """lambda for iteration i >= 1: lambda0 * decay**(i-1) (paper: 1/2, 1/4, 1/8)."""
    return lambda0 * decay ** max(0, iteration - 1)


def alpha_at(step: int, total_steps: int, alpha: float, warmup_fraction: float) -> float:
    """Smoothing strength at ``step``: 0 during the warm-up fraction (margins are all ~0 right after
    the policy is reset to the reference, so confidences are meaningless), ``alpha`` after it."""
    return 0.0 if step < warmup_fraction * total_steps else alpha


class ConfidenceThreshold:
    """``quantile`` rule: tau = the K-quantile of the most recent ``window`` confidences, the
    current batch included (a running estimate, so that the flagged share stays ~K even though
    margins grow during training)."""

    rule = "quantile"

    def __init__(self, noise_fraction: float, window: int) -> None:
        self.noise_fraction = noise_fraction
        self.recent: deque[float] = deque(maxlen=max(1, window))

    def update(self, margins: torch.Tensor) -> float:
        """Add this batch's margins, then return the current threshold."""
        self.recent.extend(float(m) for m in margins.detach().flatten().tolist())
        values = torch.tensor(list(self.recent), dtype=torch.float64)
        return float(torch.quantile(values, self.noise_fraction))

    def flag(self, margins: torch.Tensor, eligible: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(tau, flags) for one batch: eligible pairs strictly below tau."""
        tau = self.update(margins[eligible])
        return tau, low_confidence(margins, tau, eligible)


class ReleasedThreshold:
    """``released`` rule (the authors' code): tau from earlier batches only -- the mean of the
    ``int(window * K)``-th and next smallest of the last ``window`` margins (window 50, K 0.1:
    the 6th and 7th smallest) -- and 0 until the window is full. Confident iff margin > tau."""

    rule = "released"

    def __init__(self, noise_fraction: float, window: int = 50) -> None:
        self.window = max(2, window)
        self.noise_fraction = noise_fraction
        self.recent: deque[float] = deque(maxlen=self.window)

    def current(self) -> float:
        """tau for the next batch, from the margins seen so far."""
        if len(self.recent) < self.window:
            return 0.0
        ordered = sorted(self.recent)
        down = min(int(self.window * self.noise_fraction), self.window - 2)
        return (ordered[down] + ordered[down + 1]) / 2

    def flag(self, margins: torch.Tensor, eligible: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(tau, flags) for one batch: tau is decided before this batch's margins are recorded."""
        tau = self.current()
        flags = eligible & ~(margins > tau)
        self.recent.extend(float(m) for m in margins[eligible].detach().flatten().tolist())
        return tau, flags


def make_threshold(rule: str, noise_fraction: float, window: int) -> ConfidenceThreshold | ReleasedThreshold:
    """The confidence threshold named by ``refinement.threshold``."""
    if rule == "released":
        return ReleasedThreshold(noise_fraction, window)
    if rule == "quantile":
        return ConfidenceThreshold(noise_fraction, window)
    raise ValueError(f"refinement.threshold must be 'released' or 'quantile', not {rule!r}")


def low_confidence(margins: torch.Tensor, threshold: float, eligible: torch.Tensor) -> torch.Tensor:
    """True for eligible (self-labelled) pairs whose margin is strictly below tau."""
    return eligible & (margins < threshold)


def smoothing_epsilon(flags: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-pair label-smoothing epsilon: alpha where flagged, exactly 0 elsewhere."""
    return flags.float() * alpha


def smoothed_loss(loss_fn: Callable[..., Any], policy_chosen: torch.Tensor,
                  policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
                  reference_rejected: torch.Tensor, beta: float, epsilon: torch.Tensor,
                  loss_kwargs: dict[str, Any]) -> torch.Tensor:
    """[B] per-example losses, label-smoothed by ``epsilon`` (see the module docstring).

    When no pair is flagged the swapped term is not even computed, so the result is bit-identical
    to the plain contract loss."""
    direct = loss_fn(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta,
                     **loss_kwargs)
    if not bool((epsilon > 0).any()):
        return direct
    if not isinstance(direct, torch.Tensor) or direct.shape != policy_chosen.shape:
        return direct      # let the trainer's contract check flag it (wrong_shape), never mask it
    swapped = loss_fn(policy_rejected, policy_chosen, reference_rejected, reference_chosen, beta,
                      **loss_kwargs)
    eps = epsilon.to(direct.dtype) if isinstance(direct, torch.Tensor) else epsilon
    # (1-eps)*direct + eps*swapped, written so that eps == 0 leaves ``direct`` bit-exact
    return torch.where(epsilon > 0, (1 - eps) * direct + eps * swapped, direct)
