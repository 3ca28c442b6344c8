"""Tier tests here share the evaluator tests' session cache and single-thread set-up."""

from tests.evaluators.conftest import _one_thread, cache_dir  # noqa: F401 - pytest fixtures
