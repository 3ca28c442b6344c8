"""SandboxPool: warm zygotes that fork one fresh, confined child per probe or job.

One thread per slot pulls requests from a shared queue and owns one zygote. Whatever happens in
a slot (the zygote dies, a reply is malformed, the sandbox cannot start), the request's future
completes with a classified result; nothing here raises into the caller after construction.
"""

from __future__ import annotations

import importlib
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
from typing import Any

from discovery.sandbox import isolation as iso_mod
from discovery.sandbox import wire
from discovery.sandbox.isolation import Isolation, SandboxUnavailable
from discovery.sandbox.limits import SandboxLimits, worker_environment
from discovery.sandbox.results import (
    JobResult,
    ProbeResult,
    SchemaError,
    clip,
    failure_result,
    job_result,
    probe_result,
)
from discovery.sandbox.validation import first_error, validate_source
from discovery.sandbox.zygote import MAX_REPLY_BYTES

log = logging.getLogger("discovery.sandbox")
BOOT = ("import sys; sys.path.insert(0, {root!r}); "
        "from discovery.sandbox.zygote import main; main(sys.argv[1:])")
START_TIMEOUT_S = 300.0
GRACE_S = 15.0        # beyond a request's own deadline, for the zygote to report
_STOP = object()

__all__ = ["SandboxPool", "SandboxUnavailable", "ZygoteProcess"]


class ZygoteDied(RuntimeError):
    """The zygote went away or stopped answering (not the candidate's doing)."""


class ZygoteProcess:
    """One warm zygote: start it inside the boundary, relay requests, kill it."""

    def __init__(self, limits: SandboxLimits, isolation: Isolation) -> None:
        self.limits, self.isolation = limits, isolation
        self.host_scratch = None if isolation.scratch else tempfile.mkdtemp(prefix="prefdisco-sbx-")
        scratch = isolation.scratch or self.host_scratch
        self.log_file = tempfile.TemporaryFile()
        in_r, self.in_w = os.pipe()
        self.out_r, out_w = os.pipe()
        argv = [sys.executable, "-I", "-c", BOOT.format(root=iso_mod.PROJECT_ROOT),
                str(in_r), str(out_w)]
        started = time.perf_counter()
        self.proc: subprocess.Popen[bytes] | None = None
        fds: list[int] = []
        try:
            cmd, fds = isolation.command(limits, argv)
            self.proc = subprocess.Popen(
                cmd, pass_fds=(in_r, out_w, *fds), env=worker_environment(limits, scratch),
                cwd="/", stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=self.log_file,
                start_new_session=True, close_fds=True)
        except (OSError, ValueError) as exc:
            self._close_fds()
            raise SandboxUnavailable(f"sandbox unavailable: could not start a worker "
                                     f"({type(exc).__name__}: {exc})") from exc
        finally:
            for fd in (in_r, out_w, *fds):
                os.close(fd)
        os.set_blocking(self.in_w, False)
        self.requests = 0
        try:
            wire.send(self.in_w, isolation.zygote_config(limits, scratch), time.monotonic() + 30)
            hello = wire.recv(self.out_r, time.monotonic() + START_TIMEOUT_S)
        except (wire.WireTimeout, wire.WireClosed, wire.WireError, OSError) as exc:
            hello = {"type": "failed", "message": f"no answer ({type(exc).__name__})"}
        if hello.get("type") != "ready":
            tail = self.log_tail().strip().splitlines()
            last = f"; last output: {tail[-1][:300]}" if tail else ""
            self.kill()
            raise SandboxUnavailable(f"sandbox worker failed to start: "
                                     f"{clip(hello.get('message'), 500)}{last}")
        self.start_time_s = time.perf_counter() - started
        self.hello = hello
        self.notes = [clip(n, 300) for n in hello.get("notes", []) if isinstance(n, str)]

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else -1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        try:
            self.log_file.seek(0, os.SEEK_END)
            size = self.log_file.tell()
            self.log_file.seek(max(0, size - n))
            return self.log_file.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def request(self, message: dict[str, Any], timeout_s: float) -> tuple[dict[str, Any], bytes]:
        """Send one request; (zygote status, child's raw reply). ZygoteDied if it cannot answer."""
        deadline = time.monotonic() + timeout_s + GRACE_S
        try:
            wire.send(self.in_w, message, deadline)
            status = wire.recv(self.out_r, deadline)
            reply = wire.recv_bytes(self.out_r, deadline, limit=MAX_REPLY_BYTES)
        except (wire.WireTimeout, wire.WireClosed, wire.WireError, OSError) as exc:
            tail = self.log_tail().strip().splitlines()
            self.kill()
            raise ZygoteDied(f"the sandbox worker stopped answering ({type(exc).__name__})"
                             + (f": {tail[-1][:300]}" if tail else "")) from exc
        self.requests += 1
        if status.get("type") != "done" or status.get("id") != message.get("id"):
            self.kill()
            raise ZygoteDied("the sandbox worker answered out of turn")
        return status, reply

    def _close_fds(self) -> None:
        for fd in (getattr(self, "in_w", -1), getattr(self, "out_r", -1)):
            try:
                os.close(fd)
            except OSError:
                pass
        self.in_w = self.out_r = -1

    def kill(self) -> None:
        """Kill the zygote's process group (bubblewrap takes the whole sandbox with it)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._close_fds()
        if self.host_scratch:
            shutil.rmtree(self.host_scratch, ignore_errors=True)
        try:
            self.log_file.close()
        except OSError:
            pass

    def shutdown(self) -> None:
        try:
            if self.alive():
                wire.send(self.in_w, {"kind": "exit"}, time.monotonic() + 1)
                self.proc.wait(timeout=2)  # type: ignore[union-attr]
        except (OSError, wire.WireTimeout, subprocess.TimeoutExpired, ValueError):
            pass
        self.kill()


class SandboxPool:
    """Warm sandbox zygotes behind a thread-safe queue. Use as a context manager.

    Construction fails closed: ``SandboxUnavailable`` (one line naming the fix) when this machine
    cannot isolate candidate code and the trusted-code opt-out is not set.
    """

    def __init__(self, size: int = 1, limits: SandboxLimits | None = None) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.size = size
        self.limits = limits or SandboxLimits()
        self.isolation = iso_mod.resolve(self.limits)
        for note in self.isolation.notes:
            log.warning("sandbox: %s", note)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._ids = itertools.count(1)
        self._closed = False
        self._lock = threading.Lock()
        self._logged_notes: set[str] = set()
        self.workers: list[ZygoteProcess | None] = [None] * size
        self.start_times_s: list[float] = []
        self.fork_to_ready_s: list[float] = []     # per child: fork until confined and waiting
        self.request_to_start_s: list[float] = []  # per request: arrival until the job starts
        self.fork_to_ready_cpu_s: list[float] = []  # CPU time of fork + confinement
        self._threads = [threading.Thread(target=self._serve, args=(i,), daemon=True,
                                          name=f"sandbox-slot-{i}") for i in range(size)]
        for thread in self._threads:
            thread.start()

    # ---- public API -----------------------------------------------------------------------
    def submit_probe(self, code: str, *, validate: bool = True) -> "Future[ProbeResult]":
        """Static validation now (in this thread), then the numerical probe in a fresh child.

        ``validate=False`` skips the allow-list check here *and* in the child: only for tests
        of the runtime boundary with trusted callers.
        """
        future: Future[ProbeResult] = Future()
        if validate:
            error = first_error(validate_source(code))
            if error is not None:
                future.set_result(ProbeResult(False, error.kind, f"line {error.line}: "
                                              f"{error.message}", wall_time_s=0.0))
                return future
        timeout = self.limits.wall_timeout_s
        self._enqueue(future, {"kind": "probe", "code": code, "validate": validate,
                               "id": next(self._ids), "timeout_s": timeout,
                               "cpu_s": self.limits.cpu_time_s}, timeout)
        return future

    def probe(self, code: str, *, validate: bool = True) -> ProbeResult:
        return self.submit_probe(code, validate=validate).result()

    def submit_job(self, code: str | None, job: str, kwargs: dict[str, Any] | None = None,
                   timeout_s: float | None = None, *, validate: bool = True) -> "Future[JobResult]":
        """Run trusted ``job`` ("package.module:function") on the loaded candidate in a child."""
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
                   "validate": validate, "id": next(self._ids), "timeout_s": timeout,
                   "cpu_s": max(self.limits.cpu_time_s, math.ceil(timeout) + 1)}
        self._enqueue(future, request, timeout)
        return future

    def run_job(self, code: str | None, job: str, kwargs: dict[str, Any] | None = None,
                timeout_s: float | None = None, *, validate: bool = True) -> JobResult:
        return self.submit_job(code, job, kwargs, timeout_s, validate=validate).result()

    def isolation_report(self) -> list[dict[str, Any]]:
        """What each live zygote got: boundary mode, Landlock ABI, seccomp, notes."""
        return [{"pid": w.pid, "mode": w.hello.get("mode"), "uid": w.hello.get("uid"),
                 "landlock_abi": w.hello.get("landlock_abi"), "seccomp": w.hello.get("seccomp"),
                 "threads": w.hello.get("threads"), "notes": list(w.notes),
                 "start_time_s": w.start_time_s}
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

    def __del__(self) -> None:  # best effort: never leave zygotes behind
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ---- slot threads ---------------------------------------------------------------------
    def _enqueue(self, future: Future, request: dict[str, Any], timeout_s: float) -> None:
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        self._queue.put((future, request, timeout_s))

    def _spawn(self, slot: int) -> ZygoteProcess:
        worker = ZygoteProcess(self.limits, self.isolation)
        self.workers[slot] = worker
        self.start_times_s.append(worker.start_time_s)
        for note in worker.notes:
            if note not in self._logged_notes:
                self._logged_notes.add(note)
                log.warning("sandbox: %s", note)
        return worker

    def _ensure_worker(self, slot: int) -> ZygoteProcess:
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
            if self._closed:  # closing (e.g. Ctrl-C): queued work is not started on fresh workers
                future.set_result(failure_result(request["kind"], "infrastructure",
                                                 "the sandbox pool closed before this request ran"))
                continue
            try:
                result = self._handle(slot, request, timeout_s)
            except BaseException as exc:  # noqa: BLE001 - the future must always complete
                result = failure_result(request["kind"], "infrastructure",
                                        f"sandbox slot error: {type(exc).__name__}: {exc}")
            future.set_result(result)

    def _handle(self, slot: int, request: dict[str, Any], timeout_s: float
                ) -> ProbeResult | JobResult:
        kind = request["kind"]
        if kind == "job":
            try:
                request = {**request, "kwargs": prepare_job(request["job"], request["kwargs"],
                                                            self.limits)}
            except Exception as exc:  # noqa: BLE001 - trusted preparation, not the candidate
                return failure_result(kind, "infrastructure", f"preparing {request['job']} in the "
                                      f"parent failed: {type(exc).__name__}: {exc}")
        for attempt in range(2):
            try:
                worker = self._ensure_worker(slot)
            except SandboxUnavailable as exc:
                return failure_result(kind, "infrastructure", str(exc))
            started = time.perf_counter()
            try:
                status, reply = worker.request(request, timeout_s)
            except ZygoteDied as exc:
                if attempt or self._closed:  # no fresh worker for a pool that is closing
                    return failure_result(kind, "infrastructure", str(exc))
                log.warning("sandbox: %s; retrying on a fresh worker", exc)
                continue
            wall = time.perf_counter() - started
            if worker.requests >= self.limits.max_requests_per_worker:
                worker.shutdown()
            result = self._build_result(kind, status, reply, wall, timeout_s)
            if isinstance(result, JobResult) and result.ok and result.value is not None:
                try:
                    result.value = finish_job(request["job"], request["kwargs"], result.value)
                except Exception as exc:  # noqa: BLE001 - trusted finishing, not the candidate
                    return failure_result(kind, "infrastructure", f"finishing {request['job']} in "
                                          f"the parent failed: {type(exc).__name__}: {exc}", wall)
            return result
        raise AssertionError("unreachable")

    def _build_result(self, kind: str, status: dict[str, Any], reply: bytes, wall: float,
                      timeout_s: float) -> ProbeResult | JobResult:
        native = status.get("native_tail") if isinstance(status.get("native_tail"), str) else ""
        if status.get("timed_out"):
            return failure_result(kind, "timeout", f"exceeded the wall-clock limit of "
                                  f"{timeout_s:g} s; the job was killed (infinite loop, sleep or "
                                  "far too slow)", wall, native)
        if status.get("quota_exceeded"):
            return failure_result(kind, "unsafe", f"wrote more than {self.limits.private_dir_mb} MB "
                                  "to its private directory; killed", wall, native)
        if status.get("reply_truncated"):
            return failure_result(kind, "unsafe", "sent an oversized reply; ignored", wall, native)
        if not reply:
            return failure_result(kind, *_death_cause(status, native), wall, native)
        try:
            answer = wire.decode(reply)
            result = probe_result(answer, wall) if kind == "probe" else job_result(answer, wall)
        except (wire.WireError, SchemaError) as exc:
            return failure_result(kind, "unsafe", f"the sandboxed process sent a malformed reply "
                                  f"({exc}); ignored", wall, native)
        times = [answer.get("t_ready"), status.get("t_fork"), answer.get("t_start"),
                 status.get("t_request")]
        if all(isinstance(t, float) for t in times):
            self.fork_to_ready_s.append(times[0] - times[1])      # fork + confinement
            self.request_to_start_s.append(times[2] - times[3])   # what a request waits for it
            cpu = [status.get("fork_cpu_s"), answer.get("cpu_ready")]
            if all(isinstance(c, float) for c in cpu):             # the same in CPU time (load-free)
                self.fork_to_ready_cpu_s.append(cpu[0] + cpu[1])
        if isinstance(result, JobResult) and native.strip():
            result.stdout_tail = clip(result.stdout_tail + ("\n[native output]\n" + native), 64_000)
        return result


def _death_cause(status: dict[str, Any], native: str) -> tuple[str, str]:
    sig, code = status.get("signal"), status.get("exit_code")
    if sig == signal.SIGXCPU:
        return "timeout", "exceeded the CPU-time limit; the job was killed"
    if sig == signal.SIGKILL or any(m in native for m in ("bad_alloc", "MemoryError",
                                                          "Cannot allocate memory")):
        return "memory", "the job ran out of memory and was killed"
    what = f"signal {sig}" if sig else f"exit code {code}"
    last = native.strip().splitlines()[-1:] if native.strip() else []
    return "crash", f"the job's process died ({what})" + (f": {last[0][:200]}" if last else "")


def _job_function(job: str) -> Any:
    module_name, _, attr = job.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None  # not importable here (only in the sandbox)
    return getattr(module, attr, None)


def finish_job(job: str, kwargs: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """Run the job's trusted parent-side finishing step, if it declares one (``finish_in_parent``:
    e.g. call an LLM judge on the generations a sandboxed job returned, since children have no
    network); it gets the prepared kwargs and the job's value and returns the final value."""
    finish = getattr(_job_function(job), "finish_in_parent", None)
    return value if finish is None else finish(dict(kwargs), value)


def prepare_job(job: str, kwargs: dict[str, Any], limits: SandboxLimits) -> dict[str, Any]:
    """Run the job's trusted parent-side preparation, if it declares one (``prepare_in_parent``:
    e.g. build reference caches, which children may only read, and pin their content hashes)."""
    module_name, _, attr = job.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return kwargs  # not importable here (only in the sandbox): nothing to prepare
    fn = getattr(module, attr, None)
    prepare = getattr(fn, "prepare_in_parent", None)
    if prepare is None:
        return kwargs
    bound = iso_mod.resolve_cache_dir(limits)
    wanted = kwargs.get("cache_dir")
    if wanted and os.path.realpath(wanted) != os.path.realpath(bound):
        raise ValueError(f"the job's cache_dir {wanted} is not the sandbox's read-only cache "
                         f"{bound}; build the pool with SandboxLimits(cache_dir={wanted!r})")
    return prepare(dict(kwargs), cache_dir=bound, gpu=limits.allow_gpu)
