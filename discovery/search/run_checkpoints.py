"""Run-by-run suite evaluation with per-run checkpoints (``cascade.split_runs``).

A real-model suite is many training runs (seeds x betas), each minutes to hours on a GPU. Sent as
one sandbox job, a kill or a lost node throws all of them away. Here every run is its own job
(``evaluators.jobs:evaluate_job`` with ``instances=[i]``), submitted at once so the runs of one
candidate spread over every worker (one per GPU with the Ray executor); each finished run is
written by this trusted process to ``<checkpoint_dir>/<key>/<i>.json`` (atomic rename), where
``key`` hashes the candidate's code, the stage and the job's arguments. On resume, saved runs
are read back instead of re-trained, and the suite's fitness is recomputed from all runs with
the same formula as a single job (``evaluators.metrics.score_suite``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from discovery.crashpoints import maybe_crash


def checkpoint_key(code: str | None, stage: str, kwargs: dict[str, Any]) -> str:
    blob = json.dumps({"code": code, "stage": stage, "kwargs": kwargs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _save(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def evaluate_run_by_run(pool: Any, code: str | None, job: str, kwargs: dict[str, Any], timeout_s: float,
                        checkpoint_dir: str, stage: str) -> Any:
    """A ``JobResult`` whose value is the whole suite's result, built from one job per run."""
    from discovery.sandbox.results import JobResult
    from evaluators.metrics import score_suite
    from evaluators.results import SuiteResult
    from evaluators.suites import load_suite

    suite = load_suite(kwargs["suite"]).with_overrides(seeds=kwargs.get("seeds"))
    n = len(suite.instances())
    folder = Path(checkpoint_dir) / checkpoint_key(code, stage, kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    saved: dict[int, dict[str, Any]] = {}
    for i in range(n):
        path = folder / f"{i}.json"
        if path.exists():
            saved[i] = json.loads(path.read_text())
    pending = {i: pool.submit_job(code, job, {**kwargs, "instances": [i]}, timeout_s=timeout_s)
               for i in range(n) if i not in saved}
    wall = 0.0
    failure: Any = None
    for i, future in pending.items():
        res = future.result()
        wall += float(getattr(res, "wall_time_s", 0.0) or 0.0)
        if not res.ok or not res.value:
            failure = failure or res
            continue
        saved[i] = res.value
        _save(folder / f"{i}.json", res.value)
        maybe_crash("evaluation")  # test hook: die between saved runs
    if failure is not None:
        return failure
    first = saved[0]
    runs = [run for i in range(n) for run in saved[i]["runs"]]
    merged = SuiteResult.from_dict({**first, "runs": runs, "wall_time_s": sum(s.get("wall_time_s") or 0.0
                                                                             for s in saved.values())})
    value = score_suite(merged, suite).to_dict()
    value["resumed_runs"] = n - len(pending)
    return JobResult(True, value, None, "", wall)
