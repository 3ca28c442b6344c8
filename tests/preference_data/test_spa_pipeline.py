"""The SPA loop end to end on a tiny tinylm config: deterministic, every pair stored and exportable,
refinement touches only self-labelled pairs, and the ``spa`` suite tier scores a loss."""

from __future__ import annotations

import math

import pytest
import torch

from candidate_losses import get_loss
from preference_data.spa.config import spa_config_from_dict
from preference_data.spa.pipeline import run_spa
from preference_data.spa.store import PairStore

TINY = {
    "task": {"name": "sentiment"},
    "reference": {"model": {"n_layer": 1, "n_embd": 32, "n_head": 2},
                  "sft": {"steps": 40, "batch_size": 32, "corpus": 512},
                  "data": {"train_pairs": 48, "heldout_pairs": 32, "eval_prompts": 48}},
    "data": {"seed_pairs": 24, "prompts_per_iteration": [48, 64]},
    "train": {"batch_size": 16, "seed_epochs": 2},
    "refinement": {"noise_fraction": 0.25, "warmup_fraction": 0.0, "threshold_window": 64},
}


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    def make(**overrides):
        raw = {k: dict(v) for k, v in TINY.items()}
        raw["cache_dir"] = str(tmp_path_factory.getbasetemp() / "spa-cache")
        for section, values in overrides.items():
            raw.setdefault(section, {}).update(values)
        return spa_config_from_dict(raw)
    return make


def _fingerprint(result):
    return ([(s.iteration, s.pairs, s.gold_reward, s.kl, s.label_accuracy, s.flagged_share, tuple(s.curve))
             for s in result.stages],
            [(p.prompt, p.chosen, p.rejected, p.label_prob, p.confidence, p.flagged) for p in result.store])


def test_loop_is_deterministic_stores_every_pair_and_round_trips(tiny_cfg, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_cfg()
    first = run_spa(cfg, device="cpu")
    second = run_spa(cfg, device="cpu")
    assert _fingerprint(first) == _fingerprint(second)
    assert [s.iteration for s in first.stages] == [0, 1, 2]
    assert not any(s.flags for s in first.stages)
    for s in first.stages:
        assert math.isfinite(s.gold_reward) and math.isfinite(s.kl)
    # every self-labelled pair is stored with its label probability, confidence and iteration
    for it in (1, 2):
        pairs = first.store.iteration(it)
        assert len(pairs) == first.stages[it].new_pairs > 0
        assert all(p.label_prob >= 0.5 and p.judge == "implicit" for p in pairs)
        assert any(p.confidence is not None for p in pairs)
    # refinement flags only self-labelled pairs, and flags the least confident ones
    assert not any(p.flagged for p in first.store.iteration(0))
    flagged = [p for p in first.store if p.flagged]
    assert flagged, "with K=25 % and no warm-up some pairs must be smoothed"
    assert all(p.smoothing == pytest.approx(cfg.refinement.alpha) for p in flagged)
    path = tmp_path / "pairs.jsonl"
    first.store.save_trl_jsonl(path)
    assert PairStore.load_trl_jsonl(path).pairs == first.store.pairs


def test_refinement_off_flags_nothing_and_changes_training(tiny_cfg):
    torch.set_num_threads(1)
    on = run_spa(tiny_cfg(), device="cpu")
    off = run_spa(tiny_cfg(refinement={"enabled": False}), device="cpu")
    assert not any(p.flagged for p in off.store)
    assert off.stages[0].gold_reward == on.stages[0].gold_reward       # seed stage untouched
    assert off.stages[1].curve != on.stages[1].curve                   # smoothing changed the loss


def test_gold_judge_labels_agree_with_gold(tiny_cfg):
    res = run_spa(tiny_cfg(judge={"kind": "gold", "gold_sample": False}), device="cpu")
    assert res.stages[1].label_accuracy == 1.0


def test_spa_tier_scores_a_loss(tiny_cfg, tmp_path):
    from evaluators.suites import RunSpec
    from preference_data.spa.tier import run_spa_tier

    spa = {k: TINY[k] for k in ("data", "train", "refinement")}
    spec = RunSpec(tier="spa", task="sentiment", seed=0, noise=0.0, beta=0.1, kl_budget=40.0,
                   config={**{k: TINY["reference"][k] for k in ("model", "sft", "data")}, "spa": spa})
    run = run_spa_tier(spec, get_loss("dpo").fn, {}, tmp_path / "cache", "cpu")
    assert run.tier == "spa" and not run.failed
    assert math.isfinite(run.gold_reward) and len(run.extra["stages"]) == 3
    assert run.extra["stages"][0]["gold_reward"] == run.extra["seed_only_gold_reward"]

    def broken(pc, pr, rc, rr, beta):
        return (pc - pr).sum()          # wrong shape: a scalar

    bad = run_spa_tier(spec, broken, {}, tmp_path / "cache", "cpu")
    assert bad.failed and "wrong_shape" in bad.flags


def test_spa_suite_is_declared_and_dispatched(tmp_path):
    import yaml

    from evaluators import evaluate_loss, load_suite
    from preference_data.spa.tier import spa_config_for

    shipped = load_suite("spa")
    assert {g.tier for g in shipped.groups} == {"spa"}
    cfg = spa_config_for(shipped.instances()[0], None)
    assert 0.03 <= cfg.data.gold_fraction <= 0.05
    tiny = {"name": "spa-tiny", "scoring": {"kl_weight": 0.0},
            "groups": [{"tier": "spa", "task": "sentiment", "seeds": [0], "betas": [0.1],
                        **{k: TINY["reference"][k] for k in ("model", "sft", "data")},
                        "spa": {k: TINY[k] for k in ("data", "train", "refinement")}}]}
    path = tmp_path / "spa-tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    result = evaluate_loss("dpo", str(path), cache_dir=tmp_path / "cache", device="cpu")
    run = result.runs[0]
    assert run.tier == "spa" and math.isfinite(result.fitness)
    expected = (run.gold_reward - run.extra["reference_reward"]) / run.extra["reward_range"]
    assert result.fitness == pytest.approx(expected)


@pytest.mark.slow  # two CLI runs of the loop
def test_cli_prints_per_iteration_metrics_and_json(tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from discovery.commands import app

    raw = {k: dict(v) for k, v in TINY.items()}
    raw["data"] = {"seed_pairs": 16, "prompts_per_iteration": [32]}
    raw["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "spa.yaml"
    path.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    text = runner.invoke(app, ["spa", str(path), "--out", str(tmp_path / "out")])
    assert text.exit_code == 0, text.output
    assert "seed DPO" in text.output and "iter 1" in text.output
    assert "label agreement" in text.output and "gold reward" in text.output and "KL" in text.output
    assert (tmp_path / "out" / "pairs.jsonl").read_text().count("\n") == 16 + json.loads(
        (tmp_path / "out" / "stages.json").read_text())["stages"][1]["new_pairs"]
    as_json = runner.invoke(app, ["spa", str(path), "--json"])
    assert as_json.exit_code == 0, as_json.output
    stages = json.loads(as_json.output)["stages"]
    assert [s["iteration"] for s in stages] == [0, 1]
    assert {"label_accuracy", "gold_reward", "kl"} <= set(stages[1])
    bad = runner.invoke(app, ["spa", str(tmp_path / "missing.yaml")])
    assert bad.exit_code != 0


def test_spa_heldout_is_the_same_loop_on_other_seeds():
    from evaluators import load_suite

    fit, held = load_suite("spa"), load_suite("spa_heldout")
    assert not {i.seed for i in fit.instances()} & {i.seed for i in held.instances()}
    strip = lambda g: {k: v for k, v in vars(g).items() if k != "seeds"}  # noqa: E731
    assert [strip(g) for g in fit.groups] == [strip(g) for g in held.groups]
    assert fit.scoring == held.scoring
