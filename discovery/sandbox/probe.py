"""Numerical probe and behaviour fingerprint of a loaded candidate (runs INSIDE a worker).

The probe feeds realistic inputs (summed sequence log-probs in [-500, -5], log-ratio margins
in [-50, 50], batches of 64 and 1) and demands a finite ``[batch]`` tensor that is
differentiable with finite, non-zero gradients and leaves its inputs untouched.
The fingerprint evaluates loss and gradients on a fixed float64 grid and hashes the rounded
values, so two spellings of one function (renamed variables, reordered sums) collide.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

PROBE_BETA = 0.1
FINGERPRINT_BETAS = (0.05, 0.1, 0.5)
FINGERPRINT_MARGINS = tuple(float(m) for m in torch.linspace(-50.0, 50.0, 21).tolist())
SHAPE_BETA = 0.1
SHAPE_Z = tuple(round(-5.0 + 0.125 * i, 6) for i in range(81))  # z = beta * margin in [-5, 5]
SIGNIFICANT_DIGITS = 6
ZERO_FLUSH = 1e-9


class ProbeFailure(Exception):
    """A contract violation found by the probe; ``failure_class`` is a FailureClass value."""

    def __init__(self, failure_class: str, message: str) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.message = message


@dataclass
class ProbeMeasurement:
    """What the probe measures inside the sandbox child; the parent's verdict is ``results.ProbeResult``."""

    fingerprint: str
    fingerprint_vector: list[float]
    shape: dict[str, Any]


def probe_inputs(batch: int, seed: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """[pc, pr, rc, rr]: log-probs in [-500, -5]; margins spread over [-50, 50] incl. extremes."""
    gen = torch.Generator().manual_seed(seed)
    ref_c = -30.0 - 445.0 * torch.rand(batch, generator=gen, dtype=torch.float64)
    ref_r = -30.0 - 445.0 * torch.rand(batch, generator=gen, dtype=torch.float64)
    margin = torch.linspace(-50.0, 50.0, batch, dtype=torch.float64) if batch > 1 \
        else torch.tensor([0.3], dtype=torch.float64)
    margin = margin[torch.randperm(batch, generator=gen)]
    split = torch.rand(batch, generator=gen, dtype=torch.float64)  # share of margin on chosen
    ratio_c = margin * split
    ratio_r = ratio_c - margin
    pol_c, pol_r = ref_c + ratio_c, ref_r + ratio_r
    return [t.to(dtype) for t in (pol_c, pol_r, ref_c, ref_r)]


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def _call(fn: Callable[..., Any], inputs: list[torch.Tensor], beta: float) -> Any:
    try:
        return fn(*inputs, beta)
    except TypeError as exc:
        if "argument" in str(exc) and ("positional" in str(exc) or "keyword" in str(exc)):
            raise ProbeFailure("contract", f"calling loss(pc, pr, rc, rr, beta) failed: "
                                           f"{_describe(exc)}") from exc
        raise
    except RuntimeError as exc:
        text = str(exc)
        if "in-place operation" in text or "inplace" in text or "leaf Variable" in text:
            raise ProbeFailure("mutates_input", "the loss modifies its inputs in place "
                                                f"({_describe(exc)}); use out-of-place ops") from exc
        raise


def check_once(fn: Callable[..., Any], batch: int, seed: int, beta: float = PROBE_BETA) -> None:
    """One probe call: type, shape, finiteness, gradients, no input mutation."""
    pc, pr, rc, rr = probe_inputs(batch, seed)
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    inputs = [pc, pr, rc, rr]
    before = [(t._version, t.detach().clone()) for t in inputs]
    out = _call(fn, inputs, beta)
    for t, (version, value) in zip(inputs, before):
        if t._version != version or not torch.equal(t.detach(), value):
            raise ProbeFailure("mutates_input", "the loss modified one of its input tensors in "
                                                "place; use out-of-place operations")
    if not isinstance(out, torch.Tensor):
        raise ProbeFailure("wrong_shape", f"returned {type(out).__name__}; expected a "
                                          f"torch.Tensor of shape [batch] (per-example losses)")
    if tuple(out.shape) != (batch,):
        hint = " (do not take the mean: return per-example losses)" if out.dim() == 0 else ""
        raise ProbeFailure("wrong_shape", f"returned shape {list(out.shape)} for batch {batch}; "
                                          f"expected [{batch}]{hint}")
    if not out.is_floating_point():
        raise ProbeFailure("no_gradient", f"returned dtype {out.dtype}; losses must be floating")
    if not torch.isfinite(out).all():
        bad = int((~torch.isfinite(out)).sum())
        raise ProbeFailure("non_finite", f"{bad} of {batch} loss values are NaN/inf for log-probs "
                                         "in [-500, -5] and margins in [-50, 50]; stabilise the "
                                         "formula (logsigmoid, softplus, clamp)")
    if not out.requires_grad:
        raise ProbeFailure("no_gradient", "the loss has no gradient w.r.t. the policy log-probs "
                                          "(detached, .item(), or built from constants)")
    out.sum().backward()
    grads = [pc.grad, pr.grad]
    if all(g is None for g in grads):
        raise ProbeFailure("no_gradient", "the loss does not depend on the policy log-probs")
    for g in grads:
        if g is not None and not torch.isfinite(g).all():
            raise ProbeFailure("non_finite", "gradients are NaN/inf on the probe inputs; "
                                             "stabilise the formula")
    if all(g is None or not bool(g.abs().gt(0).any()) for g in grads) and batch > 1:
        raise ProbeFailure("no_gradient", "the gradient is zero at every probe point: the loss "
                                          "cannot train the policy")


def _grid_inputs(margins: torch.Tensor, split: float) -> list[torch.Tensor]:
    n = margins.numel()
    ref_c = torch.linspace(-60.0, -400.0, n, dtype=torch.float64)
    ref_r = torch.linspace(-380.0, -80.0, n, dtype=torch.float64)
    ratio_c = margins * split
    pc = (ref_c + ratio_c).requires_grad_(True)
    pr = (ref_r + ratio_c - margins).requires_grad_(True)
    return [pc, pr, ref_c, ref_r]


def _evaluate(fn: Callable[..., Any], inputs: list[torch.Tensor], beta: float
              ) -> tuple[list[float], list[float], list[float]]:
    out = _call(fn, inputs, beta)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (inputs[0].numel(),):
        raise ProbeFailure("wrong_shape", "returned a different shape on the fingerprint grid")
    grads = torch.autograd.grad(out.sum(), inputs[:2], allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(inputs[0]) for g in grads]
    values = [out.detach().double(), grads[0].double(), grads[1].double()]
    if not all(torch.isfinite(v).all() for v in values):
        raise ProbeFailure("non_finite", f"loss or gradient is NaN/inf at beta={beta} for "
                                         "margins in [-50, 50]")
    return tuple(v.tolist() for v in values)  # type: ignore[return-value]


def _quantise(value: float) -> float:
    if abs(value) < ZERO_FLUSH:
        return 0.0
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def fingerprint(fn: Callable[..., Any]) -> tuple[str, list[float]]:
    """Rounded loss + gradients on a fixed grid (3 betas x 21 margins x 2 log-ratio splits)."""
    margins = torch.tensor(FINGERPRINT_MARGINS, dtype=torch.float64)
    vector: list[float] = []
    for beta in FINGERPRINT_BETAS:
        for split in (0.5, 0.9):
            for values in _evaluate(fn, _grid_inputs(margins, split), beta):
                vector.extend(_quantise(v) for v in values)
    digest = hashlib.sha256(json.dumps(vector).encode()).hexdigest()
    return digest, vector


def shape_curves(fn: Callable[..., Any]) -> dict[str, Any]:
    """Loss and dloss/dz against z = beta * margin (margin split evenly), for plots."""
    z = torch.tensor(SHAPE_Z, dtype=torch.float64)
    loss, grad_c, _ = _evaluate(fn, _grid_inputs(z / SHAPE_BETA, 0.5), SHAPE_BETA)
    # d margin / d pc = 1, so dL/dz = dL/dpc / beta (exact for margin-only losses).
    dloss_dz = [g / SHAPE_BETA for g in grad_c]
    clean = lambda xs: [x if math.isfinite(x) else None for x in xs]  # noqa: E731
    return {"z": list(SHAPE_Z), "beta": SHAPE_BETA, "loss": clean(loss), "dloss_dz": clean(dloss_dz)}


def run_probe(fn: Callable[..., Any]) -> ProbeMeasurement:
    """Full probe; raises ProbeFailure (or the candidate's own exception) on the first problem."""
    check_once(fn, batch=64, seed=0)
    check_once(fn, batch=1, seed=1)
    check_once(fn, batch=64, seed=2, beta=0.5)
    digest, vector = fingerprint(fn)
    return ProbeMeasurement(fingerprint=digest, fingerprint_vector=vector, shape=shape_curves(fn))
