"""The local executor: sandboxed worker processes on this machine.

CPU: one `SandboxPool` of `num_workers` warm workers. GPUs: one single-worker pool per visible
GPU, each pinned with CUDA_VISIBLE_DEVICES, behind the shared-queue dispatcher.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Future
from typing import Any

from discovery.executors.base import EvaluationRequest, Executor, SlotExecutor, run_on_pool


def visible_gpus() -> list[str]:
    """GPU ids this process may use (CUDA_VISIBLE_DEVICES, else every device torch sees)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch / no driver: no GPUs
        return []


def pinned_limits(limits: Any, device: str | None) -> Any:
    """Sandbox limits whose workers see only `device` (None: unchanged)."""
    from discovery.sandbox import SandboxLimits

    limits = limits or SandboxLimits()
    if device is None:
        return limits
    return dataclasses.replace(limits, allow_gpu=True,
                               extra_env={**limits.extra_env, "CUDA_VISIBLE_DEVICES": device})


class PoolSlot:
    """A one-worker SandboxPool as a dispatcher slot."""

    def __init__(self, limits: Any):
        from discovery.sandbox import SandboxPool

        self.pool = SandboxPool(size=1, limits=limits)

    def run(self, request: EvaluationRequest) -> Any:
        return run_on_pool(self.pool, request)

    def close(self) -> None:
        self.pool.close()


class LocalExecutor(Executor):
    """`num_workers` sandboxed CPU workers, or (``gpus=True``) one worker per visible GPU."""

    def __init__(self, num_workers: int = 2, limits: Any = None, *, gpus: bool = False):
        from discovery.errors import UserError
        from discovery.sandbox import SandboxPool

        self._dispatcher: SlotExecutor | None = None
        self._pool: Any = None
        if gpus:
            devices = visible_gpus()
            if not devices:
                raise UserError("num_gpus_per_worker > 0 but no GPU is visible; set it to 0 for CPU workers")
            self._dispatcher = SlotExecutor([PoolSlot(pinned_limits(limits, d)) for d in devices])
            self.num_workers = len(devices)
        else:
            self._pool = SandboxPool(size=num_workers, limits=limits)
            self.num_workers = num_workers

    def submit(self, request: EvaluationRequest) -> "Future[Any]":
        if self._dispatcher is not None:
            return self._dispatcher.submit(request)
        if request.kind == "probe":
            return self._pool.submit_probe(request.code)
        return self._pool.submit_job(request.code, request.job, request.kwargs, request.timeout_s)

    @property
    def workers(self) -> list[Any]:
        if self._pool is not None:
            return list(self._pool.workers)
        return [w for slot in self._dispatcher.slots for w in slot.pool.workers]  # type: ignore[union-attr]

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.close()
        if self._pool is not None:
            self._pool.close()
