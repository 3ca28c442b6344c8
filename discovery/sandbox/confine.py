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
import stat
import sys
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
PR_SET_PDEATHSIG = 1
UID_BASE = 200_000  # worker uid = UID_BASE + worker pid: unique among live workers
SANDBOX_GID = UID_BASE  # shared group: lets workers share ``writable_dirs`` (caches), nothing else

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, flags: int, fstype: str | None = None,
           data: str | None = None) -> None:
    _check(_libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), flags,
                       data and data.encode()), f"mount {target}")


def _hidden_ancestor(path: str) -> str | None:
    """Topmost ancestor of ``path`` that other users cannot traverse (e.g. /root, mode 0700)."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    for i in range(1, len(parts) + 1):
        ancestor = os.sep + os.sep.join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _needed_paths(limits: dict[str, Any], private_dir: str) -> list[str]:
    """Paths the worker must still reach: interpreter, venv, project, its own dirs."""
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, project, private_dir,
                                          *limits["writable_dirs"])]


def mask_directories(limits: dict[str, Any], private_dir: str, notes: list[str]) -> list[str]:
    """Hide home-like directories (and the secrets people keep there) behind empty tmpfs.

    A needed path below a masked directory (pyenv's Python under /root, mode 0700) is bound
    back in at the same place, so only what the worker needs stays visible.
    """
    needed = _needed_paths(limits, private_dir)
    masks = [os.path.realpath(d) for d in limits["hidden_dirs"] if os.path.isdir(d)]
    ancestor = _hidden_ancestor(os.path.realpath(sys.base_prefix))
    if ancestor and ancestor not in masks:
        masks.append(ancestor)
    masked = []
    for mask in masks:
        inside = [p for p in needed if p == mask or p.startswith(mask + os.sep)]
        if any(p == mask for p in inside):
            continue  # the project itself lives here: cannot hide it
        fds = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in inside if os.path.isdir(p)]
        try:
            _mount("tmpfs", mask, MS_NOSUID | MS_NODEV, "tmpfs", "mode=755,size=1m")
            writable = {os.path.realpath(p) for p in (private_dir, *limits["writable_dirs"])}
            for path, fd in fds:
                os.makedirs(path, exist_ok=True)
                _mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
                if path not in writable:
                    _mount(None, path, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            masked.append(mask)
        except OSError as exc:
            notes.append(f"could not hide {mask}: {exc}")
        finally:
            for _, fd in fds:
                os.close(fd)
    return masked


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
        readonly_points += mask_directories(limits, private_dir, notes)
        for point in readonly_points:
            if not os.path.ismount(point):
                _mount(point, point, MS_BIND | MS_REC)
            _mount(None, point, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        # The private dir becomes a size-capped tmpfs: a candidate cannot fill the disk, and
        # whatever it writes disappears with the namespace even if the parent dies.
        _mount("tmpfs", private_dir, MS_NOSUID | MS_NODEV, "tmpfs",
               f"mode=700,size={int(limits['private_dir_mb'])}m")
        for path in limits["writable_dirs"]:
            _mount(path, path, MS_BIND)
            _mount(None, path, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
        state["readonly_fs"] = True
    except OSError as exc:
        notes.append(f"read-only filesystem view failed ({exc}); relying on uid permissions")
    return state


def _share_one(path: str, is_dir: bool) -> None:
    """chgrp + g+rw(x,s) through an O_NOFOLLOW fd: a symlink swapped in by a running worker is
    never followed, and a hard link (nlink > 1) to some other file is left alone."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_DIRECTORY if is_dir else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if not is_dir and (st.st_nlink != 1 or not stat.S_ISREG(st.st_mode)):
            return
        if st.st_gid != SANDBOX_GID:
            os.fchown(fd, -1, SANDBOX_GID)
        extra = 0o2070 if is_dir else 0o060
        if st.st_mode & extra != extra:
            os.fchmod(fd, (st.st_mode & 0o7777) | extra)
    finally:
        os.close(fd)


def share_with_workers(root: str, max_entries: int = 20_000) -> None:
    """Group-own ``root``'s tree by the sandbox group, group-writable, setgid on directories.

    Files made by one worker (or by the parent, e.g. an in-process baseline run) must stay
    writable by the next worker, whose uid differs. Runs as root, before the uid drop.
    """
    seen = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        _share_one(dirpath, True)
        for name in filenames:
            _share_one(os.path.join(dirpath, name), False)
        seen += 1 + len(filenames)
        if seen > max_entries:
            return


def drop_privileges(limits: dict[str, Any], private_dir: str, notes: list[str]) -> int:
    """Root -> a uid no other process has (so RLIMIT_NPROC counts this worker alone)."""
    uid = os.getuid()
    if os.geteuid() == 0 and limits["drop_privileges"]:
        uid = UID_BASE + os.getpid()
        os.chown(private_dir, uid, SANDBOX_GID)
        for path in limits["writable_dirs"]:
            try:
                share_with_workers(path)
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
        # Die with the parent (set after the uid change, which clears it); an orphaned worker
        # stuck in a candidate's loop must not outlive the campaign.
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
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


def _refusing_subclass(cls: type, name: str) -> type:
    """A subclass that cannot be instantiated: class attributes stay readable for importers."""

    def refuse(self: Any, *_args: Any, **_kwargs: Any) -> None:
        raise SandboxViolation(f"{name} is not allowed in the sandbox")

    return type(cls.__name__, (cls,), {"__init__": refuse, "__module__": cls.__module__})


def poison_process_and_network_apis() -> None:
    """Python-level tripwires for fork/exec/spawn/shell/socket (the kernel limits back them up)."""
    import _posixsubprocess
    import pty
    import socket
    import subprocess
    for name in ("system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp",
                 "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp",
                 "spawnlpe", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp",
                 "execlpe", "kill", "killpg", "setsid", "chroot"):
        if hasattr(os, name):
            setattr(os, name, _poisoned(f"os.{name}"))
    subprocess.Popen = _refusing_subclass(subprocess.Popen, "subprocess.Popen")  # type: ignore[misc]
    if hasattr(subprocess, "_fork_exec"):  # the original Popen class calls this alias
        subprocess._fork_exec = _poisoned("fork_exec")  # type: ignore[attr-defined]
    _posixsubprocess.fork_exec = _poisoned("fork_exec")  # type: ignore[attr-defined]
    pty.fork = _poisoned("pty.fork")  # type: ignore[assignment]
    socket.socket = _refusing_subclass(socket.socket, "socket.socket")  # type: ignore[misc]
    socket.create_connection = _poisoned("socket.create_connection")  # type: ignore[assignment]
    socket.socketpair = _poisoned("socket.socketpair")  # type: ignore[assignment]
