"""Where sandboxed evaluations run: this machine's worker pool, or a Ray cluster.

>>> from discovery.executors import make_executor, EvaluationRequest
>>> with make_executor("local", num_workers=2) as ex:      # or "ray", ray_address="auto"
...     ex.probe(code)                                      # SandboxPool-compatible surface
...     ex.submit(EvaluationRequest.job(code, "evaluators.jobs:evaluate_job", {"suite": "screen"}))

Every executor runs candidate code only inside a `SandboxPool` worker (on Ray: a pool owned by
each Ray actor), and only the driver that holds the executor writes results to a database.
"""

from __future__ import annotations

from discovery.executors.base import EvaluationRequest, Executor, SlotExecutor, make_executor

__all__ = ["EvaluationRequest", "Executor", "SlotExecutor", "make_executor"]
