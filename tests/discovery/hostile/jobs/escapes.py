"""Trusted jobs that behave like a candidate which already escaped the language boundary.

Each runs inside a sandbox child (``SandboxPool.run_job(None, "tests.discovery.hostile.jobs.
escapes:NAME", kwargs)``) with full Python, and tries one thing the operating-system boundary
must stop (or must confine to this one child). They report what happened instead of raising,
so a test can assert on every attempt. They are written against the job interface only
(``job(loss_fn, **kwargs) -> dict``), so the same file also runs against older sandboxes.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import struct
import sys
import time
from typing import Any

IPC_CREAT = 0o1000
_libc = ctypes.CDLL(None, use_errno=True)


def _attempt(fn: Any) -> str:
    """'ALLOWED' or 'blocked: <reason>'."""
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - any refusal counts
        return f"blocked: {type(exc).__name__}: {exc}"[:300]
    return "ALLOWED"


def _socket_module() -> Any:
    import _socket  # the C module: Python-level tripwires on `socket` do not count

    return _socket


# ---- processes, signals --------------------------------------------------------------------

def hard_exit(loss_fn: Any = None, code: int = 3) -> dict[str, Any]:
    os._exit(code)


def sleep(loss_fn: Any = None, seconds: float = 3600.0) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


def fork_and_signal(loss_fn: Any = None) -> dict[str, Any]:
    def fork() -> None:
        pid = _libc.fork()
        if pid == 0:
            _libc._exit(0)
        if pid < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        os.waitpid(pid, 0)

    def execute() -> None:
        argv = (ctypes.c_char_p * 2)(b"/bin/true", None)
        _libc.execv(b"/bin/true", argv)
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    def kill_parent() -> None:
        if _libc.kill(os.getppid(), 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    return {"fork": _attempt(fork), "exec": _attempt(execute), "signal_parent": _attempt(kill_parent)}


# ---- global state (for the DPO -> poisoner -> DPO tests) -------------------------------------

def poison_globals(loss_fn: Any = None, marker_dir: str = "") -> dict[str, Any]:
    """Change process-wide torch/Python state a later job could inherit, all through public API
    that leaves module attributes alone (so a check of module attributes sees nothing)."""
    import warnings

    import torch
    import torch.nn.functional as F

    done = []

    class Flip(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            return -out if func is F.logsigmoid or func is torch.sigmoid else out

    def park():
        with Flip():
            yield

    gen = park()
    next(gen)                                   # the mode stays pushed while gen is suspended
    warnings.onceregistry["prefdisco-poison"] = gen
    done.append("torch_function_mode")
    torch.autograd.set_detect_anomaly(True)
    done.append("anomaly_mode")
    torch.set_float32_matmul_precision("medium")
    done.append("matmul_precision")
    warnings.simplefilter("error")
    done.append("warnings_error")
    torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o * 0)
    done.append("global_forward_hook")
    try:
        torch.set_autocast_enabled("cpu", True)
        done.append("autocast")
    except Exception:  # noqa: BLE001 - older signature
        pass
    for path in (os.path.join(os.getcwd(), "poison.txt"), os.path.join(marker_dir or "/tmp",
                                                                         "prefdisco-poison.txt")):
        try:
            with open(path, "w") as fh:
                fh.write("poison")
            done.append(f"file:{path}")
        except OSError:
            pass
    return {"done": done, "pid": os.getpid()}


def loss_values(loss_fn: Any = None, loss_name: str = "dpo") -> dict[str, Any]:
    """A registered loss on fixed inputs, plus the process state a poisoner would change."""
    import warnings

    import torch

    from candidate_losses import get_loss
    from discovery.sandbox.probe import probe_inputs

    fn = loss_fn if loss_fn is not None else get_loss(loss_name).fn
    with warnings.catch_warnings():
        out = fn(*probe_inputs(4, seed=0), 0.1)
    return {"loss": [float(v) for v in out.detach().tolist()], "pid": os.getpid(),
            "default_dtype": str(torch.get_default_dtype()),
            "anomaly": bool(torch.is_anomaly_enabled()),
            "matmul_precision": torch.get_float32_matmul_precision(),
            "cwd_files": sorted(os.listdir(os.getcwd()))}


# ---- files ------------------------------------------------------------------------------------

def write_scratch(loss_fn: Any = None) -> dict[str, Any]:
    with open("scratch.txt", "w") as fh:
        fh.write("fine")
    return {"cwd": os.getcwd(), "files": sorted(os.listdir("."))}


def fill_disk(loss_fn: Any = None, mb: int = 4096) -> dict[str, Any]:
    block = b"x" * (1 << 20)
    written = 0
    try:
        for i in range(mb // 64):
            with open(f"fill-{i}.bin", "wb") as fh:
                for _ in range(64):
                    fh.write(block)
                    written += 1
    except OSError as exc:
        return {"written_mb": written, "stopped": f"{type(exc).__name__}: {exc}"}
    return {"written_mb": written, "stopped": "never"}


def tamper_cache(loss_fn: Any = None, cache_dir: str = "") -> dict[str, Any]:
    """Overwrite, replace, add to and re-point the reference cache."""
    import torch

    tinylm = os.path.join(cache_dir, "tinylm")
    bundles = sorted(f for f in os.listdir(tinylm) if f.endswith(".pt")) if os.path.isdir(tinylm) else []
    report: dict[str, Any] = {"bundles": bundles}

    def rewrite() -> None:
        path = os.path.join(tinylm, bundles[0])
        bundle = torch.load(path, weights_only=True)
        for key in bundle["train"]:
            if key.startswith("ref_"):
                bundle["train"][key] = bundle["train"][key] + 5.0
        torch.save(bundle, path)

    def add_file() -> None:
        with open(os.path.join(cache_dir, "planted.txt"), "w") as fh:
            fh.write("x")

    def swap_dir() -> None:
        os.rename(tinylm, tinylm + ".old")
        os.symlink("/etc", tinylm)

    report["rewrite"] = _attempt(rewrite) if bundles else "no bundle"
    report["add_file"] = _attempt(add_file)
    report["swap_dir"] = _attempt(swap_dir)
    return report


def write_system(loss_fn: Any = None) -> dict[str, Any]:
    targets = ["/sys/fs/cgroup/cgroup.procs", "/sys/kernel/mm/transparent_hugepage/enabled",
               "/dev/shm/prefdisco-x", "/dev/prefdisco-x", "/tmp/prefdisco-x",
               "/proc/sys/kernel/ns_last_pid"]
    out = {}
    for path in targets:
        def write(path: str = path) -> None:
            with open(path, "w") as fh:
                fh.write("1")
        out[path] = _attempt(write)
    return out


def read_paths(loss_fn: Any = None, paths: list[str] | None = None) -> dict[str, Any]:
    def read(path: str) -> None:
        with open(path, "rb") as fh:
            fh.read(16)
    return {p: _attempt(lambda p=p: read(p)) for p in paths or []}


def scan_environ(loss_fn: Any = None, marker: str = "") -> dict[str, Any]:
    """Look for ``marker`` (a secret the parent holds) in every /proc/*/environ readable here."""
    found, readable = [], 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        readable += 1
        if marker.encode() in data:
            found.append(int(pid))
    return {"found_in": found, "readable": readable, "own_env_has_it": marker in str(os.environ)}


# ---- network and IPC ---------------------------------------------------------------------------

def connect(loss_fn: Any = None, tcp_port: int = 0, unix_path: str = "",
            abstract_name: str = "") -> dict[str, Any]:
    sock = _socket_module()

    def tcp() -> None:
        s = sock.socket(sock.AF_INET, sock.SOCK_STREAM)
        s.settimeout(2)
        s.connect(("127.0.0.1", tcp_port))

    def unix(address: Any) -> None:
        s = sock.socket(sock.AF_UNIX, sock.SOCK_STREAM)
        s.settimeout(2)
        s.connect(address)

    out = {}
    if tcp_port:
        out["tcp"] = _attempt(tcp)
    if unix_path:
        out["unix"] = _attempt(lambda: unix(unix_path))
    if abstract_name:
        out["abstract"] = _attempt(lambda: unix("\0" + abstract_name))
    return out


def sysv_ipc(loss_fn: Any = None, key: int = 0x5EED) -> dict[str, Any]:
    """Create a 0666 message queue and shared-memory segment under ``key`` and leave them."""
    msg = _libc.msgget(key, IPC_CREAT | 0o666)
    msg_err = ctypes.get_errno()
    shm = _libc.shmget(key, 4096, IPC_CREAT | 0o666)
    shm_err = ctypes.get_errno()
    return {"msgget": "ALLOWED" if msg >= 0 else f"blocked: {errno.errorcode.get(msg_err)}",
            "shmget": "ALLOWED" if shm >= 0 else f"blocked: {errno.errorcode.get(shm_err)}"}


# ---- forged replies ----------------------------------------------------------------------------

def _request_id() -> Any:
    frame = sys._getframe()
    while frame is not None:
        request = frame.f_locals.get("request")
        if isinstance(request, dict) and "id" in request:
            return request["id"]
        frame = frame.f_back
    return None


def forge_reply(loss_fn: Any = None, payload: str = "") -> dict[str, Any]:
    """Send ``payload`` (raw JSON text; ``"__ID__"`` becomes this request's id) as the reply on
    every pipe this process may write, then die before the real reply is sent."""
    text = payload.replace('"__ID__"', json.dumps(_request_id())).encode()
    framed = "discovery.sandbox.child" not in sys.modules  # older sandboxes frame every message
    data = struct.pack(">I", len(text)) + text if framed else text
    for fd in range(3, 256):
        try:
            st = os.fstat(fd)
            if not stat.S_ISFIFO(st.st_mode):
                continue
            import fcntl

            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                continue
            os.write(fd, data)
        except OSError:
            continue
    os._exit(0)
