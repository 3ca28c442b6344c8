"""The rediscovery benchmark's pieces: beta tuning on fitness runs, the success rule with the paired
s.e., and the behaviour-fingerprint nearest neighbour among known losses."""

from __future__ import annotations

import math

import pytest
import torch.nn.functional as F

from discovery.review.rediscovery import (at_beta, fingerprint_distance, library_fingerprints, nearest_known,
                                          success, tuned_beta)
from discovery.sandbox.probe import fingerprint
from evaluators.metrics import suite_fitness
from evaluators.paired import PairedDifference, paired_difference
from evaluators.results import RunResult, SuiteResult
from evaluators.suites import Scoring


def result(loss: str, scores: dict[tuple[int, float], float]) -> SuiteResult:
    runs = [RunResult("t", "calibrated_lm", seed, beta, 0.3, 0.0, 0.0, 0.5, 0.5,
                      extra={"score": score, "group": 0, "task_params": {}})
            for (seed, beta), score in scores.items()]
    fitness, se, per_task = suite_fitness(runs, [0] * len(runs), ["t"], Scoring(beta_aggregate="mean"))
    return SuiteResult(loss, "s", fitness, se, runs, per_task=per_task)


def test_tuned_beta_is_the_best_mean_over_seeds_and_pairs_across_betas() -> None:
    cand = result("c", {(0, .1): .1, (0, 1.): .30, (1, .1): .2, (1, 1.): .20, (2, .1): .3, (2, 1.): .25})
    dpo = result("dpo", {(0, .1): .2, (0, 1.): .10, (1, .1): .1, (1, 1.): .00, (2, .1): .2, (2, 1.): .10})
    assert tuned_beta(cand) == 1.0 and tuned_beta(dpo) == 0.1   # means .25 vs .2; .167 vs .067
    d = paired_difference(at_beta(cand, 1.0), at_beta(dpo, 0.1), Scoring(beta_aggregate="mean"), same_betas=False)
    assert d.difference == pytest.approx((0.1 + 0.1 + 0.05) / 3)
    with pytest.raises(ValueError):
        at_beta(cand, 0.3)


def test_tuned_beta_breaks_ties_towards_the_smaller_beta() -> None:
    assert tuned_beta(result("c", {(0, .1): .2, (0, .3): .2, (1, .1): .1, (1, .3): .1})) == 0.1


@pytest.mark.parametrize("difference, se, expected", [
    (0.021, 0.01, True), (0.02, 0.01, False), (0.05, math.nan, False), (0.05, 0.0, False), (-0.05, 0.01, False)])
def test_success_needs_more_than_two_paired_se(difference: float, se: float, expected: bool) -> None:
    d = PairedDifference("s", "c", "dpo", difference, se, 8, 0.02)
    assert success(d) is expected


def _scaled_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return 3.0 * -F.logsigmoid(beta * h) + 0.7       # DPO up to scale and constant: same behaviour


def _smoothed(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    z = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    return -0.88 * F.logsigmoid(z) - 0.12 * F.logsigmoid(-z)   # cDPO-like, eps 0.12


def test_fingerprint_nearest_neighbour_finds_the_known_shape() -> None:
    known = library_fingerprints(["dpo", "cdpo", "ipo", "sppo_hard", "hinge"])
    assert fingerprint_distance(known["dpo"], known["dpo"]) == pytest.approx(0.0, abs=1e-12)
    scaled = fingerprint(_scaled_dpo)[1]
    assert nearest_known(scaled, known)[0].name == "dpo"
    assert nearest_known(scaled, known)[0].distance == pytest.approx(0.0, abs=1e-6)
    near = nearest_known(fingerprint(_smoothed)[1], known, k=2)
    assert near[0].name == "cdpo" and near[0].distance < near[1].distance
    assert nearest_known(known["ipo"], {k: v for k, v in known.items() if k != "ipo"}, k=5)[0].distance > 0.01


def test_fingerprint_distance_rejects_a_foreign_vector() -> None:
    with pytest.raises(ValueError, match="expected"):
        fingerprint_distance([0.0] * 10, [0.0] * 10)


def test_distance_is_two_for_the_opposite_loss() -> None:
    flipped = fingerprint(lambda pc, pr, rc, rr, beta: F.logsigmoid(beta * ((pc - rc) - (pr - rr))))[1]
    dpo = library_fingerprints(["dpo"])["dpo"]
    assert fingerprint_distance(flipped, dpo) == pytest.approx(2.0, abs=1e-6)


def test_rediscover_campaign_starts_from_the_start_set_on_disjoint_suites() -> None:
    from pathlib import Path

    from discovery.config import load_config
    from evaluators.suites import load_suite

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "rediscover.yaml")
    assert sorted(cfg.baselines) == ["dpo", "hinge", "ipo", "kto_pair"] and cfg.proposer.kind == "mutation"
    fitness, heldout = load_suite(cfg.cascade.fitness_suite), load_suite(cfg.cascade.heldout_suite)
    assert not {s.seed for s in fitness.instances()} & {s.seed for s in heldout.instances()}
    assert [g.config for g in fitness.groups] == [g.config for g in heldout.groups]   # same regime
