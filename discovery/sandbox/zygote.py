"""The sandbox zygote: import torch and the evaluators once, then fork one fresh child per request.

Started by ``SandboxPool`` (inside bubblewrap where available) as ``python -I -c ...`` with an
allow-listed environment. It never runs candidate code itself: each request is served by a
child forked from this warm, untouched state (``child.py``), confined, and gone after its one
reply. The zygote relays the child's reply bytes unparsed, adds how the child ended (exit code,
signal, wall-clock or disk-quota kill) and wipes the child's scratch directory. The child for
the next request is forked (and confines itself) as soon as the current one has its request,
so a request normally finds one waiting: the fork is paid while the previous job runs.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import select
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from discovery.sandbox import confine, wire

MAX_REPLY_BYTES = 8 * 1024 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
NATIVE_TAIL_BYTES = 4000
POLL_S = 0.05
WARM_LOSS = (
    "def warm(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,"
    " reference_rejected_logps, beta):\n"
    "    h = (policy_chosen_logps - reference_chosen_logps) - "
    "(policy_rejected_logps - reference_rejected_logps)\n"
    "    return -F.logsigmoid(beta * h)\n")


@dataclass
class Spare:
    """A forked, confined child waiting for its one request."""

    pid: int
    request_w: int
    reply_r: int
    job_dir: str
    t_fork: float
    fork_cpu_s: float      # the zygote's CPU time spent in fork()
    reaped: bool = False


def _usage_bytes(root: str) -> int:
    total, stack = 0, [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


def _warm_training() -> None:
    """The first optimizer step imports torch._dynamo, sympy and more (~2 s): pay it here,
    once, instead of in every child."""
    import torch

    param = torch.nn.Parameter(torch.zeros(4))
    for opt in (torch.optim.AdamW([param], lr=1e-3), torch.optim.Adam([param], lr=1e-3),
                torch.optim.SGD([param], lr=1e-3)):
        (param * torch.linspace(0, 1, 4)).sum().backward()
        torch.nn.utils.clip_grad_norm_([param], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)


class Zygote:
    def __init__(self, in_fd: int, out_fd: int, config: dict[str, Any]) -> None:
        self.in_fd, self.out_fd = in_fd, out_fd
        self.config = config
        self.limits: dict[str, Any] = config["limits"]
        self.scratch: str = config["scratch"]
        self.jobs = 0
        self.notes: list[str] = []
        self.spare: Spare | None = None
        self.finished: list[Spare] = []

    # ---- start-up -------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        started = time.monotonic()
        uid = self.config.get("uid")
        if uid is not None and os.getuid() == 0:  # root's sandbox: become nobody first of all
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(confine.PR_SET_DUMPABLE, 0, 0, 0, 0)  # children cannot read our memory/fds
        libc.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.chdir(self.scratch)
        import torch

        torch.set_num_threads(1)
        import candidate_losses

        candidate_losses.list_losses()  # load the registry (baselines, promoted losses) once
        from discovery.sandbox import namespace, probe
        from discovery.sandbox.validation import validate_source

        for module in self.limits.get("warm_imports", []):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                self.notes.append(f"warm import {module} failed: {exc}")
        _warm_training()
        self.facades = namespace.build_facades()
        self.seccomp_program = confine.build_seccomp_program() if self.config["seccomp"] else b""
        validate_source(WARM_LOSS)  # warm the validator, the loader, autograd and the probe
        probe.run_probe(namespace.load_candidate(WARM_LOSS, self.facades))
        threads = len(os.listdir("/proc/self/task"))
        if threads > 1:
            self.notes.append(f"zygote has {threads} threads before forking (expected 1)")
        status, reply = self.run_request({"id": 0, "kind": "selftest", "code": WARM_LOSS,
                                          "validate": True, "timeout_s": 60.0})
        self.after_reply()
        answer = wire.decode(reply) if reply else {}
        if not answer.get("ok"):
            why = answer.get("message") or f"child ended without a reply ({status})"
            return {"type": "failed", "message": f"sandbox self-test failed: {why}",
                    "native_tail": status.get("native_tail", "")}
        return {"type": "ready", "pid": os.getpid(), "uid": os.getuid(), "mode": self.config["mode"],
                "landlock_abi": confine.landlock_abi() if self.config["landlock"] else 0,
                "seccomp": bool(self.config["seccomp"]), "threads": threads, "notes": self.notes,
                "start_s": time.monotonic() - started,
                "fork_to_ready_s": answer.get("t_ready", 0.0) - status["t_fork"]}

    # ---- children ---------------------------------------------------------------------------
    def _plan(self, job_dir: str) -> confine.ChildPlan:
        lim = self.limits
        return confine.ChildPlan(
            scratch=job_dir, read_paths=list(self.config["read_paths"]),
            device_files=list(self.config["device_files"]),
            address_space_mb=int(lim["address_space_mb"]), cpu_s=int(lim["cpu_time_s"]),
            max_file_mb=int(lim["max_file_mb"]), max_open_files=int(lim["max_open_files"]),
            landlock=bool(self.config["landlock"]), seccomp_program=self.seccomp_program)

    def _fork_spare(self) -> Spare:
        """Fork the child for the *next* request now: it confines itself and waits for one
        request, so the fork is off the request's critical path."""
        from discovery.sandbox import child

        self.jobs += 1
        job_dir = os.path.join(self.scratch, f"job-{self.jobs}")
        os.mkdir(job_dir, 0o700)
        plan = self._plan(job_dir)
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        t_fork, cpu = time.monotonic(), time.process_time()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                os.close(req_w)
                os.close(rep_r)
                child.run_child(req_r, rep_w, job_dir, plan, self.facades, self.limits)
            finally:
                os._exit(child.EXIT_NO_REPLY)
        os.close(req_r)
        os.close(rep_w)
        return Spare(pid, req_w, rep_r, job_dir, t_fork, time.process_time() - cpu)

    def run_request(self, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Hand ``request`` to the waiting child; (how it ended, its raw reply)."""
        t_request = time.monotonic()
        spare, self.spare = self.spare or self._fork_spare(), None
        try:
            try:
                wire.send(spare.request_w, request)
            except OSError:
                pass  # the child is already gone: its exit status says why
            finally:
                os.close(spare.request_w)
            self.spare = self._fork_spare()  # the next one gets ready while this one works
            status, reply = self._collect(spare, t_request, float(request["timeout_s"]))
        finally:
            os.close(spare.reply_r)
            self.finished.append(spare)
        status.update(type="done", id=request.get("id"), t_request=t_request, t_fork=spare.t_fork,
                      fork_cpu_s=spare.fork_cpu_s,
                      native_tail=self._native_tail(spare.job_dir))
        return status, reply

    def after_reply(self) -> None:
        """Off the critical path: reap finished children, wipe everything in the scratch dir
        but the waiting child's own directory."""
        for spare in self.finished:
            if not spare.reaped:
                self._reap(spare.pid, time.monotonic() + 5.0)
        self.finished.clear()
        if self.spare is None:
            self.spare = self._fork_spare()
        self._wipe_scratch(keep=os.path.basename(self.spare.job_dir))

    def _collect(self, spare: Spare, t_request: float, timeout_s: float
                 ) -> tuple[dict[str, Any], bytes]:
        fd, deadline = spare.reply_r, t_request + timeout_s
        quota = int(self.limits["private_dir_mb"]) * 1024 * 1024
        poll_quota = self.config["mode"] != "bwrap"  # bubblewrap's scratch is a sized tmpfs
        reply = bytearray()
        flags = {"timed_out": False, "quota_exceeded": False, "reply_truncated": False}
        eof = False
        while not eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                flags["timed_out"] = True
                break
            ready, _, _ = select.select([fd], [], [], min(POLL_S, remaining))
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    eof = True
                elif len(reply) + len(chunk) > MAX_REPLY_BYTES:
                    flags["reply_truncated"] = True
                    break
                else:
                    reply.extend(chunk)
            if poll_quota and _usage_bytes(spare.job_dir) > quota:
                flags["quota_exceeded"] = True
                break
        exit_code = sig = None
        if not eof or not reply:  # killed, or ended without a reply: how it ended matters
            exit_code, sig = self._reap(spare.pid, deadline if eof else 0.0)
            spare.reaped = True
        return {"exit_code": exit_code, "signal": sig, **flags}, bytes(reply)

    @staticmethod
    def _reap(pid: int, deadline: float) -> tuple[int | None, int | None]:
        """Wait for the child until ``deadline`` (0: kill it now); (exit code, signal)."""
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() >= deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                done, status = os.waitpid(pid, 0)
                break
            time.sleep(0.002)
        if os.WIFSIGNALED(status):
            return None, os.WTERMSIG(status)
        return os.WEXITSTATUS(status), None

    @staticmethod
    def _native_tail(job_dir: str) -> str:
        try:
            with open(os.path.join(job_dir, "output.log"), "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - NATIVE_TAIL_BYTES))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _wipe_scratch(self, keep: str) -> None:
        for entry in os.listdir(self.scratch):
            if entry == keep:
                continue
            path = os.path.join(self.scratch, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # ---- the loop -------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            try:
                request = wire.recv(self.in_fd, limit=MAX_REQUEST_BYTES)
            except (wire.WireClosed, wire.WireError):
                return
            if request.get("kind") == "exit":
                return
            status, reply = self.run_request(request)
            wire.send(self.out_fd, status)
            wire.send_bytes(self.out_fd, reply)
            self.after_reply()


def main(argv: list[str]) -> None:
    in_fd, out_fd = int(argv[0]), int(argv[1])
    config = wire.recv(in_fd, time.monotonic() + 30, limit=MAX_REQUEST_BYTES)
    zygote = Zygote(in_fd, out_fd, config)
    try:
        hello = zygote.start()
    except BaseException as exc:  # noqa: BLE001 - tell the parent why, in one line
        hello = {"type": "failed", "message": f"sandbox zygote failed to start: "
                                              f"{type(exc).__name__}: {exc}"[:1000]}
    wire.send(out_fd, hello)
    if hello["type"] == "ready":
        zygote.serve()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing of value left, and it cannot hang


if __name__ == "__main__":
    main(sys.argv[1:])
