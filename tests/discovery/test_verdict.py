"""The held-out verdict against DPO (paired by seed) that the run, leaderboard, report and tune print."""

from __future__ import annotations

import pytest

from discovery.archive.verdict import heldout_verdict
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


@pytest.mark.slow
def test_run_leaderboard_and_report_headline_the_same_paired_heldout_verdict(tmp_path):
    """A real (tiny, sandboxed) campaign through the CLI: the run's last line, the leaderboard and the
    report's headline all give the held-out verdict against DPO with the paired s.e., and --json
    carries the same numbers."""
    import json
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from test_e2e_llm import mutation_config

    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**mutation_config(11), "cascade": {**mutation_config(11)["cascade"],
                                                                       "screen_suite": None, "heldout_top_k": 2}}))

    def cli(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "PREFDISCO_CRASH_AT"}
        done = subprocess.run([sys.executable, "-m", "discovery.commands", *args], env=env, capture_output=True,
                              text=True, timeout=300, cwd=root)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    out = tmp_path / "run"
    lines = cli("run", str(config), "--out", str(out)).strip().splitlines()
    verdict_line = lines[-1]
    assert re.fullmatch(r"(held-out: \S+ - dpo = [+-]\d\.\d{4} ± \d\.\d{4} \(paired s\.e\., n=2\) -> beats DPO by "
                        r"\d+\.\d s\.e\.|no candidate beats DPO on held-out \(best: \S+ - dpo = [+-]\d\.\d{4} ± "
                        r"\d\.\d{4} \(paired s\.e\., n=2\); detectable at 2 s\.e\.: \d\.\d{4}\))", verdict_line), lines
    assert any("(fitness is what the search optimised, not the verdict)" in line for line in lines)
    resumed = json.loads(cli("run", "--resume", str(out), "--json"))
    assert resumed["verdict"]["text"] == verdict_line and resumed["verdict"]["n"] == 2
    assert len(resumed["verdict"]["comparisons"]) == 2  # both finalists, each paired with DPO

    board = cli("leaderboard", str(out))
    assert board.strip().splitlines()[-1] == verdict_line  # printed unwrapped, last
    rows = json.loads(cli("leaderboard", str(out), "--json"))
    best = next(r for r in rows if r["id"] == resumed["verdict"]["best_id"])
    assert best["heldout_vs_dpo"] == pytest.approx(resumed["verdict"]["difference"])
    assert best["heldout_vs_dpo_se"] == pytest.approx(resumed["verdict"]["se"])
    assert best["heldout_vs_dpo"] == pytest.approx(best["heldout"] - next(r for r in rows if r["name"] == "dpo")["heldout"])

    report = json.loads(cli("report", str(out), "--json"))
    assert report["verdict"]["text"] == verdict_line
    html = Path(report["path"]).read_text()
    assert 'id="verdict"' in html and "paired s.e., n=2" in html

    dpo_id = next(r["id"] for r in rows if r["name"] == "dpo")
    compared = subprocess.run([sys.executable, "-m", "discovery.commands", "compare", str(out), best["id"], dpo_id],
                              env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120, cwd=root)
    assert compared.returncode == 0, compared.stderr[-2000:]
    held_out_row = next(line for line in compared.stdout.splitlines() if "held-out" in line)
    assert f"{resumed['verdict']['difference']:+.4f} ± {resumed['verdict']['se']:.4f} (paired, n=2)" in held_out_row
