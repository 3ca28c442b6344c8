"""DiscoPOP's discovered losses (and paired KTO) agree with a float64 NumPy transcription of the
published definitions (discopop-facts: rho, z = beta*rho, tau = 0.05), on inputs where no
numerical safeguard is active."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from candidate_losses import get_loss

TAU = 0.05


def logsig(x):
    return -np.logaddexp(0.0, -x)


def sig(x):
    return np.exp(logsig(x))


def reference(name, pc, pr, rc, rr, beta):
    rho = (pc - rc) - (pr - rr)
    z = beta * rho
    s = z / TAU
    if name == "lrml":
        return (1 - sig(s)) * -logsig(z) + sig(s) * np.exp(-z)
    if name == "padll":
        return 0.9 * (1 - 0.5 * (rho < 0)) * -logsig(z)
    if name == "cell":
        return 0.5 * -logsig(z) + 0.5 * np.exp(-z)
    if name == "pfl":
        return np.where(pc > pr, -logsig(z) / 2, 2 * np.maximum(0, 1 - z))
    if name == "dbaql":
        w = sig(np.var(s, ddof=1))
        return w * -logsig(z / 0.9) + (1 - w) * np.exp(-0.9 * z)
    if name == "aql":
        m = 0.5 + 0.01 * (sig(s.mean()) - 0.5)
        q = sig(-(s - m))
        return q * -logsig(z) + (1 - q) * np.maximum(0, 1 - z)
    if name == "aqfl":
        a = np.std(s, ddof=1) * sig(-s).mean()
        a = a + 0.05 * (sig(s.mean()) - a)
        r = sig(0.1 * np.abs(s - a))
        return r * -logsig(z) + (1 - r) * np.maximum(0, 1 - z)
    if name == "kto_pair":
        rw, rl = pc - rc, pr - rr
        z0w, z0l = max(rw.mean(), 0), max(rl.mean(), 0)
        return (1 - sig(beta * (rw - z0l))) + (1 - sig(beta * (z0w - rl)))
    raise KeyError(name)


@pytest.mark.parametrize("name", ["lrml", "padll", "cell", "pfl", "dbaql", "aql", "aqfl", "kto_pair"])
@pytest.mark.parametrize("beta", [0.05, 0.1])
def test_matches_published_definition(name: str, beta: float) -> None:
    rng = np.random.default_rng(3)
    pc, pr, rc, rr = (-rng.uniform(5, 60, size=24) for _ in range(4))
    ours = get_loss(name).fn(*(torch.tensor(x) for x in (pc, pr, rc, rr)), beta).numpy()
    np.testing.assert_allclose(ours, reference(name, pc, pr, rc, rr, beta), rtol=1e-9, atol=1e-12)


def test_linear_tail_keeps_exp_losses_finite_and_continuous() -> None:
    """Beyond exp(30) CELL/DBAQL continue linearly: finite, and continuous at the knee."""
    fn = get_loss("cell").fn
    zero = torch.zeros(3, dtype=torch.float64)
    margins = torch.tensor([-30 + 1e-9, -30 - 1e-9, -1e4], dtype=torch.float64)
    out = fn(zero, -margins, zero, zero, 1.0)  # h = margins, z = margins
    assert torch.isfinite(out).all()
    assert abs(out[0].item() - out[1].item()) / out[0].item() < 1e-6
