"""Where sandboxed evaluations run: this machine's worker pool, or a Ray cluster.

>>> from discovery.executors import make_executor, EvaluationRequest
>>> with make_executor("local", num_workers=2) as ex:      # or "ray", ray_address="auto"
...     ex.probe(code)                                      # SandboxPool-compatible surface
...     ex.submit(EvaluationRequest.job(code, "evaluators.jobs:evaluate_job", {"suite": "screen"}))

Every executor runs candidate code only inside a `SandboxPool` worker (on Ray: a pool owned by
each Ray actor), and only the driver that holds the executor writes results to a database.
"""

from __future__ import annotations

from typing import Any

from discovery.executors.base import EvaluationRequest, Executor, SlotExecutor


def make_executor(kind: str = "local", *, num_workers: int = 2, ray_address: str | None = None,
                  num_gpus_per_worker: float = 0.0, limits: Any = None) -> Executor:
    """The executor named by a campaign config's `executor` line."""
    from discovery.errors import UserError

    if kind == "local":
        from discovery.executors.local import LocalExecutor

        return LocalExecutor(num_workers=num_workers, limits=limits, gpus=num_gpus_per_worker > 0)
    if kind == "ray":
        from discovery.executors.ray_executor import RayExecutor

        return RayExecutor(num_workers=num_workers, address=ray_address,
                           num_gpus_per_worker=num_gpus_per_worker, limits=limits)
    raise UserError(f"executor: {kind!r} is not one of 'local', 'ray'")


__all__ = ["EvaluationRequest", "Executor", "SlotExecutor", "make_executor"]
