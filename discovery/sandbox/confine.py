"""Kernel-level confinement of one sandbox child, applied right after it is forked.

In order: new session, rlimits, no capabilities (root only), no_new_privs, die-with-zygote,
Landlock (filesystem: read the allowed trees, write only the job's scratch dir; TCP and signals
scoped where the kernel has them) and a seccomp filter (no sockets, no new processes or
programs, no SysV/POSIX IPC, no ptrace, signals only to its own process group, none of the kernel's
administrative or rarely-needed attack surface). bubblewrap (``isolation.py``) adds namespaces
around the zygote where it is available; these layers hold on their own where it is not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import resource
import signal
from dataclasses import dataclass, field
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CLONE_THREAD = 0x00010000
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000)  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
SUPPORTED_MACHINES = ("x86_64", "aarch64")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class SandboxViolation(PermissionError):
    """Raised by poisoned process/network entry points inside a child."""


class ConfinementError(RuntimeError):
    """A confinement step failed in the child: the job must not run."""


@dataclass
class ChildPlan:
    """What one child may touch; built by the zygote, applied by ``confine_child``."""

    scratch: str                           # the job's private dir: the only writable place
    read_paths: list[str]                  # trees readable (and executable) by the child
    device_files: list[str] = field(default_factory=list)  # read/write device nodes
    address_space_mb: int = 4096
    cpu_s: int = 60                        # default allowance; a request may set its own
    max_file_mb: int = 256
    max_open_files: int = 256
    landlock: bool = True
    seccomp_program: bytes = b""           # compiled by the zygote; empty: no filter


# ---- rlimits and privileges -------------------------------------------------------------------

def apply_rlimits(plan: ChildPlan) -> None:
    mb = 1024 * 1024
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG, no kill
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (plan.address_space_mb * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (plan.max_file_mb * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (plan.max_open_files,) * 2)
    # RLIMIT_CPU is set once the request (and its allowance) is known: ``set_cpu_limit``.


def set_cpu_limit(seconds: int) -> None:
    """RLIMIT_CPU = CPU used so far + ``seconds`` (SIGXCPU), hard 2 s later (SIGKILL). Set once,
    before any candidate code runs; without privileges nothing can raise it again."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(used.ru_utime + used.ru_stime + seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 2))


def drop_capabilities() -> None:
    """Root without bubblewrap's uid change: keep uid 0 but hold no capability at all."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            last = int(fh.read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)()
    if _libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        raise ConfinementError(f"capset: {os.strerror(ctypes.get_errno())}")


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise ConfinementError(f"prctl({option}): {os.strerror(ctypes.get_errno())}")


# ---- Landlock ---------------------------------------------------------------------------------

SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_TRUNCATE, FS_IOCTL_DEV = 1 << 14, 1 << 15
FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
                    5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    if platform.machine() not in SUPPORTED_MACHINES:
        return 0
    version = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                            ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return max(0, int(version))


def apply_landlock(plan: ChildPlan, abi: int) -> None:
    fs_all = FS_RIGHTS_BY_ABI[min(abi, 5)]
    attr = _RulesetAttr(fs_all, 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP  # no rule: no TCP at all
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    ruleset = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                            ctypes.c_uint32(0))
    if ruleset < 0:
        raise ConfinementError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    file_only = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | (FS_TRUNCATE if abi >= 3 else 0) | (
        FS_IOCTL_DEV if abi >= 5 else 0)
    try:
        rules = [(p, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR) for p in plan.read_paths]
        rules += [(p, file_only) for p in plan.device_files]
        rules.append((plan.scratch, fs_all))
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # absent on this machine: nothing to allow
            try:
                if not os.path.isdir(path):
                    access &= file_only
                rule = _PathBeneath(access & fs_all, fd)
                if _libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
                    raise ConfinementError(f"landlock_add_rule {path}: "
                                           f"{os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
        if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            raise ConfinementError(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)


# ---- seccomp ----------------------------------------------------------------------------------

DENIED_SYSCALLS: tuple[str, ...] = (
    # network (a socket is needed for TCP, UDP, UNIX sockets on disk or abstract ones)
    "socket", "socketpair",
    # new processes and programs
    "fork", "vfork", "execve", "execveat",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
    "pidfd_send_signal", "kcmp", "tkill", "process_madvise", "migrate_pages", "ioprio_set",
    # namespaces, mounts, roots
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig",
    "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "open_by_handle_at",
    "name_to_handle_at",
    # SysV and POSIX IPC
    "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
    "semtimedop", "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr",
    # file metadata the Landlock ruleset does not cover
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr", "truncate", "mknod", "mknodat",
    # kernel attack surface nothing in a loss needs
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "reboot", "syslog", "acct",
    "lookup_dcookie", "iopl", "ioperm", "swapon", "swapoff", "quotactl", "quotactl_fd",
    "fanotify_init", "sethostname", "setdomainname", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "vhangup", "memfd_secret", "personality",
)


def seccomp_available() -> str:
    """'' when a seccomp filter can be built here, else why not."""
    if platform.machine() not in SUPPORTED_MACHINES:
        return f"seccomp filters are prepared for {', '.join(SUPPORTED_MACHINES)} only"
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, RuntimeError, OSError) as exc:
        return f"libseccomp is not available ({exc}); install libseccomp2"
    return ""


def build_seccomp_program() -> bytes:
    """The filter as raw BPF, compiled once in the zygote (libseccomp is slow to load, the
    program is not: each child only hands these bytes to the kernel).

    Default allow; the calls above fail with EPERM. clone3 says ENOSYS so threads fall back to
    clone, which is allowed only for threads; signals may go only to the caller's own process
    group (kill(0, ...)), limits and scheduling only to the caller (pid 0).
    """
    import errno
    import tempfile

    import pyseccomp as sc

    eperm = sc.ERRNO(errno.EPERM)
    rules: list[tuple[int, str, tuple[Any, ...]]] = [(eperm, n, ()) for n in DENIED_SYSCALLS]
    rules += [(eperm, n, ()) for n in ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")]
    rules.append((sc.ERRNO(errno.ENOSYS), "clone3", ()))
    rules.append((eperm, "clone", (sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0),)))
    rules += [(eperm, "clone", (sc.Arg(0, sc.MASKED_EQ, flag, flag),)) for flag in NAMESPACE_FLAGS]
    for name in ("kill", "prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam",
                 "sched_setattr", "setpriority"):
        rules.append((eperm, name, (sc.Arg(1 if name == "setpriority" else 0, sc.NE, 0),)))
    flt = sc.SyscallFilter(sc.ALLOW)
    for action, name, args in rules:
        try:
            flt.add_rule(action, name, *args)
        except (OSError, ValueError, RuntimeError):
            continue  # a call this kernel/libseccomp does not know cannot be made either
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def load_seccomp_program(program: bytes) -> None:
    """Install a compiled filter on the calling thread (needs no_new_privs)."""
    if not program or len(program) % 8:
        raise ConfinementError("empty or malformed seccomp program")
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise ConfinementError(f"seccomp: {os.strerror(ctypes.get_errno())}")


# ---- Python-level tripwires (clear messages; the kernel layers are the boundary) --------------

def _poisoned(name: str) -> Any:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise SandboxViolation(f"{name} is not allowed in the sandbox")

    return refuse


def poison_process_apis() -> None:
    for name in ("system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "spawnv",
                 "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
                 "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe",
                 "kill", "killpg", "setsid", "chroot"):
        if hasattr(os, name):
            setattr(os, name, _poisoned(f"os.{name}"))


# ---- all of it --------------------------------------------------------------------------------

def confine_child(plan: ChildPlan) -> None:
    """Apply every layer to the calling (freshly forked) process; raise if one fails."""
    os.setsid()
    apply_rlimits(plan)
    if os.geteuid() == 0:
        drop_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if plan.landlock:
        apply_landlock(plan, landlock_abi())
    if plan.seccomp_program:
        load_seccomp_program(plan.seccomp_program)
    poison_process_apis()
