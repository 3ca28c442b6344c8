"""The held-out verdict against DPO (paired by seed) that the run, leaderboard, report and tune print."""

from __future__ import annotations

import pytest

from discovery.review.verdict import heldout_verdict
from evaluators.results import RunResult, SuiteResult
from evaluators.suites import Scoring


def stored(loss: str, per_seed: list[float], *, beta: float = 0.1, seeds: list[int] | None = None) -> dict:
    """A stored held-out SuiteResult dict with one run per seed scored `per_seed`."""
    seeds = seeds or list(range(1000, 1000 + len(per_seed)))
    runs = [RunResult("sentiment", "calibrated_lm", s, beta, 0.2, 0.0, 0.0, 0.5, 0.5,
                      extra={"score": x, "group": 0, "task_params": {}}) for s, x in zip(seeds, per_seed)]
    return SuiteResult(loss, "calibrated_heldout", sum(per_seed) / len(per_seed), 0.0, runs).to_dict()


DPO = [0.10, 0.30, 0.20, 0.05, 0.25]


def test_a_finalist_ahead_by_more_than_two_paired_se_beats_dpo() -> None:
    ahead = stored("a", [x + d for x, d in zip(DPO, (0.010, 0.014, 0.012, 0.011, 0.013))])
    level = stored("b", [x + d for x, d in zip(DPO, (0.02, -0.02, 0.01, -0.01, 0.0))])
    v = heldout_verdict([("g1-s0", "a", ahead), ("g1-s1", "b", level)], stored("dpo", DPO), Scoring())
    assert v.beats and v.best_id == "g1-s0" and v.n == 5
    assert v.difference == pytest.approx(0.012) and v.se == pytest.approx(0.000707, abs=1e-6)
    assert v.text.startswith("held-out: g1-s0 - dpo = +0.0120 ± 0.0007 (paired s.e., n=5) -> beats DPO by 17.0 s.e.")
    assert len(v.comparisons) == 2 and v.to_dict()["detectable"] == pytest.approx(2 * v.se)


def test_no_winner_is_said_plainly_with_the_detectable_difference() -> None:
    noisy = stored("b", [x + d for x, d in zip(DPO, (0.03, -0.02, 0.01, -0.01, 0.0))])
    v = heldout_verdict([("g1-s1", "b", noisy)], stored("dpo", DPO), Scoring())
    assert not v.beats
    assert v.text.startswith("no candidate beats DPO on held-out (best: g1-s1 - dpo = +0.0020 ± ")
    assert "(paired s.e., n=5); detectable at 2 s.e.: 0.0172)" in v.text


def test_tuned_comparison_pairs_seeds_across_each_loss_own_beta() -> None:
    cand = stored("a", [x + 0.05 for x in DPO], beta=0.3)
    v = heldout_verdict([("g1-s0", "a", cand)], stored("dpo", DPO, beta=0.05), Scoring(), tuned=True)
    assert v.against == "tuned DPO" and "tuned dpo = +0.0500" in v.text and "beats tuned DPO" in v.text
    untuned = heldout_verdict([("g1-s0", "a", cand)], stored("dpo", DPO, beta=0.05), Scoring())
    assert untuned.difference is None and "no held-out verdict" in untuned.text  # betas differ: refuses


def test_missing_or_unpairable_results_give_no_verdict() -> None:
    assert "DPO has no held-out score" in heldout_verdict([("x", "a", stored("a", DPO))], None, Scoring()).text
    other_seeds = stored("a", DPO, seeds=[1, 2, 3, 4, 5])
    v = heldout_verdict([("x", "a", other_seeds), ("y", "b", None)], stored("dpo", DPO), Scoring())
    assert v.best_id is None and "no discovered finalist has a held-out score paired with DPO" in v.text
