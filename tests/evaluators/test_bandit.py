"""The bandit tier: fast, exact, discriminative (the acceptance properties, on the screen tier)."""

from __future__ import annotations

import math

import pytest
import torch

from evaluators.bandit import run_bandit
from evaluators.suites import RunSpec, Scoring
from evaluators.metrics import run_score
from tests.evaluators.conftest import constant, dpo, sign_flipped_dpo


def spec(seed: int = 0, noise: float = 0.1, beta: float = 0.1, **bandit) -> RunSpec:
    return RunSpec("bandit", "bandit", seed, noise, beta, kl_budget=1.5,
                   config={"bandit": bandit} if bandit else {})


def test_dpo_beats_reference_and_broken_losses() -> None:
    good = run_bandit(spec(), dpo, {})
    ref = good.extra["reference_reward"]
    assert good.flags == []
    assert good.gold_reward > ref + 0.3
    assert good.win_rate > 0.6 and good.accuracy > 0.6 and good.kl > 0
    flipped = run_bandit(spec(), sign_flipped_dpo, {})
    assert flipped.gold_reward < ref - 0.3 and flipped.win_rate < 0.4
    const = run_bandit(spec(), constant, {})
    assert "no_gradient" in const.flags
    assert const.gold_reward == pytest.approx(ref) and const.kl == pytest.approx(0.0, abs=1e-6)


def test_run_is_deterministic() -> None:
    # (speed, < 1 s per run, is measured by benchmarks/evaluators.py, not asserted here)
    a = run_bandit(spec(seed=3), dpo, {})
    b = run_bandit(spec(seed=3), dpo, {})
    assert (a.gold_reward, a.kl, a.win_rate, a.accuracy, a.curve) == \
           (b.gold_reward, b.kl, b.win_rate, b.accuracy, b.curve)
    c = run_bandit(spec(seed=4), dpo, {})
    assert c.gold_reward != a.gold_reward


def test_label_noise_lowers_reward_and_beta_lowers_kl() -> None:
    clean, noisy = (run_bandit(spec(noise=n), dpo, {}) for n in (0.0, 0.4))
    assert noisy.gold_reward < clean.gold_reward - 0.1
    small, large = (run_bandit(spec(noise=0.0, beta=b), dpo, {}) for b in (0.1, 1.0))
    assert large.kl < small.kl * 0.8


def nan_loss(pc, pr, rc, rr, beta):
    return pc * float("nan")


def wrong_shape(pc, pr, rc, rr, beta):
    return (pc - pr).mean()


def raising(pc, pr, rc, rr, beta):
    raise ZeroDivisionError("boom")


def explosive(pc, pr, rc, rr, beta):
    return -1e4 * (pc - pr)


@pytest.mark.parametrize("fn, flag", [(nan_loss, "nan"), (wrong_shape, "wrong_shape"),
                                      (raising, "error")])
def test_misbehaving_losses_are_flagged_and_scored_as_failures(fn, flag) -> None:
    run = run_bandit(spec(), fn, {})
    assert flag in run.flags and run.failed
    assert run_score(run, Scoring(failure_score=-0.5), 1.5) == -0.5


def test_divergence_is_flagged() -> None:
    run = run_bandit(spec(lr=5.0, diverge_kl=2.0), explosive, {})
    assert "diverged" in run.flags and run.failed
    assert math.isfinite(run.kl)


def test_loss_kwargs_reach_the_loss() -> None:
    seen: dict[str, float] = {}

    def with_hyper(pc, pr, rc, rr, beta, tau: float = 1.0):
        seen["tau"] = tau
        return dpo(pc, pr, rc, rr, beta)

    run_bandit(spec(), with_hyper, {"tau": 0.05})
    assert seen["tau"] == 0.05


def test_batch_coupled_loss_is_supported() -> None:
    def coupled(pc, pr, rc, rr, beta):
        z = beta * ((pc - rc) - (pr - rr))
        w = torch.softmax(-z, dim=0).detach() * z.shape[0]
        return -w * torch.nn.functional.logsigmoid(z)

    run = run_bandit(spec(), coupled, {})
    assert run.flags == [] and run.gold_reward > run.extra["reference_reward"] + 0.2
