"""The pluralistic tier: population simulation, config validation, and a micro end-to-end run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from preference_data.pluralistic import (PluralisticConfig, aggregate_pairs, annotator_pool, make_utility,
                                         run_pluralistic, simulate_rows)
from evaluators.suites import RunSpec, load_suite
from evaluators.tasks import make_task
from tests.evaluators.conftest import MICRO_LM, dpo


def test_suite_declares_an_unequal_population() -> None:
    suite = load_suite("pluralistic")
    cfg = PluralisticConfig.from_dict(suite.instances()[0].config["pluralistic"])
    assert min(g.annotator_share for g in cfg.groups) <= 0.2
    assert len(suite.instances()) >= 3 and {s.tier for s in suite.instances()} == {"pluralistic"}


@pytest.mark.parametrize("raw, fragment", [
    ({"robust": "grpo"}, "by_group"), ({"objective": "median"}, "objective"), ({"colour": 1}, "unknown"),
    ({"groups": [{"name": "a", "population_share": 0.5}, {"name": "b", "population_share": 0.4}]}, "sum to 1"),
])
def test_bad_config_is_refused(raw: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        PluralisticConfig.from_dict(raw)


def test_utilities_are_normalised() -> None:
    task = make_task("sentiment")
    assert make_utility("brevity", task)([], ["good", "."]) == pytest.approx(1 - 2 / 8)
    assert make_utility("keyword:fun", task)([], ["fun", "."]) == 1.0
    u = make_utility("task", task)(["the", "plot", "was"], ["great", "!"])
    assert 0.5 < u <= 1.0


def test_pool_and_simulated_choices_follow_each_groups_utility() -> None:
    cfg = PluralisticConfig.from_dict({"annotators": 20, "overlap": 5})
    pool = annotator_pool(cfg)
    assert len(pool) == 20 and pool.count(1) == 3  # 15 % brevity annotators
    n = 400
    # group 0 prefers a, group 1 prefers b, strongly (utility gap 1 at temperature 0.1)
    utilities = np.stack([np.stack([np.ones(n), np.zeros(n)], -1), np.stack([np.zeros(n), np.ones(n)], -1)])
    rows = simulate_rows(["p"] * n, ["x"] * n, ["y y"] * n, utilities, cfg, noise=0.1, rng=np.random.default_rng(0))
    assert len(rows) == n * 5
    for group, fav in (("positivity", "a"), ("brevity", "b")):
        votes = [r["value"].endswith(fav) for r in rows if r["annotator_attributes"]["group"] == group]
        assert 0.85 < np.mean(votes) < 0.95  # 10 % flips
    plain, _ = aggregate_pairs(rows, cfg)
    grouped, report = aggregate_pairs(rows, PluralisticConfig.from_dict(
        {"by_group": True, "weighting": "poststrat"}))
    assert len(plain) == n and sum(p["provenance"]["chosen_response_id"].endswith("a") for p in plain) > 0.9 * n
    mass = {g: sum(p["weight"] for p in grouped if p["group"] == g) for g in ("positivity", "brevity")}
    assert mass["brevity"] / (mass["brevity"] + mass["positivity"]) == pytest.approx(0.3)


@pytest.mark.parametrize("variant", [{"by_group": True, "robust": "grpo"}, {"weighting": "poststrat"}])
def test_micro_run_reports_every_group(cache_dir: Path, variant: dict) -> None:
    config = {k: dict(v) for k, v in MICRO_LM.items()}
    config["pluralistic"] = {"annotators": 10, "overlap": 3, **variant}
    spec = RunSpec("pluralistic", "sentiment", 0, 0.1, 0.5, 8.0, config=config)
    run = run_pluralistic(spec, dpo, {}, cache_dir, "cpu")
    again = run_pluralistic(spec, dpo, {}, cache_dir, "cpu")
    assert run.tier == "pluralistic" and run.flags == []
    groups = run.extra["groups"]
    assert set(groups) == {"positivity", "brevity"}
    assert all(0.0 <= g["gold"] <= 1.0 and 0.0 <= g["reference"] <= 1.0 for g in groups.values())
    assert run.gold_reward == pytest.approx(min(g["gold"] for g in groups.values()))
    assert math.isfinite(run.kl) and 0.0 <= run.accuracy <= 1.0
    assert (run.extra["grpo_alpha"] is not None) == ("robust" in variant)
    assert run.gold_reward == again.gold_reward and run.curve == again.curve  # deterministic


def test_evaluate_loss_accepts_the_pluralistic_tier(cache_dir: Path) -> None:
    from evaluators import evaluate_loss
    from evaluators.suites import suite_from_dict
    config = {k: dict(v) for k, v in MICRO_LM.items()}
    suite = suite_from_dict({"name": "p", "groups": [{"tier": "pluralistic", "task": "sentiment", "seeds": [0],
                                                      "betas": [0.5], "noise": [0.1], **config,
                                                      "pluralistic": {"objective": "population"}}]})
    result = evaluate_loss(dpo, suite, cache_dir=cache_dir)
    assert math.isfinite(result.fitness) and result.runs[0].extra["objective"] == "population"
