"""Worker-side confinement: namespaces, read-only filesystem, unprivileged uid, rlimits, no fork.

Runs inside the freshly spawned worker, in this order: namespaces (needs root), warm imports,
privilege drop, rlimits, Python-level poisoning. Each step that the kernel refuses is recorded
in ``notes`` (sent to the parent, which logs it) instead of failing the worker.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
UID_BASE = 200_000  # worker uid = UID_BASE + worker pid: unique among live workers
SANDBOX_GID = UID_BASE  # shared group: lets workers share ``writable_dirs`` (caches), nothing else

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(src and src.encode(), target.encode(), None, flags, None), f"mount {target}")


def unshare_namespaces(limits: dict[str, Any], private_dir: str, notes: list[str]) -> dict[str, bool]:
    """New network + mount namespaces; read-only filesystem except the private/writable dirs."""
    state = {"netns": False, "mountns": False, "readonly_fs": False}
    flags = (CLONE_NEWNET if limits["isolate_network"] else 0) | (
        CLONE_NEWNS if limits["isolate_filesystem"] else 0)
    if not flags:
        notes.append("network and filesystem isolation disabled by limits")
        return state
    if os.geteuid() != 0:
        flags |= CLONE_NEWUSER  # unprivileged: a user namespace grants the namespace caps
    try:
        _check(_libc.unshare(flags), "unshare")
    except OSError as exc:
        notes.append(f"no namespaces ({exc}); network and filesystem are NOT isolated")
        return state
    state["netns"] = bool(flags & CLONE_NEWNET)
    state["mountns"] = bool(flags & CLONE_NEWNS)
    if not state["mountns"]:
        return state
    try:
        _mount(None, "/", MS_REC | MS_PRIVATE)
        readonly_points = ["/"] + [p for p in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(p)]
        for point in readonly_points:
            if not os.path.ismount(point):
                _mount(point, point, MS_BIND | MS_REC)
            _mount(None, point, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        for path in [private_dir, *limits["writable_dirs"]]:
            _mount(path, path, MS_BIND)
            _mount(None, path, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
        state["readonly_fs"] = True
    except OSError as exc:
        notes.append(f"read-only filesystem view failed ({exc}); relying on uid permissions")
    return state


def drop_privileges(limits: dict[str, Any], private_dir: str, notes: list[str]) -> int:
    """Root -> a uid no other process has (so RLIMIT_NPROC counts this worker alone)."""
    uid = os.getuid()
    if os.geteuid() == 0 and limits["drop_privileges"]:
        uid = UID_BASE + os.getpid()
        os.chown(private_dir, uid, SANDBOX_GID)
        for path in limits["writable_dirs"]:
            try:  # group-owned, setgid: files made by one worker stay writable by the next
                os.chown(path, -1, SANDBOX_GID)
                os.chmod(path, 0o2770)
            except OSError as exc:
                notes.append(f"cannot open {path} to workers: {exc}")
        os.setgroups([])
        os.setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID)
        os.setresuid(uid, uid, uid)
        os.umask(0o007)
    elif os.geteuid() == 0:
        notes.append("running candidate code as root (drop_privileges=False)")
    try:
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except OSError as exc:
        notes.append(str(exc))
    return uid


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def _processes_of_uid(uid: int) -> int:
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            count += len(os.listdir(f"/proc/{pid}/task"))
                        break
        except OSError:
            continue
    return count


def apply_rlimits(limits: dict[str, Any], uid: int, notes: list[str]) -> None:
    """Address space, file size, open files, core dumps, CPU (hard) and process count."""
    mb = 1024 * 1024
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG, no kill
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limits["address_space_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["max_file_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["max_open_files"],) * 2)
    budget = int(limits["worker_cpu_budget_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (budget, budget))
    # RLIMIT_NPROC counts every thread of the real uid. With a private uid that is exactly this
    # worker; otherwise (not root) it is the user's whole count at this instant (best effort).
    current = _thread_count() if uid >= UID_BASE else _processes_of_uid(uid)
    nproc = current + int(limits["max_new_threads"])
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    if os.geteuid() == 0:
        notes.append("RLIMIT_NPROC is not enforced for root")


def set_request_cpu_limit(seconds: float) -> None:
    """Soft RLIMIT_CPU = CPU used so far + this request's allowance (hard limit stays)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    soft_now, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(spent + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


class SandboxViolation(PermissionError):
    """Raised by poisoned process/network entry points inside a worker."""


def _poisoned(name: str):
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise SandboxViolation(f"{name} is not allowed in the sandbox")

    return refuse


def poison_process_and_network_apis() -> None:
    """Python-level tripwires for fork/exec/spawn/shell/socket (the kernel limits back them up)."""
    import _posixsubprocess
    import pty
    import socket
    import subprocess

    for name in ("system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp",
                 "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp",
                 "spawnlpe", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp",
                 "execlpe", "kill", "killpg", "setsid", "putenv", "unsetenv", "chroot"):
        if hasattr(os, name):
            setattr(os, name, _poisoned(f"os.{name}"))
    subprocess.Popen = _poisoned("subprocess.Popen")  # type: ignore[misc,assignment]
    _posixsubprocess.fork_exec = _poisoned("fork_exec")  # type: ignore[attr-defined]
    pty.fork = _poisoned("pty.fork")  # type: ignore[assignment]
    socket.socket = _poisoned("socket.socket")  # type: ignore[misc,assignment]
    socket.create_connection = _poisoned("socket.create_connection")  # type: ignore[assignment]
    socket.socketpair = _poisoned("socket.socketpair")  # type: ignore[assignment]
