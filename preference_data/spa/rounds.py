"""One round of preference training inside the SPA loop, on top of the tinylm tier's trainer.

The tier's ``train_preference`` does the nanoGPT-style loop (batch, contract loss, backward,
clip, step, failure flags). SPA adds two things per batch, both here:

* the DPO reference of round i is the previous policy pi_{i-1}, not the SFT model;
* noise-aware refinement: before the loss of each batch, the batch provider measures each
  self-labelled pair's confidence (DND margin, no gradient), updates the running threshold tau
  and tells ``RefinedLoss`` which pairs to smooth. ``train_preference`` calls
  ``policy_logps(idx)`` once per step right before the loss, which is what makes this hand-over
  exact (no change to the tier's trainer was needed).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import torch

from evaluators.lm import response_logps
from evaluators.training import TrainOutcome, lr_schedule, train_preference
from preference_data.spa.refinement import (alpha_at, dpo_margins, extrapolated_sequence_logps,
                                            make_threshold, smoothed_loss, smoothing_epsilon)


@dataclass
class PairTensors:
    """Labelled pairs as tensors (chosen/rejected already assigned), on one device."""

    prefix: torch.Tensor           # [N, P]
    chosen: torch.Tensor           # [N, W]
    chosen_len: torch.Tensor       # [N]
    rejected: torch.Tensor         # [N, W]
    rejected_len: torch.Tensor     # [N]
    self_labelled: torch.Tensor    # [N] bool: eligible for refinement (False for gold seed pairs)

    def __len__(self) -> int:
        return int(self.prefix.shape[0])

    @staticmethod
    def cat(parts: list["PairTensors"]) -> "PairTensors":
        return PairTensors(*(torch.cat([getattr(p, name) for p in parts])
                             for name in ("prefix", "chosen", "chosen_len", "rejected",
                                          "rejected_len", "self_labelled")))


@dataclass
class RoundConfig:
    steps: int
    batch_size: int
    lr: float
    grad_clip: float
    weight_decay: float
    beta: float
    refine: bool
    alpha: float
    noise_fraction: float
    warmup_fraction: float
    threshold_window: int
    dnd_lambda: float | None      # None: plain confidence (no extrapolation)
    threshold_rule: str = "released"
    lr_schedule: str = "constant"
    warmup: float = 0.0


@dataclass
class RoundOutcome:
    train: TrainOutcome
    confidence: torch.Tensor      # [N] margin at each pair's last visit (nan: never visited)
    flagged: torch.Tensor         # [N] bool: smoothed at its last visit
    smoothing: torch.Tensor       # [N] epsilon at its last visit


class RefinedLoss:
    """The candidate contract loss with per-pair label smoothing chosen by the batch provider."""

    def __init__(self, loss_fn: Callable[..., Any]) -> None:
        self.loss_fn = loss_fn
        self.epsilon: torch.Tensor | None = None

    def __call__(self, policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                 reference_chosen: torch.Tensor, reference_rejected: torch.Tensor, beta: float,
                 **loss_kwargs: Any) -> Any:
        eps = self.epsilon if self.epsilon is not None else torch.zeros_like(policy_chosen)
        return smoothed_loss(self.loss_fn, policy_chosen, policy_rejected, reference_chosen,
                             reference_rejected, beta, eps, loss_kwargs)


def token_logits(model: torch.nn.Module, prefix: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """[B, W, V] next-token logits at the response positions (same slicing as ``response_logps``)."""
    ids = torch.cat([prefix, response], dim=1)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    return logits[:, prefix.shape[1] - 1: -1].float()


def _mask(response: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    return (torch.arange(response.shape[1], device=response.device)[None, :] < length[:, None]).float()


@torch.no_grad()
def sequence_logps(model: torch.nn.Module, prefix: torch.Tensor, response: torch.Tensor,
                   length: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """[N] summed response log-probs, in chunks, without gradient."""
    out = [response_logps(model, prefix[s:s + batch_size], response[s:s + batch_size],
                          length[s:s + batch_size]).float()
           for s in range(0, prefix.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, device=prefix.device)


@torch.no_grad()
def confidence_margins(policy: torch.nn.Module, reference: torch.nn.Module, pairs: PairTensors,
                       idx: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
                       beta: float, lam: float | None) -> torch.Tensor:
    """beta*h per pair of ``idx``; with ``lam`` the policy is replaced by the extrapolated model."""
    prefix = pairs.prefix[idx]
    if lam is None:
        pc = response_logps(policy, prefix, pairs.chosen[idx], pairs.chosen_len[idx]).float()
        pr = response_logps(policy, prefix, pairs.rejected[idx], pairs.rejected_len[idx]).float()
    else:
        lps = []
        for resp, length in ((pairs.chosen[idx], pairs.chosen_len[idx]),
                             (pairs.rejected[idx], pairs.rejected_len[idx])):
            lps.append(extrapolated_sequence_logps(
                token_logits(policy, prefix, resp), token_logits(reference, prefix, resp),
                resp, _mask(resp, length), lam))
        pc, pr = lps
    return dpo_margins(pc, pr, ref_chosen[idx], ref_rejected[idx], beta)


def train_round(policy: torch.nn.Module, reference: torch.nn.Module, pairs: PairTensors,
                loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any], cfg: RoundConfig,
                generator: torch.Generator,
                autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                ) -> RoundOutcome:
    """Train ``policy`` in place on ``pairs`` against the frozen ``reference``."""
    n = len(pairs)
    device = pairs.prefix.device
    ref_chosen = sequence_logps(reference, pairs.prefix, pairs.chosen, pairs.chosen_len)
    ref_rejected = sequence_logps(reference, pairs.prefix, pairs.rejected, pairs.rejected_len)
    confidence = torch.full((n,), math.nan, device=device)
    flagged = torch.zeros(n, dtype=torch.bool, device=device)
    smoothing = torch.zeros(n, device=device)
    refined = RefinedLoss(loss_fn)
    threshold = make_threshold(cfg.threshold_rule, cfg.noise_fraction, cfg.threshold_window)
    step = SimpleNamespace(i=0)
    batch = min(cfg.batch_size, n)

    def policy_logps(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eligible = pairs.self_labelled[idx]
        refined.epsilon = None
        if cfg.refine and bool(eligible.any()):
            policy.eval()
            margins = confidence_margins(policy, reference, pairs, idx, ref_chosen, ref_rejected,
                                         cfg.beta, cfg.dnd_lambda)
            policy.train()
            _, flags = threshold.flag(margins, eligible)
            eps = smoothing_epsilon(flags, alpha_at(step.i, cfg.steps, cfg.alpha, cfg.warmup_fraction))
            refined.epsilon = eps
            confidence[idx], flagged[idx], smoothing[idx] = margins, eps > 0, eps
        step.i += 1
        both = response_logps(policy, torch.cat([pairs.prefix[idx], pairs.prefix[idx]]),
                              torch.cat([pairs.chosen[idx], pairs.rejected[idx]]),
                              torch.cat([pairs.chosen_len[idx], pairs.rejected_len[idx]]))
        return both[: idx.shape[0]], both[idx.shape[0]:]

    policy.train()
    outcome = train_preference(
        parameters=policy.parameters(), policy_logps=policy_logps, reference_chosen=ref_chosen,
        reference_rejected=ref_rejected, loss_fn=refined, beta=cfg.beta, loss_kwargs=loss_kwargs,
        steps=cfg.steps, batch_size=batch, lr=cfg.lr, grad_clip=cfg.grad_clip,
        weight_decay=cfg.weight_decay, generator=generator,
        log_every=max(1, min(10, cfg.steps // 4)), autocast=autocast,
        lr_factor=lr_schedule(cfg.lr_schedule, cfg.warmup, cfg.steps))
    policy.eval()
    return RoundOutcome(outcome, confidence.cpu(), flagged.cpu(), smoothing.cpu())


def steps_for(epochs: float, n_pairs: int, batch_size: int) -> int:
    """Optimiser steps for ``epochs`` passes over ``n_pairs`` (at least one)."""
    return max(1, math.ceil(epochs * n_pairs / max(1, min(batch_size, n_pairs))))
