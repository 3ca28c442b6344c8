"""SandboxPool: warm, confined worker processes that probe candidates and run trusted jobs.

One thread per worker slot pulls requests from a shared queue, so a worker that dies or is
killed on timeout is replaced while queued requests simply wait for the next free slot.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from discovery.sandbox import wire
from discovery.sandbox.confine import UID_BASE
from discovery.sandbox.limits import SandboxLimits, resolve_limits, worker_environment
from discovery.sandbox.results import FailureClass, JobResult, ProbeResult, failure_value
from discovery.sandbox.validation import first_error, validate_source

log = logging.getLogger("discovery.sandbox")
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
BOOT = ("import sys; sys.path.insert(0, {root!r}); "
        "from discovery.sandbox.worker import main; main(sys.argv[1:])")
START_TIMEOUT_S = 180.0
MAX_MESSAGE_CHARS = 600
_STOP = object()


class SandboxUnavailable(RuntimeError):
    """The pool could not start a worker (not the candidate's fault)."""


def kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (a worker's private uid: only its own tree)."""
    if uid < UID_BASE:
        return
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as fh:
                owner = next((int(l.split()[1]) for l in fh if l.startswith("Uid:")), -1)
            if owner == uid:
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            continue


class WorkerProcess:
    """One confined worker: spawn, send a request with a deadline, kill and clean up."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.private_dir = tempfile.mkdtemp(prefix="prefdisco-sbx-")
        self.log_file = tempfile.TemporaryFile()
        in_r, self.in_w = os.pipe()
        self.out_r, out_w = os.pipe()
        started = time.perf_counter()
        spawned = False
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT.format(root=PROJECT_ROOT),
                 str(in_r), str(out_w), self.private_dir],
                pass_fds=(in_r, out_w), env=worker_environment(limits, self.private_dir),
                cwd=self.private_dir, stdin=subprocess.DEVNULL, stdout=self.log_file,
                stderr=self.log_file, start_new_session=True, close_fds=True)
            spawned = True
        finally:
            os.close(in_r)
            os.close(out_w)
            if not spawned:
                os.close(self.in_w)
                os.close(self.out_r)
                shutil.rmtree(self.private_dir, ignore_errors=True)
        os.set_blocking(self.in_w, False)
        self.uid = UID_BASE + self.proc.pid
        self.requests = 0
        self.cpu_spent_s = 0.0
        try:
            wire.send(self.in_w, {"limits": limits.to_dict()}, time.monotonic() + 10)
            ready = wire.recv(self.out_r, time.monotonic() + START_TIMEOUT_S)
        except (wire.WireTimeout, wire.WireClosed, OSError, ValueError) as exc:
            tail = self.log_tail()
            self.kill()
            raise SandboxUnavailable(f"sandbox worker failed to start ({type(exc).__name__}): "
                                     f"{tail[-800:]}") from exc
        self.start_time_s = time.perf_counter() - started
        self.isolation = ready.get("isolation", {})
        self.notes = [str(n) for n in ready.get("notes", [])]
        self.uid = int(ready.get("uid", self.uid))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        try:
            self.log_file.seek(0, os.SEEK_END)
            size = self.log_file.tell()
            self.log_file.seek(max(0, size - n))
            return self.log_file.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its answer; on timeout or death, kill and say why."""
        deadline = time.monotonic() + timeout_s
        wire.send(self.in_w, message, deadline)  # OSError here = dead before it started
        try:
            answer = wire.recv(self.out_r, deadline)
        except wire.WireTimeout:
            self.kill()
            return {"ok": False, "failure_class": "timeout",
                    "message": f"exceeded the wall-clock limit of {timeout_s:g} s; the worker "
                               "was killed (infinite loop, sleep or far too slow)"}
        except (wire.WireClosed, ValueError, OSError) as exc:
            return self._death_answer(exc)
        self.requests += 1
        if answer.get("id") != message.get("id"):  # something else wrote on the reply pipe
            self.kill()
            return {"ok": False, "failure_class": "unsafe",
                    "message": "the sandbox reply channel was tampered with; worker killed"}
        return answer

    def _death_answer(self, exc: BaseException) -> dict[str, Any]:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        tail = self.log_tail()
        self.kill()
        if rc == -signal.SIGXCPU:
            return {"ok": False, "failure_class": "timeout",
                    "message": "exceeded the CPU-time limit; the worker was killed"}
        if "bad_alloc" in tail or "MemoryError" in tail or rc == -signal.SIGKILL:
            return {"ok": False, "failure_class": "memory",
                    "message": "the worker ran out of memory and was killed"}
        what = f"signal {-rc}" if rc is not None and rc < 0 else f"exit code {rc}"
        last = tail.strip().splitlines()[-1:] if tail.strip() else []
        detail = f": {last[0][:200]}" if last else ""
        return {"ok": False, "failure_class": "crash",
                "message": f"the worker process died ({what}){detail}", "stdout_tail": tail[-2000:]}

    def kill(self) -> None:
        """Kill the worker's process group and everything its private uid still runs; clean up."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):
            pass
        kill_uid(self.uid)
        try:
            self.proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, AttributeError):
            pass
        for fd in (self.in_w, self.out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.in_w = self.out_r = -1
        shutil.rmtree(self.private_dir, ignore_errors=True)
        try:
            self.log_file.close()
        except OSError:
            pass

    def shutdown(self) -> None:
        try:
            if self.alive():
                wire.send(self.in_w, {"kind": "exit"}, time.monotonic() + 1)
                self.proc.wait(timeout=2)
        except (OSError, wire.WireTimeout, subprocess.TimeoutExpired, ValueError):
            pass
        self.kill()


def _clip(text: Any, n: int = MAX_MESSAGE_CHARS) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 3] + "..."


class SandboxPool:
    """Warm sandbox workers behind a thread-safe queue. Use as a context manager."""

    def __init__(self, size: int = 1, limits: SandboxLimits | None = None) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.size = size
        self.limits = resolve_limits(limits or SandboxLimits())
        for path in self.limits.writable_dirs:
            os.makedirs(path, exist_ok=True)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._ids = itertools.count(1)
        self._closed = False
        self._lock = threading.Lock()
        self._logged_notes: set[str] = set()
        self.workers: list[WorkerProcess | None] = [None] * size
        self.start_times_s: list[float] = []
        self._threads = [threading.Thread(target=self._serve, args=(i,), daemon=True,
                                          name=f"sandbox-slot-{i}") for i in range(size)]
        for thread in self._threads:
            thread.start()

    # ---- public API -----------------------------------------------------------------------
    def submit_probe(self, code: str, *, validate: bool = True) -> "Future[ProbeResult]":
        """Static validation now (in this thread), then the numerical probe in a worker.

        ``validate=False`` skips the AST filter: only for tests and trusted callers that want
        the runtime boundary alone to contain the code.
        """
        future: Future[ProbeResult] = Future()
        if validate:
            error = first_error(validate_source(code))
            if error is not None:
                future.set_result(ProbeResult(False, error.kind, f"line {error.line}: "
                                              f"{error.message}", wall_time_s=0.0))
                return future
        self._enqueue(future, {"kind": "probe", "code": code, "id": next(self._ids)},
                      self.limits.wall_timeout_s)
        return future

    def probe(self, code: str, *, validate: bool = True) -> ProbeResult:
        return self.submit_probe(code, validate=validate).result()

    def submit_job(self, code: str | None, job: str, kwargs: dict[str, Any] | None = None,
                   timeout_s: float | None = None, *, validate: bool = True) -> "Future[JobResult]":
        """Run trusted ``job`` ("package.module:function") on the loaded candidate in a worker."""
        future: Future[JobResult] = Future()
        if ":" not in job:
            raise ValueError(f"job must be 'package.module:function', got {job!r}")
        if code is not None and validate:
            error = first_error(validate_source(code))
            if error is not None:
                future.set_result(JobResult(False, None, error.kind,
                                            f"line {error.line}: {error.message}"))
                return future
        timeout = float(timeout_s or self.limits.wall_timeout_s)
        request = {"kind": "job", "code": code, "job": job, "kwargs": dict(kwargs or {}),
                   "id": next(self._ids),
                   "cpu_s": max(self.limits.cpu_time_s, math.ceil(timeout) + 1)}
        self._enqueue(future, request, timeout)
        return future

    def run_job(self, code: str | None, job: str, kwargs: dict[str, Any] | None = None,
                timeout_s: float | None = None, *, validate: bool = True) -> JobResult:
        return self.submit_job(code, job, kwargs, timeout_s, validate=validate).result()

    def isolation_report(self) -> list[dict[str, Any]]:
        """What each live worker got from the kernel (namespaces, uid, fallbacks taken)."""
        return [{"pid": w.proc.pid, "uid": w.uid, "isolation": dict(w.isolation),
                 "notes": list(w.notes), "start_time_s": w.start_time_s}
                for w in list(self.workers) if w is not None and w.alive()]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)
        for i, worker in enumerate(self.workers):
            if worker is not None:
                worker.shutdown()
                self.workers[i] = None

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # best effort: never leave workers behind
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ---- slot threads ---------------------------------------------------------------------
    def _enqueue(self, future: Future, request: dict[str, Any], timeout_s: float) -> None:
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        self._queue.put((future, request, timeout_s))

    def _spawn(self, slot: int) -> WorkerProcess:
        worker = WorkerProcess(self.limits)
        self.workers[slot] = worker
        self.start_times_s.append(worker.start_time_s)
        for note in worker.notes:
            if note not in self._logged_notes:
                self._logged_notes.add(note)
                log.warning("sandbox: %s", note)
        return worker

    def _ensure_worker(self, slot: int) -> WorkerProcess:
        worker = self.workers[slot]
        if worker is not None and worker.alive():
            return worker
        if worker is not None:
            worker.kill()
        return self._spawn(slot)

    def _serve(self, slot: int) -> None:
        try:
            self._ensure_worker(slot)  # warm up eagerly
        except SandboxUnavailable as exc:
            log.error("%s", exc)
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, request, timeout_s = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                answer, wall = self._run_on_slot(slot, request, timeout_s)
            except BaseException as exc:  # noqa: BLE001 - the future must always complete
                future.set_exception(exc)
                continue
            future.set_result(self._build_result(request["kind"], answer, wall))
            self._maybe_recycle(slot, answer)

    def _run_on_slot(self, slot: int, request: dict[str, Any], timeout_s: float
                     ) -> tuple[dict[str, Any], float]:
        """(answer, seconds the request itself took: worker start-up not included)."""
        for attempt in range(2):
            worker = self._ensure_worker(slot)
            started = time.perf_counter()
            try:
                answer = worker.request(request, timeout_s)
                return answer, time.perf_counter() - started
            except (OSError, wire.WireTimeout):
                # The request never reached a live worker (it died while idle): not the
                # candidate's fault, so replace the worker and send the same request again.
                worker.kill()
                if attempt:
                    raise SandboxUnavailable("sandbox worker died before taking the request")
        raise AssertionError("unreachable")

    def _maybe_recycle(self, slot: int, answer: dict[str, Any]) -> None:
        worker = self.workers[slot]
        if worker is None:
            return
        worn = worker.requests >= self.limits.max_requests_per_worker
        if answer.get("recycle"):
            log.info("sandbox: recycling worker %s: %s", worker.proc.pid,
                     _clip(answer.get("recycle_reason", ""), 200))
        if answer.get("recycle") or worn or not worker.alive():
            worker.kill()
            if not self._closed:
                try:
                    self._spawn(slot)  # replace now so the pool stays warm
                except SandboxUnavailable as exc:
                    log.error("%s", exc)

    @staticmethod
    def _build_result(kind: str, answer: dict[str, Any], wall: float) -> ProbeResult | JobResult:
        ok = answer.get("ok") is True
        failure = None if ok else (failure_value(answer.get("failure_class")) or FailureClass.CRASH.value)
        message = _clip(answer.get("message", ""))
        if kind == "probe":
            vector = answer.get("fingerprint_vector") if ok else None
            if vector is not None and not (isinstance(vector, list)
                                           and all(isinstance(v, (int, float)) for v in vector)):
                vector = None
            fingerprint = answer.get("fingerprint") if ok else None
            shape = answer.get("shape") if ok and isinstance(answer.get("shape"), dict) else None
            return ProbeResult(ok, failure, message,
                               str(fingerprint) if fingerprint is not None else None,
                               [float(v) for v in vector] if vector is not None else None,
                               shape, wall)
        value = answer.get("value") if ok and isinstance(answer.get("value"), dict) else None
        return JobResult(ok, value, failure, message, wall, _clip(answer.get("stdout_tail", ""), 64_000))
