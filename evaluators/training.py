"""The preference-training loop shared by every tier (nanoGPT-clear: batch, loss, backward,
clip, step), with the guards that turn a misbehaving candidate loss into flags instead of a crash.

Flags: ``error`` (the loss raised), ``wrong_shape`` (did not return a [batch] tensor), ``nan``
(non-finite loss or gradient: training stops there), ``no_gradient`` (the loss does not depend on
the policy, e.g. a constant: the policy stays the reference).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

PolicyLogps = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class LossFailure(Exception):
    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag = flag


@dataclass
class TrainOutcome:
    curve: list[float] = field(default_factory=list)   # mean training loss per logged window
    flags: list[str] = field(default_factory=list)
    steps_done: int = 0
    message: str = ""


def candidate_loss(
    loss_fn: Callable[..., Any],
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    loss_kwargs: dict[str, Any],
) -> torch.Tensor:
    """Mean of the candidate's per-example losses, called with the 5-argument contract."""
    try:
        losses = loss_fn(policy_chosen, policy_rejected, reference_chosen, reference_rejected,
                         beta, **loss_kwargs)
    except Exception as exc:  # candidate code may raise anything
        raise LossFailure("error", f"{type(exc).__name__}: {exc}"[:300]) from None
    batch = policy_chosen.shape[0]
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (batch,):
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise LossFailure("wrong_shape", f"loss returned {shape}, expected ({batch},)")
    loss = losses.float().mean()
    if not torch.isfinite(loss):
        raise LossFailure("nan", "non-finite loss value")
    return loss


def train_preference(
    *,
    parameters: Iterable[torch.Tensor],
    policy_logps: PolicyLogps,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    loss_fn: Callable[..., Any],
    beta: float,
    loss_kwargs: dict[str, Any],
    steps: int,
    batch_size: int,
    lr: float,
    grad_clip: float,
    weight_decay: float,
    generator: torch.Generator,
    log_every: int = 10,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    lr_factor: Callable[[int], float] | None = None,
) -> TrainOutcome:
    """Train the policy on pairs 0..N-1 (chosen/rejected already assigned) with the candidate loss.

    ``policy_logps(idx)`` returns the policy's summed log-probs of the chosen and rejected
    responses of pairs ``idx``; the reference log-probs were computed once, up front.
    ``lr_factor(step)`` scales ``lr`` per step (``lr_schedule``); None keeps it constant.
    """
    params = [p for p in parameters if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor) if lr_factor is not None else None
    n_pairs = reference_chosen.shape[0]
    device = reference_chosen.device
    out = TrainOutcome()
    window: list[float] = []
    order = torch.randperm(n_pairs, generator=generator).to(device)
    cursor = 0
    for step in range(steps):
        if cursor + batch_size > n_pairs:
            order = torch.randperm(n_pairs, generator=generator).to(device)
            cursor = 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        with autocast():
            pc, pr = policy_logps(idx)
        try:
            loss = candidate_loss(loss_fn, pc.float(), pr.float(), reference_chosen[idx],
                                  reference_rejected[idx], beta, loss_kwargs)
        except LossFailure as failure:
            out.flags.append(failure.flag)
            out.message = f"step {step}: {failure}"
            break
        if not loss.requires_grad:
            out.flags.append("no_gradient")
            out.message = "the loss does not depend on the policy log-probs"
            window.append(float(loss))
            out.curve.append(float(loss))
            break
        optimizer.zero_grad(set_to_none=True)
        try:
            loss.backward()
        except Exception as exc:  # e.g. in-place ops on the inputs inside the candidate
            out.flags.append("error")
            out.message = f"step {step}: backward failed: {type(exc).__name__}: {exc}"[:300]
            break
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
        if not torch.isfinite(grad_norm):
            out.flags.append("nan")
            out.message = f"step {step}: non-finite gradient"
            break
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        out.steps_done = step + 1
        window.append(float(loss.detach()))
        if len(window) == log_every:
            out.curve.append(sum(window) / len(window))
            window = []
    if window and "no_gradient" not in out.flags:
        out.curve.append(sum(window) / len(window))
    return out


def lr_schedule(kind: str, warmup: float, steps: int) -> Callable[[int], float]:
    """lr multiplier per step: linear warm-up over ``warmup`` of the steps (from ~0), then
    ``cosine`` or ``linear`` decay to 0 at the last step, or ``constant`` (TRL/HF's schedules)."""
    if kind not in ("cosine", "linear", "constant"):
        raise ValueError(f"lr_schedule must be cosine, linear or constant, not {kind!r}")
    total = max(1, steps)
    warm = int(round(warmup * total))

    def factor(i: int) -> float:
        if i < warm:
            return (i + 1) / (warm + 1)
        if kind == "constant":
            return 1.0
        progress = (i - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress

    return factor


def bradley_terry_labels(
    reward_a: torch.Tensor, reward_b: torch.Tensor, temperature: float, noise: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """True where response a is labelled the winner: Bradley-Terry on the gold reward
    (P(a > b) = sigmoid((r_a - r_b) / temperature)), then each label flipped with prob ``noise``."""
    p_a = torch.sigmoid((reward_a - reward_b).double() / max(temperature, 1e-8))
    a_wins = torch.rand(p_a.shape, generator=generator, dtype=torch.float64) < p_a
    flip = torch.rand(p_a.shape, generator=generator, dtype=torch.float64) < noise
    return a_wins ^ flip


def run_seed(*parts: Any) -> int:
    """A stable 63-bit seed from a tuple of plain values (Python's hash() is salted per process)."""
    import hashlib

    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
