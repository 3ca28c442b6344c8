"""The Ray executor: one Ray actor per evaluation worker, each owning a sandbox pool of its own.

Candidate code is never run by Ray itself: an actor receives a request (code as text) and hands
it to its private `SandboxPool`, whose confined worker process loads and runs it exactly as on
this machine. Results (plain dataclasses) return to the driver, the only process that writes the
campaign database. Actors ask Ray for `num_gpus` each; inside an actor Ray sets
CUDA_VISIBLE_DEVICES, which is passed on to its sandbox workers (their environment is otherwise
stripped).

Connect to a running cluster with `address` ("auto" or "ray://host:10001"); with no address a
local one-node cluster is started (and shut down on close). The prefdisco package must be
importable on every node (``pip install prefdisco[ray]`` there).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from discovery.executors.base import EvaluationRequest, SlotExecutor, run_on_pool

log = logging.getLogger("discovery.executors")
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
READY_TIMEOUT_S = 300.0


class SandboxActor:
    """Runs on a Ray worker; Ray calls one method at a time (max_concurrency=1)."""

    def __init__(self, limits: dict[str, Any] | None) -> None:
        from discovery.sandbox import SandboxLimits, SandboxPool

        lim = SandboxLimits.from_dict(limits) if limits else SandboxLimits()
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpus:  # Ray pinned this actor to GPU(s); the sandbox env allowlist would drop it
            lim.extra_env = {**lim.extra_env, "CUDA_VISIBLE_DEVICES": gpus}
        self.pool = SandboxPool(size=1, limits=lim)

    def ready(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def run(self, request: dict[str, Any]) -> Any:
        return run_on_pool(self.pool, request)

    def close(self) -> None:
        self.pool.close()


class RaySlot:
    """Driver-side handle of one actor; recreates the actor once if it (or its node) died."""

    def __init__(self, factory: Any):
        self.factory = factory
        self.actor = factory()
        self.info: dict[str, Any] = {}
        self.closing = False

    def run(self, request: EvaluationRequest) -> Any:
        import ray
        from ray.exceptions import RayActorError

        for attempt in range(2):
            try:
                return ray.get(self.actor.run.remote(request.to_dict()))
            except RayActorError:
                if attempt or self.closing:
                    raise
                log.warning("ray executor: actor died (node lost?); starting a new one and retrying")
                self.actor = self.factory()
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Let an idle actor shut its sandbox down, then kill it (its sandbox workers die with it:
        they run with PR_SET_PDEATHSIG)."""
        import ray

        self.closing = True
        try:
            ray.get(self.actor.close.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - busy or gone: the kill below is what matters
            pass
        ray.kill(self.actor)


class RayExecutor(SlotExecutor):
    """`num_workers` sandbox actors on a Ray cluster (started locally when no address is given)."""

    def __init__(self, num_workers: int = 2, *, address: str | None = None, num_gpus_per_worker: float = 0.0,
                 num_cpus_per_worker: float = 1.0, limits: Any = None, ready_timeout_s: float = READY_TIMEOUT_S):
        from discovery.errors import UserError

        try:
            import ray
        except ImportError:
            raise UserError("executor: ray needs Ray; install it with `pip install prefdisco[ray]`") from None
        self._started_ray = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            else:
                ray.init(num_cpus=max(num_workers, os.cpu_count() or 1), include_dashboard=False,
                         logging_level="WARNING", log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
            self._started_ray = True
        limits_dict = limits.to_dict() if limits is not None else None
        actor_cls = ray.remote(SandboxActor).options(num_cpus=num_cpus_per_worker, num_gpus=num_gpus_per_worker,
                                                     max_restarts=0)

        def factory() -> Any:
            return actor_cls.remote(limits_dict)

        slots = [RaySlot(factory) for _ in range(num_workers)]
        try:
            infos = ray.get([s.actor.ready.remote() for s in slots], timeout=ready_timeout_s)
        except Exception as exc:  # GetTimeoutError: the cluster cannot place the actors
            for s in slots:
                ray.kill(s.actor)
            if self._started_ray:
                ray.shutdown()
            raise UserError(f"Ray could not start {num_workers} workers with num_gpus={num_gpus_per_worker} "
                            f"within {ready_timeout_s:g} s ({type(exc).__name__}); lower workers or "
                            "num_gpus_per_worker, or check the cluster with `ray status`") from None
        for slot, info in zip(slots, infos):
            slot.info = info
        self._close_lock = threading.Lock()
        super().__init__(slots)

    @property
    def placement(self) -> list[dict[str, Any]]:
        """Where each actor runs (host, pid, GPUs): for logs and tests."""
        return [s.info for s in self.slots]  # type: ignore[attr-defined]

    def close(self) -> None:
        super().close()
        with self._close_lock:
            if self._started_ray:
                import ray

                self._started_ray = False
                ray.shutdown()


def _pythonpath() -> str:
    """Ray workers of a locally started cluster import prefdisco from this checkout."""
    existing = os.environ.get("PYTHONPATH")
    return PROJECT_ROOT + (os.pathsep + existing if existing else "")
