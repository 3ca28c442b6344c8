"""Training-side reducers: weighted mean, dimension conditioning, group-robust (GRPO) weights."""

from __future__ import annotations

import math

import pytest
import torch

from preference_data.weighting import (GroupRobustReducer, condition_on_dimension, condition_pairs,
                                       group_ids, group_mean_losses, group_robust_step, weighted_mean)


def test_weighted_mean_matches_definition_and_rejects_bad_weights() -> None:
    losses = torch.tensor([1.0, 2.0, 4.0])
    assert weighted_mean(losses, torch.tensor([1.0, 0.0, 3.0])).item() == pytest.approx(13 / 4)
    assert weighted_mean(losses).item() == pytest.approx(7 / 3)
    assert weighted_mean(losses, torch.ones(3) * 5).item() == pytest.approx(7 / 3)
    with pytest.raises(ValueError):
        weighted_mean(losses, torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError):
        weighted_mean(losses, torch.ones(2))


def test_weighted_mean_gradient_is_weight_share() -> None:
    losses = torch.tensor([1.0, 2.0], requires_grad=True)
    weighted_mean(losses, torch.tensor([1.0, 3.0])).backward()
    assert losses.grad.tolist() == pytest.approx([0.25, 0.75])


def test_dimension_conditioning() -> None:
    assert condition_on_dimension("Hi?", "politeness") == "[politeness] Hi?"
    assert condition_on_dimension("Hi?", None) == "Hi?"
    out = condition_pairs([{"prompt": "Q", "chosen": "a", "rejected": "b", "dimension": "brevity", "weight": 2}])
    assert out[0]["prompt"] == "[brevity] Q" and out[0]["weight"] == 2


def test_group_mean_losses_and_ids() -> None:
    gid, vocab = group_ids(["s", "n", "n", None], vocabulary=["n", "s", None])
    assert gid.tolist() == [1, 0, 0, 2] and vocab == ["n", "s", None]
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
    reducer = GroupRobustReducer(3, eta=1.0)
    for _ in range(20):
        reducer(torch.tensor([0.1, 2.0]), torch.tensor([0, 1]))
    a = reducer.alpha
    assert a[1] > 0.95 and a.sum().item() == pytest.approx(1.0)
    assert a[0] / a[2] == pytest.approx(math.exp(20 * 0.1), rel=1e-6)  # group 2 never seen: not updated


def test_grpo_minimises_worst_group_on_a_toy_problem() -> None:
    """One scalar fits two groups with targets 0 (75% of data) and 1: mean -> 0.25, GRPO -> ~0.5."""
    def fit(robust: bool) -> float:
        theta = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([theta], lr=0.1)
        targets = torch.tensor([0.0, 0.0, 0.0, 1.0])
        groups = torch.tensor([0, 0, 0, 1])
        reducer = GroupRobustReducer(2, eta=0.5)
        for _ in range(400):
            losses = (theta - targets) ** 2
            loss = reducer(losses, groups) if robust else losses.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(theta.detach())
    assert fit(False) == pytest.approx(0.25, abs=0.02)
    assert fit(True) == pytest.approx(0.5, abs=0.05)


def test_example_scales_reproduce_the_reductions_through_a_plain_mean() -> None:
    from preference_data.weighting import example_scales
    losses = torch.tensor([1.0, 2.0, 4.0, 8.0])
    w = torch.tensor([1.0, 0.5, 2.0, 0.5])
    assert (example_scales(None, weights=w) * losses).mean().item() == pytest.approx(weighted_mean(losses, w).item())
    groups, alpha = torch.tensor([0, 0, 1, 2]), torch.tensor([0.2, 0.3, 0.5])
    lg, _ = group_mean_losses(losses, groups, 3, w)
    assert (example_scales(groups, alpha, w) * losses).mean().item() == pytest.approx(float((alpha * lg).sum()))
