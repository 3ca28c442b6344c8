"""DiscoPOP's first-written AQL and PFL: registered under their own names, and different from the
cleaned forms exactly where the reference sheet says they are."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from candidate_losses import get_loss


def _inputs(seed: int = 0, n: int = 8, scale: float = 20.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * scale for _ in range(4)]


def test_original_forms_are_registered_and_declared():
    assert get_loss("aql_original").batch_coupled and not get_loss("pfl_original").batch_coupled
    assert get_loss("aql-original").name == "aql_original"


def test_aql_original_uses_a_beta_wide_switch_on_rho():
    pc, pr, rc, rr = _inputs()
    beta = 0.05
    rho = (pc - rc) - (pr - rr)
    m = 0.5 + 0.01 * (torch.sigmoid(rho.mean()) - 0.5)
    q = torch.sigmoid(-beta * (rho - m))
    expected = q * -F.logsigmoid(beta * rho) + (1 - q) * torch.relu(1 - beta * rho)
    got = get_loss("aql_original").fn(pc, pr, rc, rr, beta)
    assert torch.allclose(got, expected, atol=1e-6)
    cleaned = get_loss("aql").fn(pc, pr, rc, rr, beta)
    assert (got - cleaned).abs().max() > 1e-2  # the clean-up changed AQL at the search's beta


def test_aql_original_is_batch_coupled():
    pc, pr, rc, rr = _inputs()
    fn = get_loss("aql_original").fn
    whole = fn(pc, pr, rc, rr, 0.05)
    first_half = fn(pc[:4], pr[:4], rc[:4], rr[:4], 0.05)
    assert not torch.allclose(whole[:4], first_half)


def test_pfl_original_ignores_beta_and_equals_cleaned_pfl_at_beta_one():
    pc, pr, rc, rr = _inputs(scale=1.0)
    fn = get_loss("pfl_original").fn
    assert torch.equal(fn(pc, pr, rc, rr, 0.05), fn(pc, pr, rc, rr, 0.5))
    assert torch.allclose(fn(pc, pr, rc, rr, 0.05), get_loss("pfl").fn(pc, pr, rc, rr, 1.0))
    assert not torch.allclose(fn(pc, pr, rc, rr, 0.05), get_loss("pfl").fn(pc, pr, rc, rr, 0.05))
