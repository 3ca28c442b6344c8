"""Each TRL-covered loss agrees with an independent float64 NumPy computation of TRL 1.16's
formula (``DPOTrainer._compute_loss``, by ``loss_type``), on summed log-probs (length-1 for IPO)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from candidate_losses import get_loss


def logsig(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def sig(x: np.ndarray) -> np.ndarray:
    return np.exp(logsig(x))


def trl_reference(loss_type: str, pc, pr, rc, rr, beta: float, ls: float = 0.0, tau: float = 0.05):
    cw, cl = pc - rc, pr - rr
    d = cw - cl
    if loss_type == "sigmoid":
        return -logsig(beta * d) * (1 - ls) - logsig(-beta * d) * ls
    if loss_type == "robust":
        return (-(1 - ls) * logsig(beta * d) + ls * logsig(-beta * d)) / (1 - 2 * ls)
    if loss_type == "hinge":
        return np.maximum(0.0, 1 - beta * d)
    if loss_type == "ipo":
        return (d - 1 / (2 * beta)) ** 2
    if loss_type == "exo_pair":
        return sig(beta * d) * (logsig(beta * d) - np.log1p(-ls)) + sig(-beta * d) * (logsig(-beta * d) - np.log(ls))
    if loss_type == "nca_pair":
        return -logsig(beta * cw) - 0.5 * logsig(-beta * cw) - 0.5 * logsig(-beta * cl)
    if loss_type == "bco_pair":
        return -logsig(beta * cw) - logsig(-beta * cl)
    if loss_type == "sppo_hard":
        return (cw - 0.5 / beta) ** 2 + (cl + 0.5 / beta) ** 2
    if loss_type == "apo_zero":
        return (1 - sig(beta * cw)) + sig(beta * cl)
    if loss_type == "apo_down":
        return sig(beta * cw) + (1 - sig(beta * (cw - cl)))
    if loss_type == "aot":
        delta = np.sort(pc - pr) - np.sort(rc - rr)
        return -logsig(beta * delta) * (1 - ls) - logsig(-beta * delta) * ls
    if loss_type == "aot_unpaired":
        delta = np.sort(cw) - np.sort(cl)
        return -logsig(beta * delta) * (1 - ls) - logsig(-beta * delta) * ls
    if loss_type == "discopop":
        logits = beta * d
        m = sig(logits / tau)
        return -logsig(logits) * (1 - m) + np.exp(-logits) * m
    raise KeyError(loss_type)


CASES = [  # (our name, TRL loss_type, our kwargs, TRL label_smoothing)
    ("dpo", "sigmoid", {}, 0.0),
    ("cdpo", "sigmoid", {"label_smoothing": 0.2}, 0.2),
    ("robust", "robust", {"label_smoothing": 0.2}, 0.2),
    ("hinge", "hinge", {}, 0.0),
    ("ipo", "ipo", {}, 0.0),
    ("exo_pair", "exo_pair", {"epsilon": 1e-3}, 1e-3),
    ("nca_pair", "nca_pair", {}, 0.0),
    ("bco_pair", "bco_pair", {}, 0.0),
    ("sppo_hard", "sppo_hard", {}, 0.0),
    ("apo_zero", "apo_zero", {}, 0.0),
    ("apo_down", "apo_down", {}, 0.0),
    ("aot", "aot", {"label_smoothing": 0.1}, 0.1),
    ("aot_unpaired", "aot_unpaired", {"label_smoothing": 0.1}, 0.1),
    ("lrml", "discopop", {"tau": 0.05}, 0.0),
]


@pytest.mark.parametrize("name,loss_type,kwargs,ls", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5])
def test_matches_trl_formula(name: str, loss_type: str, kwargs: dict, ls: float, beta: float) -> None:
    rng = np.random.default_rng(7)
    pc, pr, rc, rr = (-rng.uniform(5, 80, size=32) for _ in range(4))
    ours = get_loss(name).fn(*(torch.tensor(x) for x in (pc, pr, rc, rr)), beta, **kwargs).numpy()
    ref = trl_reference(loss_type, pc, pr, rc, rr, beta, ls=ls)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_trl_knows_these_loss_types() -> None:
    """Guard against TRL renaming: every loss_type we compare with is one TRL still accepts."""
    import inspect

    from trl import DPOTrainer

    src = inspect.getsource(DPOTrainer)
    for _, loss_type, _, _ in CASES:
        assert f'"{loss_type}"' in src, loss_type
