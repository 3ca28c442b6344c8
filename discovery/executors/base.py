"""The executor interface: submit an evaluation request, get a Future of its sandbox result.

An executor also speaks the `SandboxPool` surface (`probe`, `run_job`, `submit_job`, ...), so the
campaign's cascade and the tuner take either a bare pool or any executor, and the same campaign
config runs locally or on a cluster by changing only its executor lines.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

log = logging.getLogger("discovery.executors")
_STOP = object()


@dataclass(frozen=True)
class EvaluationRequest:
    """One unit of sandboxed work: a probe of `code`, or trusted `job` run on it with `kwargs`."""

    kind: str  # "probe" | "job"
    code: str | None
    job: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None

    @classmethod
    def probe(cls, code: str) -> "EvaluationRequest":
        return cls("probe", code)

    @classmethod
    def job_request(cls, code: str | None, job: str, kwargs: dict[str, Any] | None = None,
                    timeout_s: float | None = None) -> "EvaluationRequest":
        return cls("job", code, job, dict(kwargs or {}), timeout_s)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "code": self.code, "job": self.job, "kwargs": self.kwargs,
                "timeout_s": self.timeout_s}


def run_on_pool(pool: Any, request: EvaluationRequest | dict[str, Any]) -> Any:
    """Run one request on a `SandboxPool` (blocking). Used by every slot, local or remote."""
    r = request if isinstance(request, EvaluationRequest) else EvaluationRequest(**request)
    if r.kind == "probe":
        return pool.probe(r.code)
    if r.kind == "job":
        return pool.run_job(r.code, r.job, r.kwargs, r.timeout_s)
    raise ValueError(f"unknown request kind {r.kind!r}")


class Executor(ABC):
    """Runs evaluation requests in sandboxes somewhere; thread-safe; a context manager."""

    num_workers: int = 1

    @abstractmethod
    def submit(self, request: EvaluationRequest) -> "Future[Any]":
        """Queue `request`; the Future resolves to a `ProbeResult` or `JobResult`."""

    def map(self, requests: Iterable[EvaluationRequest]) -> Iterator[Any]:
        """Submit all, then yield results in request order (they run concurrently)."""
        futures = [self.submit(r) for r in requests]
        for future in futures:
            yield future.result()

    def close(self) -> None:
        """Release workers (idempotent)."""

    # ---- the SandboxPool surface the cascade and the tuner call ------------------------------
    def submit_probe(self, code: str) -> "Future[Any]":
        return self.submit(EvaluationRequest.probe(code))

    def probe(self, code: str) -> Any:
        return self.submit_probe(code).result()

    def submit_job(self, code: str | None, job: str, kwargs: dict[str, Any] | None = None,
                   timeout_s: float | None = None) -> "Future[Any]":
        return self.submit(EvaluationRequest.job_request(code, job, kwargs, timeout_s))

    def run_job(self, code: str | None, job: str, kwargs: dict[str, Any] | None = None,
                timeout_s: float | None = None) -> Any:
        return self.submit_job(code, job, kwargs, timeout_s).result()

    @property
    def workers(self) -> list[Any]:
        """Local worker processes the campaign may kill on Ctrl-C (none for remote executors)."""
        return []

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Slot(Protocol):
    """One evaluation worker somewhere (a pinned local pool, a Ray actor)."""

    def run(self, request: EvaluationRequest) -> Any: ...
    def close(self) -> None: ...


class SlotExecutor(Executor):
    """A shared queue drained by one thread per slot: an idle slot always takes the next request,
    so slow and fast evaluations balance themselves across workers."""

    def __init__(self, slots: list[Slot]):
        if not slots:
            raise ValueError("an executor needs at least one slot")
        self.slots = slots
        self.num_workers = len(slots)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._serve, args=(s,), daemon=True, name=f"executor-slot-{i}")
                         for i, s in enumerate(slots)]
        for thread in self._threads:
            thread.start()

    def submit(self, request: EvaluationRequest) -> "Future[Any]":
        if self._closed:
            raise RuntimeError("executor is closed")
        future: Future[Any] = Future()
        self._queue.put((future, request))
        return future

    def _serve(self, slot: Slot) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, request = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(slot.run(request))
            except BaseException as exc:  # noqa: BLE001 - the future must always complete
                future.set_exception(exc)

    def close(self) -> None:
        """Cancel queued requests, close every slot (in-flight remote work is abandoned), stop threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item[0].cancel()
        for _ in self._threads:
            self._queue.put(_STOP)
        for slot in self.slots:
            try:
                slot.close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the caller's error
                log.warning("executor: closing a slot failed: %s", exc)
        for thread in self._threads:
            thread.join(timeout=30)
