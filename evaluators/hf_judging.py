"""LLM judging of finished ``hf`` runs, in the trusted process that can reach the judge.

Sandbox workers have no network, so a sandboxed ``hf`` run returns its generations marked
``extra.judge_pending``; the parent then calls ``finish_judging`` on the job's result (the
``finish_in_parent`` step of ``evaluators.jobs:evaluate_job``), and ``evaluate_loss`` does the same
in-process. Each run's answers are compared with the reference answers by the group's pairwise
judge, both orders (``evaluators.judges``); replies are cached in ``<cache>/judge_cache.sqlite``
and each run records how many calls went out and how many came from the cache.

Length control (``judge.length_controlled``, AlpacaEval 2.0's idea in its simplest form): judges
prefer longer answers, so the per-prompt outcomes y in [0, 1] are regressed on the standardised
length difference, logit P(win) = a + b * tanh((len_policy - len_reference) / sd); the
length-controlled win rate is sigmoid(a), the predicted win rate at equal length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from evaluators.hf_suite_config import HFSuiteConfig
from evaluators.judges import JudgeCache, PairwiseJudge
from evaluators.results import RunResult


def length_controlled_win_rate(outcomes: list[float], policy_lengths: list[int], reference_lengths: list[int],
                               l2: float = 1e-3, iterations: int = 50) -> dict[str, float]:
    """Logistic regression of soft outcomes on [1, tanh(length difference / sd)] by Newton's method
    (a small L2 penalty keeps it finite when every outcome is the same); returns the
    length-controlled win rate sigmoid(a), the raw win rate, and the fitted coefficients."""
    import numpy as np

    y = np.asarray(outcomes, dtype=float)
    diff = np.asarray(policy_lengths, dtype=float) - np.asarray(reference_lengths, dtype=float)
    sd = diff.std()
    x = np.stack([np.ones_like(diff), np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff)], axis=1)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return {"lc_win_rate": float(1.0 / (1.0 + math.exp(-w[0]))), "win_rate": float(y.mean()),
            "intercept": float(w[0]), "length_coef": float(w[1])}


def judge_run(run: RunResult, config: HFSuiteConfig, cache_dir: Path | str | None) -> None:
    """Judge one pending run in place: ``win_rate`` (length-controlled where asked), ``extra.judge``,
    and, when the group has no reward model, ``gold_reward`` = the judge's win rate."""
    judge_cfg = config.judge
    assert judge_cfg is not None
    generations = run.extra["generations"]
    cache = JudgeCache(Path(cache_dir) / "judge_cache.sqlite") if cache_dir is not None else None
    judged = PairwiseJudge(judge_cfg, cache=cache).compare(
        [g["prompt"] for g in generations], [g["policy"] for g in generations], [g["reference"] for g in generations])
    report = {k: v for k, v in judged.to_dict().items() if k != "scores"}
    report["model"] = judge_cfg.model
    win = judged.win_rate
    if judge_cfg.length_controlled:
        lc = length_controlled_win_rate(judged.scores, [len(g["policy"]) for g in generations],
                                        [len(g["reference"]) for g in generations])
        report.update(lc)
        win = lc["lc_win_rate"]
    run.win_rate = win
    if not config.reward.model:
        run.gold_reward = win
    run.extra["judge"] = report
    run.extra["judge_pending"] = False


def judge_runs(runs: list[RunResult], suite: Any, cache_dir: Path | str | None) -> int:
    """Judge every pending run of ``suite`` (matched to its group by ``extra.group``); returns how
    many were judged. Failed runs are not judged (they score the failure score anyway)."""
    judged = 0
    for run in runs:
        if not run.extra.get("judge_pending") or run.failed:
            continue
        group = suite.groups[int(run.extra["group"])]
        judge_run(run, HFSuiteConfig.from_dict(group.config), cache_dir)
        judged += 1
    return judged


def finish_judging(result: dict[str, Any], suite: Any, cache_dir: Path | str | None) -> dict[str, Any]:
    """A ``SuiteResult`` dict with its pending runs judged and its scores and fitness recomputed."""
    from evaluators.metrics import score_suite
    from evaluators.results import SuiteResult

    parsed = SuiteResult.from_dict(result)
    if not judge_runs(parsed.runs, suite, cache_dir):
        return result
    return score_suite(parsed, suite).to_dict()
