"""One sandbox child: forked from the zygote for exactly one request, confined, then it exits.

Runs ``run_child`` and never returns: it writes one JSON reply on its private pipe (the zygote
relays it, unparsed, to the parent) and ``os._exit``\\ s. Because the process is new, nothing a
previous candidate did (patched modules, torch modes, warnings filters, hooks, files) exists
here, and nothing this one does survives it.
"""

from __future__ import annotations

import importlib
import io
import os
import resource
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

from discovery.sandbox import confine, namespace, wire
from discovery.sandbox.validation import UNAVAILABLE_BUILTINS

MEMORY_MARKERS = ("can't allocate memory", "DefaultCPUAllocator", "out of memory",
                  "std::bad_alloc", "Cannot allocate memory")
EXIT_NO_REPLY = 70


class TailWriter(io.TextIOBase):
    """A stdout/stderr stand-in that keeps only the last ``limit`` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tail = ""
        self.total = 0

    def write(self, text: str) -> int:  # type: ignore[override]
        text = str(text)
        self.total += len(text)
        self.tail = (self.tail + text[-self.limit:])[-self.limit:]
        return len(text)

    def writable(self) -> bool:
        return True

    def report(self) -> str:
        if self.total > self.limit:
            return f"[output truncated: {self.total} chars, last {self.limit} kept]\n" + self.tail
        return self.tail


def _candidate_line(exc: BaseException) -> str:
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<candidate>"]
    return f" (candidate line {lines[-1]})" if lines else ""


def classify(exc: BaseException, *, trusted_job: bool = False) -> tuple[str, str]:
    """(failure_class, short message) for an exception raised while running a request."""
    from discovery.sandbox.probe import ProbeFailure

    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    text = (text if len(text) <= 300 else text[:297] + "...") + _candidate_line(exc)
    in_candidate = bool(_candidate_line(exc))
    if isinstance(exc, ProbeFailure):
        return exc.failure_class, exc.message
    if isinstance(exc, (namespace.NotInSandbox, namespace.SandboxImportError,
                        confine.SandboxViolation)):
        return "unsafe", f"blocked: {text}"
    if isinstance(exc, NameError) and getattr(exc, "name", None) in UNAVAILABLE_BUILTINS:
        return "unsafe", f"blocked: the builtin {exc.name!r} is not available to loss code{_candidate_line(exc)}"
    if isinstance(exc, MemoryError) or any(m in str(exc) for m in MEMORY_MARKERS):
        return "memory", f"memory limit exceeded: {text}"
    if trusted_job and not in_candidate and isinstance(exc, (ImportError, OSError)):
        # The trusted job itself could not import or read something: not the candidate's doing.
        return "infrastructure", f"the sandboxed job failed outside the candidate: {text}"
    if isinstance(exc, OSError):
        return "unsafe", f"the sandbox refused an operating-system operation: {text}"
    if isinstance(exc, SyntaxError):
        return "syntax", text
    if isinstance(exc, RecursionError):
        return "crash", f"maximum recursion depth exceeded{_candidate_line(exc)}"
    if isinstance(exc, ValueError) and "top-level function" in str(exc):
        return "contract", str(exc)
    return "crash", text


def _load(request: dict[str, Any], facades: dict[str, Any]) -> Callable[..., Any] | None:
    code = request.get("code")
    if code is None:
        return None
    if request.get("validate", True):
        from discovery.sandbox.validation import first_error, validate_source

        error = first_error(validate_source(code))
        if error is not None:
            raise _Rejected(error.kind, f"line {error.line}: {error.message}")
    return namespace.load_candidate(code, facades)


class _Rejected(Exception):
    def __init__(self, failure_class: str, message: str) -> None:
        super().__init__(message)
        self.failure_class, self.message = failure_class, message


def _probe(request: dict[str, Any], facades: dict[str, Any], budget_s: float) -> dict[str, Any]:
    from discovery.sandbox.probe import run_probe

    started = time.perf_counter()
    fn = _load(request, facades)
    if fn is None:
        raise _Rejected("contract", "a probe needs candidate code")
    outcome = run_probe(fn)
    elapsed = time.perf_counter() - started
    if elapsed > budget_s:
        return {"ok": False, "failure_class": "timeout",
                "message": f"the probe took {elapsed:.2f} s (budget {budget_s:.2f} s); the loss is "
                           "too slow"}
    return {"ok": True, "failure_class": None, "message": "accepted",
            "fingerprint": outcome.fingerprint, "fingerprint_vector": outcome.fingerprint_vector,
            "shape": outcome.shape}


def _selftest(request: dict[str, Any], facades: dict[str, Any], plan: confine.ChildPlan,
              budget_s: float) -> dict[str, Any]:
    """Show that the layers this zygote promises are really in force, then probe a loss."""
    problems = []
    if plan.seccomp_program:
        import socket

        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
            problems.append("socket() is allowed although seccomp was applied")
        except PermissionError:
            pass
    if plan.landlock:
        outside = os.path.join(os.path.dirname(plan.scratch), f"selftest-{os.getpid()}")
        try:
            with open(outside, "w"):
                problems.append("a file outside the job's scratch dir was writable")
        except PermissionError:
            pass
    if problems:
        return {"ok": False, "failure_class": "infrastructure", "message": "; ".join(problems)}
    return _probe(request, facades, budget_s)


def _job(request: dict[str, Any], facades: dict[str, Any]) -> dict[str, Any]:
    fn = _load(request, facades)
    module_name, _, attr = str(request["job"]).partition(":")
    job_fn = getattr(importlib.import_module(module_name), attr)
    value = job_fn(fn, **(request.get("kwargs") or {}))
    if not isinstance(value, dict):
        return {"ok": False, "failure_class": "crash",
                "message": f"job returned {type(value).__name__}, expected a dict"}
    return {"ok": True, "failure_class": None, "message": "ok", "value": value}


def _run(request: dict[str, Any], facades: dict[str, Any], limits: dict[str, Any],
         plan: confine.ChildPlan) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    kind = request.get("kind")
    capture = TailWriter(int(limits["max_output_bytes"]))
    sys.stdout = sys.stderr = capture
    try:
        if kind == "probe":
            answer = _probe(request, facades, float(limits["probe_time_budget_s"]))
        elif kind == "selftest":
            answer = _selftest(request, facades, plan, float(limits["probe_time_budget_s"]))
        else:
            answer = _job(request, facades)
    except _Rejected as exc:
        answer = {"ok": False, "failure_class": exc.failure_class, "message": exc.message}
    except BaseException as exc:  # noqa: BLE001 - candidate code may raise anything
        failure, message = classify(exc, trusted_job=(kind == "job"))
        answer = {"ok": False, "failure_class": failure, "message": message}
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    answer["stdout_tail"] = capture.report()
    return answer


def _redirect_fds(request_fd: int, reply_fd: int, job_dir: str) -> None:
    """fd 3: the request, fd 4: the reply; stdin /dev/null; native stdout/stderr into the job
    dir; every other fd (the zygote's pipes to the parent among them) closed."""
    request_fd, reply_fd = os.dup(request_fd), os.dup(reply_fd)  # out of the way of 3 and 4
    os.dup2(request_fd, 3)
    os.dup2(reply_fd, 4)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    log = os.open(os.path.join(job_dir, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(5, 1 << 20)


def run_child(request_fd: int, reply_fd: int, job_dir: str, plan: confine.ChildPlan,
              facades: dict[str, Any], limits: dict[str, Any]) -> None:
    """The whole life of a child: confine, wait for one request, answer it, exit. Never returns."""
    try:
        _redirect_fds(request_fd, reply_fd, job_dir)
        os.chdir(job_dir)
        os.environ["HOME"] = os.environ["TMPDIR"] = job_dir
        tempfile.tempdir = job_dir  # the zygote's imports cached the scratch root
        try:
            confine.confine_child(plan)
            problem = ""
        except Exception as exc:  # noqa: BLE001 - never run a job half-confined
            problem = f"the sandbox could not confine the job: {type(exc).__name__}: {exc}"
        ready = time.monotonic()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        ready_cpu = usage.ru_utime + usage.ru_stime  # this child's CPU from fork to confined
        request = wire.recv(3, limit=4 * 1024 * 1024)
        started = time.monotonic()
        if problem:
            answer: dict[str, Any] = {"ok": False, "failure_class": "infrastructure", "message": problem}
        else:
            confine.set_cpu_limit(int(request.get("cpu_s") or limits["cpu_time_s"]))
            answer = _run(request, facades, limits, plan)
        answer.update(t_ready=ready, t_start=started, t_done=time.monotonic(), cpu_ready=ready_cpu)
        data = wire.encode(wire.sanitize(answer))
        view = memoryview(data)
        while view:
            view = view[os.write(4, view):]
        os.close(4)  # the reply is complete now, before this process is torn down
    except BaseException:  # noqa: BLE001
        os._exit(EXIT_NO_REPLY)
    os._exit(0)
