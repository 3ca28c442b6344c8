"""Preference training of M models at once (one ``BatchedGPT``), with the per-run guards of
``evaluators.training`` applied to each model separately.

Per step: every model draws its own minibatch (its own pairs, labels and data order), one
batched forward gives all policy log-probs, the candidate loss is called once per model with
that model's ``[batch]`` tensors and its own float ``beta`` (exactly the contract's call, so
batch-coupled losses and candidate code that branches on ``beta`` behave as in a sequential run),
the per-model means are summed and back-propagated once (models share no parameter, so each
gets its own gradient), gradients are clipped per model, and one AdamW steps them all (AdamW is
elementwise, so this equals M separate optimisers). A model whose loss fails (``error``,
``wrong_shape``, ``nan``, ``no_gradient``) is frozen where it stopped while the others go on.
The result equals training each model alone (tested to 1e-5 against ``transformers`` GPT-2 +
``torch.optim.AdamW`` + ``clip_grad_norm_``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from evaluators.batched_gpt import BatchedGPT, response_logps
from evaluators.training import LossFailure, TrainOutcome, candidate_loss


@dataclass
class PairData:
    """Labelled preference pairs of every model: [M, N, ...] tensors (row m belongs to model m)."""

    prefix: torch.Tensor           # [M, N, P]
    chosen: torch.Tensor           # [M, N, L]
    rejected: torch.Tensor         # [M, N, L]
    chosen_len: torch.Tensor       # [M, N]
    rejected_len: torch.Tensor     # [M, N]
    ref_chosen: torch.Tensor       # [M, N] reference log-probs of the chosen responses
    ref_rejected: torch.Tensor     # [M, N]
    banned: int | None = None      # a token no response may contain (fixed-length generation: EOS)

    def take(self, name: str, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` [M, B] of field ``name`` for every model."""
        t = getattr(self, name)
        return t[torch.arange(t.shape[0], device=t.device)[:, None], idx]


def train_batched(
    model: BatchedGPT,
    data: PairData,
    loss_fn: Callable[..., Any],
    betas: list[float],
    loss_kwargs: dict[str, Any],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    grad_clip: float,
    order_generators: list[torch.Generator],
    warmup: float = 0.0,
    decay: bool = False,
    log_every: int = 10,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    on_epoch: Callable[[int, list[bool]], None] | None = None,
    max_steps: int = 0,
) -> list[TrainOutcome]:
    """Train ``model`` (M policies) for ``epochs`` passes over its N pairs; one outcome per model.

    Each epoch is a fresh permutation of the pairs from the model's own generator; the last
    partial batch is dropped; ``max_steps > 0`` ends training after that many steps (epochs are
    then extended as needed). The learning rate warms up linearly over the first ``warmup``
    fraction of the steps and, with ``decay``, falls linearly to 0 at the last step (TRL's default
    schedule). ``on_epoch(epoch, active)`` runs after every epoch (1-based)."""
    M, N = data.ref_chosen.shape
    if len(betas) != M or len(order_generators) != M:
        raise ValueError("one beta and one order generator per model")
    batch_size = min(batch_size, N)
    device = data.ref_chosen.device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    outs = [TrainOutcome() for _ in range(M)]
    windows: list[list[float]] = [[] for _ in range(M)]
    active = [True] * M
    frozen: dict[int, list[torch.Tensor]] = {}   # model -> its parameters when it stopped
    steps_per_epoch = N // batch_size
    if max_steps > 0:
        epochs = math.ceil(max_steps / steps_per_epoch)
    total = max(1, max_steps if max_steps > 0 else epochs * steps_per_epoch)
    warm = int(round(warmup * total))

    def lr_factor(i: int) -> float:
        if i < warm:
            return (i + 1) / (warm + 1)
        return (total - i) / (total - warm) if decay else 1.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    step = 0

    def stop(m: int, flag: str, message: str) -> None:
        active[m] = False
        outs[m].flags.append(flag)
        outs[m].message = f"step {step}: {message}"
        frozen[m] = [p.detach()[m].clone() for p in params]

    for epoch in range(1, epochs + 1):
        orders = torch.stack([torch.randperm(N, generator=g) for g in order_generators]).to(device)
        for k in range(steps_per_epoch):
            if not any(active) or (max_steps > 0 and step >= max_steps):
                break
            idx = orders[:, k * batch_size:(k + 1) * batch_size]
            with autocast():
                both = response_logps(
                    model, torch.cat([data.take("prefix", idx)] * 2, dim=1),
                    torch.cat([data.take("chosen", idx), data.take("rejected", idx)], dim=1),
                    torch.cat([data.take("chosen_len", idx), data.take("rejected_len", idx)], dim=1),
                    banned=data.banned)
            pc, pr = both[:, :batch_size].float(), both[:, batch_size:].float()
            rc, rr = data.take("ref_chosen", idx), data.take("ref_rejected", idx)
            losses: dict[int, torch.Tensor] = {}
            for m in range(M):
                if not active[m]:
                    continue
                try:
                    loss = candidate_loss(loss_fn, pc[m], pr[m], rc[m], rr[m], betas[m], loss_kwargs)
                except LossFailure as failure:
                    stop(m, failure.flag, str(failure))
                    continue
                if not loss.requires_grad:
                    outs[m].curve.append(float(loss))
                    stop(m, "no_gradient", "the loss does not depend on the policy log-probs")
                    continue
                losses[m] = loss
            if not losses:
                continue
            optimizer.zero_grad(set_to_none=False)
            try:
                torch.stack(list(losses.values())).sum().backward()
            except Exception as exc:  # e.g. in-place ops on the inputs inside the candidate
                for m in losses:       # same code for every model: it fails for all of them
                    stop(m, "error", f"backward failed: {type(exc).__name__}: {exc}"[:300])
                continue
            norms = torch.zeros(M, dtype=torch.float32, device=device)
            for p in params:
                norms += p.grad.detach().float().pow(2).reshape(M, -1).sum(1)
            norms = norms.sqrt()
            for m in list(losses):
                if not math.isfinite(float(norms[m])):
                    stop(m, "nan", "non-finite gradient")
                    del losses[m]
            live = torch.tensor([m in losses for m in range(M)], device=device)
            limit = grad_clip if grad_clip > 0 else math.inf
            coef = torch.clamp(limit / (norms + 1e-6), max=1.0)
            for p in params:
                shape = (M,) + (1,) * (p.dim() - 1)
                p.grad.copy_(torch.where(live.reshape(shape), p.grad * coef.reshape(shape).to(p.grad.dtype),
                                         torch.zeros((), dtype=p.grad.dtype, device=device)))
            if losses:
                optimizer.step()
            scheduler.step()
            with torch.no_grad():
                for m, saved in frozen.items():
                    for p, value in zip(params, saved):
                        p[m].copy_(value)
            step += 1
            for m, loss in losses.items():
                outs[m].steps_done += 1
                windows[m].append(float(loss.detach()))
                if len(windows[m]) == log_every:
                    outs[m].curve.append(sum(windows[m]) / log_every)
                    windows[m] = []
        if on_epoch is not None:
            on_epoch(epoch, list(active))
    for m in range(M):
        if windows[m]:
            outs[m].curve.append(sum(windows[m]) / len(windows[m]))
    return outs
