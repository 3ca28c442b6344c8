"""The tinylm tier: plumbing on a micro config (fast), acceptance properties on a small one (slow)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evaluators import evaluate_loss
from evaluators.suites import RunSpec, suite_from_dict
from evaluators.tinylm import run_tinylm
from tests.evaluators.conftest import MICRO_LM, constant, dpo, sign_flipped_dpo


def micro(task: str = "sorting", seed: int = 0, **train) -> RunSpec:
    config = {k: dict(v) for k, v in MICRO_LM.items()}
    config["train"].update(train)
    params = {"n": 4} if task == "sorting" else {}
    return RunSpec("tinylm", task, seed, 0.1, 0.1, 5.0, task_params=params, config=config)


def test_micro_run_caches_reference_and_is_deterministic(cache_dir: Path) -> None:
    first = run_tinylm(micro(), dpo, {}, cache_dir, "cpu")
    files = list((cache_dir / "tinylm").glob("sorting-s0-*.pt"))
    assert len(files) == 1 and not list((cache_dir / "tinylm").glob("*.tmp"))
    mtime = files[0].stat().st_mtime_ns
    second = run_tinylm(micro(), dpo, {}, cache_dir, "cpu")
    assert files[0].stat().st_mtime_ns == mtime  # loaded, not rebuilt
    for key in ("gold_reward", "kl", "win_rate", "accuracy", "curve", "flags"):
        assert getattr(first, key) == getattr(second, key), key
    assert first.tier == "tinylm" and first.flags == []
    assert all(math.isfinite(x) for x in (first.gold_reward, first.kl, first.win_rate))
    assert len(first.curve) == 2 and first.extra["steps_done"] == 4


def test_constant_loss_leaves_policy_at_reference(cache_dir: Path) -> None:
    run = run_tinylm(micro(), constant, {}, cache_dir, "cpu")
    assert "no_gradient" in run.flags and not run.failed
    assert run.kl == pytest.approx(0.0, abs=1e-5)


def test_nan_loss_is_flagged(cache_dir: Path) -> None:
    run = run_tinylm(micro(), lambda pc, pr, rc, rr, beta: pc * float("inf") - pr * float("inf"),
                     {}, cache_dir, "cpu")
    assert "nan" in run.flags and run.failed


def test_sentiment_micro_run(cache_dir: Path) -> None:
    run = run_tinylm(micro("sentiment"), dpo, {}, cache_dir, "cpu")
    assert -1.0 <= run.gold_reward <= 1.0 and run.flags == []


# ---------------------------------------------------------------- acceptance (slow) ------------

SMALL_LM = {
    "model": {"n_layer": 2, "n_embd": 64, "n_head": 4},
    "sft": {"steps": 300, "batch_size": 64},
    "data": {"train_pairs": 1024, "heldout_pairs": 128, "eval_prompts": 256},
    "train": {"steps": 100, "batch_size": 64, "lr": 1e-3},
}


def small_suite(noise: list[float], betas: list[float]):
    groups = [
        {"tier": "tinylm", "task": "sentiment", "seeds": [0], "noise": noise, "betas": betas,
         "kl_budget": 8.0, **SMALL_LM},
        {"tier": "tinylm", "task": "sorting", "task_params": {"n": 5}, "seeds": [0],
         "noise": noise, "betas": betas, "kl_budget": 5.0, **SMALL_LM},
    ]
    return suite_from_dict({"name": "small", "groups": groups})


@pytest.fixture(scope="module")
def dpo_grid(cache_dir: Path):
    return evaluate_loss(dpo, small_suite([0.1, 0.4], [0.1, 1.0]), cache_dir=cache_dir)


def _run(result, task: str, noise: float, beta: float):
    (run,) = [r for r in result.runs if r.task == task and r.noise == noise and r.beta == beta]
    return run


@pytest.mark.slow
def test_dpo_beats_reference_on_every_task(dpo_grid) -> None:
    for task in ("sentiment", "sorting"):
        run = _run(dpo_grid, task, 0.1, 0.1)
        assert run.flags == []
        gain = (run.gold_reward - run.extra["reference_reward"]) / run.extra["reward_range"]
        assert gain > 0.08, (task, gain)
        assert run.win_rate > 0.6 and run.accuracy > 0.6


@pytest.mark.slow
def test_broken_losses_score_clearly_worse_than_dpo(dpo_grid, cache_dir: Path) -> None:
    suite = small_suite([0.1], [0.1])
    for broken in (constant, sign_flipped_dpo):
        bad = evaluate_loss(broken, suite, cache_dir=cache_dir)
        for run in bad.runs:
            good = _run(dpo_grid, run.task, 0.1, 0.1).extra["score"]
            assert run.extra["score"] < good - 0.05, (broken.__name__, run.task)
        assert bad.fitness < sum(_run(dpo_grid, t, 0.1, 0.1).extra["score"]
                                 for t in ("sentiment", "sorting")) / 2 - 0.1


@pytest.mark.slow
def test_more_label_noise_lowers_dpo_score(dpo_grid) -> None:
    for task in ("sentiment", "sorting"):
        clean = max(_run(dpo_grid, task, 0.1, b).extra["score"] for b in (0.1, 1.0))
        noisy = max(_run(dpo_grid, task, 0.4, b).extra["score"] for b in (0.1, 1.0))
        assert noisy < clean - 0.02, (task, clean, noisy)


@pytest.mark.slow
def test_larger_beta_lowers_kl(dpo_grid) -> None:
    for task in ("sentiment", "sorting"):
        assert _run(dpo_grid, task, 0.1, 1.0).kl < _run(dpo_grid, task, 0.1, 0.1).kl, task


@pytest.mark.slow
def test_same_seed_and_config_give_identical_scores(dpo_grid, cache_dir: Path) -> None:
    sorting_only = suite_from_dict({"name": "one", "groups": [{
        "tier": "tinylm", "task": "sorting", "task_params": {"n": 5}, "seeds": [0], "noise": [0.1],
        "betas": [0.1], "kl_budget": 5.0, **SMALL_LM}]})
    (again,) = evaluate_loss(dpo, sorting_only, cache_dir=cache_dir).runs
    before = _run(dpo_grid, "sorting", 0.1, 0.1)
    assert (again.gold_reward, again.kl, again.win_rate, again.accuracy, again.curve) == \
           (before.gold_reward, before.kl, before.win_rate, before.accuracy, before.curve)
    assert again.extra["score"] == before.extra["score"]
