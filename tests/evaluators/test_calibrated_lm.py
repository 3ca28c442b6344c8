"""The calibrated_lm tier: a group trained in one vectorised pass equals its runs trained one by one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evaluators import evaluate_loss, load_suite
from evaluators.calibrated_lm import CalibratedLMConfig, run_calibrated_group, run_calibrated_lm
from evaluators.suites import RunSpec, list_suites, suite_from_dict
from tests.evaluators.conftest import constant, dpo

MICRO = {
    "model": {"n_layer": 1, "n_embd": 32, "n_head": 2},
    "sft": {"steps": 20, "batch_size": 32, "corpus": 256},
    "data": {"train_pairs": 80, "heldout_pairs": 32, "eval_prompts": 32},
    "train": {"epochs": 2, "pairs": 48, "batch_size": 16, "lr": 3e-3, "log_every": 2},
}
FIELDS = ("gold_reward", "kl", "win_rate", "accuracy")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own reference cache (other modules glob the session cache for their files)."""
    return tmp_path_factory.mktemp("calibrated-cache")


def specs(task: str = "sentiment", params: dict | None = None, **train) -> list[RunSpec]:
    config = {k: dict(v) for k, v in MICRO.items()}
    config["train"].update(train)
    params = {"length": 6} if params is None and task == "sentiment" else (params or {"n": 4})
    return [RunSpec("calibrated_lm", task, seed, noise, beta, 5.0, task_params=params, config=config)
            for seed in (0, 1) for noise in (0.0, 0.3) for beta in (0.1, 1.0)]


@pytest.mark.parametrize("task", ["sentiment", "sorting"])
def test_group_equals_runs_one_by_one(cache_dir: Path, task: str) -> None:
    group = specs(task)
    together = run_calibrated_group(group, dpo, {}, cache_dir, "cpu")
    assert len(together) == len(group)
    for spec, run in zip(group, together):
        alone = run_calibrated_lm(spec, dpo, {}, cache_dir, "cpu")
        assert (run.seed, run.beta, run.noise) == (spec.seed, spec.beta, spec.noise)
        assert run.flags == alone.flags == []
        for key in FIELDS:
            assert getattr(run, key) == pytest.approx(getattr(alone, key), abs=1e-5), key
        assert run.curve == pytest.approx(alone.curve, abs=1e-5)
        assert run.extra["steps_done"] == 6


def test_group_is_deterministic_and_moves_the_policy(cache_dir: Path) -> None:
    first = run_calibrated_group(specs(), dpo, {}, cache_dir, "cpu")
    second = run_calibrated_group(specs(), dpo, {}, cache_dir, "cpu")
    for a, b in zip(first, second):
        for key in (*FIELDS, "curve", "flags"):
            assert getattr(a, key) == getattr(b, key), key
    assert all(r.kl > 0.0 and math.isfinite(r.gold_reward) for r in first)


def test_constant_loss_is_exactly_the_reference(cache_dir: Path) -> None:
    runs = run_calibrated_group(specs(), constant, {}, cache_dir, "cpu")
    for run in runs:
        assert run.flags == ["no_gradient"] and not run.failed
        assert run.kl == 0.0                          # coupled samples: same responses
        assert run.gold_reward == run.extra["reference_reward"]
        assert run.win_rate == 0.5


def test_trajectory_and_fixed_length(cache_dir: Path) -> None:
    (run,) = run_calibrated_group(specs(eval_epochs=[1, 2])[:1], dpo, {}, cache_dir, "cpu")
    assert [p["epoch"] for p in run.extra["trajectory"]] == [1, 2]
    assert run.extra["trajectory"][-1]["kl"] == pytest.approx(run.kl, abs=1e-6)


def test_evaluate_loss_uses_the_group_runner(cache_dir: Path) -> None:
    group = {"tier": "calibrated_lm", "task": "sentiment", "task_params": {"length": 6}, "seeds": [0, 1],
             "noise": [0.0], "betas": [0.1, 1.0], "kl_budget": 5.0, **MICRO}
    suite = suite_from_dict({"name": "t", "groups": [group, dict(group, seeds=[2])]})
    result = evaluate_loss(dpo, suite, cache_dir=cache_dir, device="cpu")
    assert [(r.seed, r.beta) for r in result.runs] == [(0, 0.1), (0, 1.0), (1, 0.1), (1, 1.0), (2, 0.1), (2, 1.0)]
    assert all(r.extra["group_size"] == (4 if r.seed < 2 else 2) for r in result.runs)
    assert math.isfinite(result.fitness) and "score" in result.runs[0].extra
    alone = evaluate_loss(dpo, suite_from_dict({"name": "t", "groups": [dict(group, seeds=[1], betas=[1.0])]}),
                          cache_dir=cache_dir, device="cpu")
    assert alone.runs[0].kl == pytest.approx(result.runs[3].kl, abs=1e-5)


def test_bad_config_is_a_clear_error(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epoch'\]"):
        CalibratedLMConfig.from_dict({"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="usable pairs"):
        run_calibrated_group(specs(pairs=10_000)[:1], dpo, {}, cache_dir, "cpu")


@pytest.mark.parametrize("name", [s for s in list_suites() if s.startswith("calibrated")])
def test_calibrated_suites_load(name: str) -> None:
    suite = load_suite(name)
    for group in suite.groups:
        assert group.tier == "calibrated_lm"
        CalibratedLMConfig.from_dict(group.config)


@pytest.mark.parametrize("held_out", ["calibrated_heldout", "calibrated_transfer"])
@pytest.mark.parametrize("search", ["calibrated_fitness", "calibrated_quickstart", "calibrated_screen"])
def test_held_out_suites_are_disjoint_from_search_suites(search: str, held_out: str) -> None:
    held = load_suite(held_out).instances()
    seen = load_suite(search).instances()
    # no seed (so no reference, pair, label or sampling noise), no noise rate, no beta shared
    assert not {s.seed for s in held} & {s.seed for s in seen}
    assert not {s.noise for s in held} & {s.noise for s in seen}
    assert not {s.beta for s in held} & {s.beta for s in seen}
    # the same measurement: same regime (model, SFT, data, training) and scoring
    assert {repr(s.config) for s in held} == {repr(s.config) for s in seen}
    assert load_suite(held_out).scoring == load_suite(search).scoring


@pytest.mark.slow
def test_quickstart_suite_separates_dpo_from_its_sign_flip(cache_dir: Path) -> None:
    """The real regime (28k-parameter GPT-2, 4 epochs): DPO improves on the reference, the
    sign-flipped DPO gets worse, both at a KL in the published range."""
    from tests.evaluators.conftest import sign_flipped_dpo

    good = evaluate_loss(dpo, "calibrated_quickstart", cache_dir=cache_dir, device="cpu")
    bad = evaluate_loss(sign_flipped_dpo, "calibrated_quickstart", cache_dir=cache_dir, device="cpu")
    assert good.fitness > 0.02 > -0.02 > bad.fitness
    assert all(0.05 < r.kl < 3.0 for r in good.runs) and not any(r.flags for r in good.runs)
