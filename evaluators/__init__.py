"""Preference-optimisation benchmarks with known gold rewards.

>>> from evaluators import load_suite, evaluate_loss
>>> result = evaluate_loss(get_loss("dpo"), "fitness")     # -> SuiteResult
>>> result.fitness, result.fitness_se, result.runs[0].kl

Tiers (``evaluators.tiers``): ``bandit`` (exact metrics, screening) and ``tinylm`` (tiny GPT-2, SFT
then preference training) here; ``spa`` and ``pluralistic`` register from ``preference_data``; the
TRL-backed ``hf`` trainer is ``evaluators.hf``. Tasks live in ``evaluators/tasks/``; suites in
``evaluators/suites/*.yaml``. Imports nothing above ``candidate_losses`` (an import contract checks
it). torch is imported lazily (inside functions).
"""

from __future__ import annotations

from evaluators.api import evaluate_loss
from evaluators.results import RunResult, SuiteResult
from evaluators.suites import Suite, list_suites, load_suite

__all__ = ["RunResult", "Suite", "SuiteResult", "evaluate_loss", "list_suites", "load_suite"]
