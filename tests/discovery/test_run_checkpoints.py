"""Run-by-run suite evaluation (`cascade.split_runs`): the same fitness as one job, and saved runs
are read back instead of re-run. The pool here runs the trusted job in-process for DPO (no
candidate code), which is what a sandbox worker would run."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from discovery.sandbox.results import JobResult
from discovery.search.run_checkpoints import evaluate_run_by_run
from evaluators.jobs import evaluate_job


class InProcessPool:
    def __init__(self, cache_dir: str):
        self.cache_dir = cache_dir
        self.jobs: list[dict] = []

    def submit_job(self, code, job, kwargs, timeout_s=None):
        assert code is None and job == "evaluators.jobs:evaluate_job"
        self.jobs.append(kwargs)
        future: Future = Future()
        future.set_result(JobResult(True, evaluate_job(None, **kwargs), None, ""))
        return future


def test_split_evaluation_matches_one_job_and_resumes_from_saved_runs(tmp_path):
    cache = str(tmp_path / "cache")
    kwargs = {"suite": "screen", "loss_name": "dpo", "cache_dir": cache, "seeds": 1}
    whole = evaluate_job(None, **kwargs)
    pool = InProcessPool(cache)
    split = evaluate_run_by_run(pool, None, "evaluators.jobs:evaluate_job", kwargs, 60, str(tmp_path / "ck"), "screen")
    assert split.ok and len(pool.jobs) == len(whole["runs"]) == 2
    assert [j["instances"] for j in pool.jobs] == [[0], [1]]
    assert split.value["fitness"] == pytest.approx(whole["fitness"])
    assert split.value["fitness_se"] == pytest.approx(whole["fitness_se"])
    assert [r["beta"] for r in split.value["runs"]] == [r["beta"] for r in whole["runs"]]

    again = InProcessPool(cache)
    resumed = evaluate_run_by_run(again, None, "evaluators.jobs:evaluate_job", kwargs, 60, str(tmp_path / "ck"),
                                  "screen")
    assert again.jobs == [] and resumed.value["resumed_runs"] == 2
    assert resumed.value["fitness"] == pytest.approx(whole["fitness"])
