"""Training-side reducers: weighted mean, dimension conditioning, group-robust (GRPO) weights."""

from __future__ import annotations

import math

import pytest
import torch

from evaluators.granular import condition_on_dimension, group_mean_losses, group_robust_step


def test_dimension_conditioning() -> None:
    assert condition_on_dimension("Hi?", "politeness") == "[politeness] Hi?"
    assert condition_on_dimension("Hi?", None) == "Hi?"


def test_group_mean_losses() -> None:
    lg, present = group_mean_losses(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 0, 2]), 4)
    assert lg.tolist() == pytest.approx([1.5, 0.0, 4.0, 0.0]) and present.tolist() == [True, False, True, False]


def test_grpo_step_is_exponentiated_gradient_on_group_losses() -> None:
    losses = torch.tensor([1.0, 1.0, 3.0], requires_grad=True)
    groups = torch.tensor([0, 0, 1])
    alpha = torch.tensor([0.5, 0.5])
    loss, new_alpha = group_robust_step(losses, groups, alpha, eta=0.5)
    raw = torch.tensor([0.5 * math.exp(0.5 * 1.0), 0.5 * math.exp(0.5 * 3.0)])
    expected = raw / raw.sum()
    assert new_alpha.tolist() == pytest.approx(expected.tolist())
    assert loss.item() == pytest.approx(float(expected[0] * 1.0 + expected[1] * 3.0))
    loss.backward()  # gradient flows through L_g only: alpha_g / n_g per example
    e = expected.tolist()
    assert losses.grad.tolist() == pytest.approx([e[0] / 2, e[0] / 2, e[1]])
    assert alpha.tolist() == [0.5, 0.5]  # pure: input not mutated


def test_grpo_absent_group_keeps_relative_weight_and_worst_group_grows() -> None:
    a = torch.full((3,), 1 / 3, dtype=torch.float64)
    for _ in range(20):
        _, a = group_robust_step(torch.tensor([0.1, 2.0], dtype=torch.float64), torch.tensor([0, 1]), a, eta=1.0)
    assert a[1] > 0.95 and a.sum().item() == pytest.approx(1.0)
    assert a[0] / a[2] == pytest.approx(math.exp(20 * 0.1), rel=1e-6)  # group 2 never seen: not updated


def test_grpo_minimises_worst_group_on_a_toy_problem() -> None:
    """One scalar fits two groups with targets 0 (75% of data) and 1: mean -> 0.25, GRPO -> ~0.5."""
    def fit(robust: bool) -> float:
        theta = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([theta], lr=0.1)
        targets = torch.tensor([0.0, 0.0, 0.0, 1.0])
        groups = torch.tensor([0, 0, 0, 1])
        alpha = torch.full((2,), 0.5)
        for _ in range(400):
            losses = (theta - targets) ** 2
            if robust:
                loss, alpha = group_robust_step(losses, groups, alpha, eta=0.5)
            else:
                loss = losses.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(theta.detach())
    assert fit(False) == pytest.approx(0.25, abs=0.02)
    assert fit(True) == pytest.approx(0.5, abs=0.05)


def test_example_scales_reproduce_the_reductions_through_a_plain_mean() -> None:
    from evaluators.granular import example_scales
    losses = torch.tensor([1.0, 2.0, 4.0, 8.0])
    w = torch.tensor([1.0, 0.5, 2.0, 0.5])
    assert (example_scales(None, weights=w) * losses).mean().item() == pytest.approx(float((w * losses).sum() / w.sum()))
    groups, alpha = torch.tensor([0, 0, 1, 2]), torch.tensor([0.2, 0.3, 0.5])
    lg, _ = group_mean_losses(losses, groups, 3, w)
    assert (example_scales(groups, alpha, w) * losses).mean().item() == pytest.approx(float((alpha * lg).sum()))
