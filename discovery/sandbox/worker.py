"""Sandbox worker: confine this process, import torch once, then serve requests over a pipe.

Started by ``SandboxPool`` as a fresh interpreter (``python -I -c ...``) with a stripped
environment; requests and answers are length-prefixed JSON on two inherited pipe fds, never on
stdout (candidate code may print). Candidate code is exec'd only here.
"""

from __future__ import annotations

import builtins
import importlib
import io
import json
import math
import os
import shutil
import sys
import time
import traceback
from typing import Any, Callable

from discovery.sandbox import confine, wire

TRUSTED_WRAPS = ("manual_seed",)  # torch attributes torch._dynamo re-wraps (functools.wraps)
MEMORY_MARKERS = ("can't allocate memory", "DefaultCPUAllocator", "out of memory",
                  "std::bad_alloc", "Cannot allocate memory")


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
    if isinstance(exc, ProbeFailure):
        return exc.failure_class, exc.message
    if isinstance(exc, MemoryError) or any(m in str(exc) for m in MEMORY_MARKERS):
        return "memory", f"memory limit exceeded: {text}"
    if isinstance(exc, OSError) and trusted_job and not _candidate_line(exc):
        # Raised by the trusted job itself (e.g. an unwritable cache dir): not the candidate's doing.
        return "crash", f"the sandboxed job failed outside the candidate: {text}"
    if isinstance(exc, confine.SandboxViolation):
        return "unsafe", f"blocked: {exc}"
    if isinstance(exc, OSError):
        return "unsafe", f"the sandbox refused an operating-system operation: {text}"
    if isinstance(exc, SyntaxError):
        return "syntax", text
    if isinstance(exc, RecursionError):
        return "crash", f"maximum recursion depth exceeded{_candidate_line(exc)}"
    if isinstance(exc, ValueError) and "top-level function" in str(exc):
        return "contract", str(exc)
    return "crash", text


class Worker:
    def __init__(self, in_fd: int, out_fd: int, private_dir: str) -> None:
        self.in_fd, self.out_fd, self.private_dir = in_fd, out_fd, private_dir
        self.notes: list[str] = []
        self.requests = 0

    # ---- start-up -------------------------------------------------------------------------
    def start(self) -> None:
        self.limits: dict[str, Any] = wire.recv(self.in_fd)["limits"]
        isolation = confine.unshare_namespaces(self.limits, self.private_dir, self.notes)
        os.chdir(self.private_dir)
        import torch

        torch.set_num_threads(1)
        import candidate_losses  # noqa: F401  (trusted; loads the contract)
        from discovery.sandbox import probe

        for module in self.limits.get("warm_imports", []):
            importlib.import_module(module)
        self._warm_up(probe)
        import _posixsubprocess, pty, socket, subprocess  # noqa: E401,F401  before the uid drop
        uid = confine.drop_privileges(self.limits, self.private_dir, self.notes)
        confine.apply_rlimits(self.limits, uid, self.notes)
        confine.poison_process_and_network_apis()
        self.snapshot = self._snapshot()
        wire.send(self.out_fd, {"type": "ready", "uid": uid, "pid": os.getpid(),
                                "isolation": isolation, "notes": self.notes})

    def _warm_up(self, probe: Any) -> None:
        """Exercise exec, autograd and the probe once so lazy imports happen before confinement."""
        from candidate_losses import load_loss_from_source

        fn = load_loss_from_source(
            "def warm(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,"
            " reference_rejected_logps, beta):\n"
            "    h = (policy_chosen_logps - reference_chosen_logps) - "
            "(policy_rejected_logps - reference_rejected_logps)\n"
            "    return -F.logsigmoid(beta * h)\n")
        probe.run_probe(fn)

    def _snapshot(self) -> dict[str, dict[str, int]]:
        """Identity of shared module attributes: a candidate that patches them taints the worker."""
        import socket
        import subprocess

        import torch
        import torch.nn.functional as F

        spaces = {"torch": vars(torch), "F": vars(F), "math": vars(math), "builtins": vars(builtins),
                  "Tensor": dict(vars(torch.Tensor)), "os": vars(os), "sys.modules": sys.modules,
                  "subprocess": vars(subprocess), "socket": vars(socket)}
        if not hasattr(self, "_originals"):
            self._originals = {("torch", k): vars(torch)[k] for k in TRUSTED_WRAPS}
        return {name: {k: id(v) for k, v in space.items()} for name, space in spaces.items()}

    def _benign(self, name: str, key: str) -> bool:
        """torch._dynamo (imported lazily by transformers) wraps a few torch functions."""
        if name != "torch" or key not in TRUSTED_WRAPS:
            return False
        import torch

        return getattr(vars(torch).get(key), "__wrapped__", None) is self._originals[(name, key)]

    def _tainted(self) -> str:
        """'' when shared modules are as at start-up, else which entry changed."""
        current = self._snapshot()
        for name, before in self.snapshot.items():
            now = current[name]
            if name == "Tensor" and now.keys() != before.keys():
                return f"torch.Tensor gained {sorted(set(now) - set(before))[:3]}"
            changed = [k for k, v in before.items() if now.get(k) != v and not self._benign(name, k)]
            if changed:
                return f"{name}.{changed[0]} changed"
        return ""

    # ---- requests -------------------------------------------------------------------------
    def _reset_globals(self) -> None:
        import torch

        torch.manual_seed(0)
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)
        sys.setrecursionlimit(1000)

    def _clean_private_dir(self) -> None:
        for name in os.listdir(self.private_dir):
            path = os.path.join(self.private_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("kind")
        allowance = float(request.get("cpu_s") or self.limits["cpu_time_s"])
        confine.set_request_cpu_limit(allowance)
        self._reset_globals()
        capture = TailWriter(int(self.limits["max_output_bytes"]))
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = capture
        started = time.perf_counter()
        try:
            answer = self._probe(request) if kind == "probe" else self._job(request)
        except BaseException as exc:  # noqa: BLE001 - candidate code may raise anything
            failure, message = classify(exc, trusted_job=(kind == "job"))
            answer = {"ok": False, "failure_class": failure, "message": message}
        finally:
            sys.stdout, sys.stderr = saved
        answer["stdout_tail"] = capture.report()
        answer["worker_time_s"] = time.perf_counter() - started
        self._clean_private_dir()
        self.requests += 1
        reason = self._tainted()
        answer["recycle"] = bool(reason)
        if reason:
            answer["recycle_reason"] = f"shared modules modified ({reason})"
        return answer

    def _load(self, code: str | None) -> Callable[..., Any] | None:
        from candidate_losses import load_loss_from_source

        return None if code is None else load_loss_from_source(code)

    def _probe(self, request: dict[str, Any]) -> dict[str, Any]:
        from discovery.sandbox.probe import run_probe

        started = time.perf_counter()
        fn = self._load(request["code"])
        outcome = run_probe(fn)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        budget = float(self.limits["probe_time_budget_s"])
        if elapsed > budget:
            return {"ok": False, "failure_class": "timeout",
                    "message": f"the probe took {elapsed:.2f} s (budget {budget:.2f} s); "
                               "the loss is too slow"}
        return {"ok": True, "failure_class": None, "message": "accepted",
                "fingerprint": outcome.fingerprint,
                "fingerprint_vector": outcome.fingerprint_vector, "shape": outcome.shape}

    def _job(self, request: dict[str, Any]) -> dict[str, Any]:
        fn = self._load(request.get("code"))
        module_name, _, attr = str(request["job"]).partition(":")
        job_fn = getattr(importlib.import_module(module_name), attr)
        value = job_fn(fn, **(request.get("kwargs") or {}))
        if not isinstance(value, dict):
            return {"ok": False, "failure_class": "crash",
                    "message": f"job returned {type(value).__name__}, expected a dict"}
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as exc:
            return {"ok": False, "failure_class": "crash", "message": f"job value is not JSON: {exc}"}
        return {"ok": True, "failure_class": None, "message": "ok", "value": value}

    def serve(self) -> None:
        while True:
            try:
                request = wire.recv(self.in_fd)
            except wire.WireClosed:
                return
            if request.get("kind") == "exit":
                return
            answer = self.handle(request)
            answer["id"] = request.get("id")
            wire.send(self.out_fd, answer)
            if answer["recycle"]:
                return


def main(argv: list[str]) -> None:
    in_fd, out_fd, private_dir = int(argv[0]), int(argv[1]), argv[2]
    worker = Worker(in_fd, out_fd, private_dir)
    worker.start()
    worker.serve()
    os._exit(0)  # skip interpreter teardown: nothing of value left, and it cannot hang


if __name__ == "__main__":
    main(sys.argv[1:])
