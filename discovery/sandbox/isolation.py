"""Which boundary this machine can give a zygote, and the command that starts one inside it.

Three modes, strongest first:

* ``bwrap``: bubblewrap (Debian package ``bubblewrap``) puts the zygote in new user, mount,
  PID, network, IPC, UTS and cgroup namespaces: ``/`` read-only, home-like directories, ``/run``
  and ``/tmp`` replaced by empty tmpfs, the project, venv and reference cache bound back
  read-only (by file descriptor, so a 0700 home is no obstacle), a size-capped tmpfs as the only
  writable place. As root it runs as an unprivileged uid. Children add Landlock and seccomp.
* ``landlock``: no usable namespaces (no bubblewrap, or user namespaces disabled, as in Docker's
  default profile): each child confines itself with Landlock (read the system and project
  trees, write its scratch dir only) and the same seccomp filter. Needs Linux >= 5.13.
* ``none``: only with the explicit opt-out for trusted code; a loud warning says so.

Anything else fails closed: ``SandboxUnavailable`` with one line naming the fix.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from discovery.errors import UserError
from discovery.sandbox.confine import landlock_abi, seccomp_available
from discovery.sandbox.limits import TRUSTED_CODE_ENV, SandboxLimits, resolve_cache_dir

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
SCRATCH = "/tmp/prefdisco-scratch"   # where the zygote's scratch tmpfs is, inside bubblewrap
SYSTEM_READ_PATHS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc",
                     "/proc", "/sys")
DEVICE_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
FIX = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
       "bubblewrap) with unprivileged user namespaces allowed, or use Linux >= 5.13 with Landlock "
       f"and libseccomp2; to run only code you trust unisolated, pass --trusted-code-without-sandbox "
       f"(or set {TRUSTED_CODE_ENV}=1)")


class SandboxUnavailable(UserError, RuntimeError):
    """No sandbox can be had here (not the candidate's fault); the message names the fix."""


@dataclass
class Isolation:
    """How to start one zygote, and what its children may read."""

    mode: str                                   # "bwrap" | "landlock" | "none"
    scratch: str | None                         # bwrap: the scratch tmpfs; else one temp dir per zygote
    read_paths: list[str]
    device_files: list[str]
    landlock: bool
    seccomp: bool
    cache_dir: str
    notes: list[str] = field(default_factory=list)
    bind_paths: list[str] = field(default_factory=list)  # bwrap: bound back read-only
    masks: list[str] = field(default_factory=list)       # bwrap: replaced by empty tmpfs
    uid: int | None = None                      # bwrap as root: the zygote drops to this uid

    def command(self, limits: SandboxLimits, argv: list[str]) -> tuple[list[str], list[int]]:
        """(full argv, fds to pass) for a zygote running ``argv``; the caller closes the fds."""
        if self.mode != "bwrap":
            return argv, []
        return _bwrap_command(self, limits, argv)

    def zygote_config(self, limits: SandboxLimits, scratch: str) -> dict[str, object]:
        return {"limits": limits.to_dict(), "mode": self.mode, "scratch": scratch, "uid": self.uid,
                "read_paths": self.read_paths, "device_files": self.device_files,
                "landlock": self.landlock, "seccomp": self.seccomp}


def _needed_paths(cache_dir: str, limits: SandboxLimits) -> list[str]:
    """Trees a zygote must read: interpreter, venv, project, reference cache."""
    paths = [sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), PROJECT_ROOT, cache_dir,
             *limits.readonly_dirs]
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})
    return [p for p in real if not any(p != q and p.startswith(q + os.sep) for q in real)]


def _untraversable_ancestor(path: str) -> str | None:
    """Topmost ancestor of ``path`` that other users cannot enter (e.g. /root, mode 0700)."""
    parts = path.split(os.sep)[1:]
    for i in range(1, len(parts)):
        ancestor = os.sep + os.sep.join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _masks(limits: SandboxLimits, needed: list[str], as_root: bool) -> list[str]:
    masks = {os.path.realpath(d) for d in limits.hidden_dirs
             if os.path.isdir(d) and not os.path.islink(d)}
    masks.add("/tmp")
    if as_root:  # the unprivileged uid could not enter them: mask and bind the needed part back
        masks |= {a for a in map(_untraversable_ancestor, needed) if a}
    masks = {m for m in masks if m not in ("/", "/usr", "/proc", "/dev")}
    return sorted(m for m in masks if not any(m != o and m.startswith(o + os.sep) for o in masks))


def _namespace_args(as_root: bool) -> list[str]:
    """Root: privileged bubblewrap (no user namespace; the zygote drops to ``sandbox_uid`` with
    the two capabilities it keeps for that). Others: an unprivileged user namespace that can
    create no further ones."""
    if as_root:
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID",
                "--cap-add", "CAP_SETGID"]
    return ["--unshare-all", "--unshare-user", "--disable-userns"]


def _bwrap_command(iso: Isolation, limits: SandboxLimits, argv: list[str]) -> tuple[list[str], list[int]]:
    cmd = [shutil.which(limits.bwrap) or limits.bwrap, *_namespace_args(iso.uid is not None),
           "--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev",
           "--proc", "/proc"]
    if limits.allow_gpu:
        for name in sorted(os.listdir("/dev")):
            if name.startswith("nvidia"):
                cmd += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    cmd += ["--remount-ro", "/dev"]
    for mask in iso.masks:
        cmd += ["--size", str(1 << 20), "--tmpfs", mask] if mask == "/tmp" else ["--tmpfs", mask]
    perms = "1777" if iso.uid is not None else "0700"  # root: made by root, used by the uid
    cmd += ["--perms", perms, "--size", str(int(limits.private_dir_mb) << 20), "--tmpfs", SCRATCH]
    made: set[str] = set(iso.masks) | {"/", SCRATCH}
    for path in iso.bind_paths:
        # Mount points inside a mask: traversable (privileged bubblewrap would make them 0700).
        parts = path.split(os.sep)[1:]
        for i in range(1, len(parts)):
            parent = os.sep + os.sep.join(parts[:i])
            if parent not in made and any(parent.startswith(m + os.sep) for m in iso.masks):
                cmd += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        cmd += ["--ro-bind", path, path]
    for mask in iso.masks:  # the masks hold mount points only: nothing to write there
        cmd += ["--remount-ro", mask]
    cmd += ["--chdir", SCRATCH, "--"]
    return cmd + argv, []


def _bwrap_problem(limits: SandboxLimits, uid: int | None) -> str:
    """'' if bubblewrap can build a sandbox here (as ``uid``), else why not (one phrase)."""
    binary = shutil.which(limits.bwrap)
    if binary is None:
        return "bubblewrap is not installed"
    try:
        done = subprocess.run(
            [binary, *_namespace_args(uid is not None), "--die-with-parent", "--ro-bind", "/", "/",
             "--proc", "/proc", "--dev", "/dev", "--", "true"],
            capture_output=True, text=True, timeout=30, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap failed to run ({type(exc).__name__})"
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0][:160]
        return f"bubblewrap cannot create namespaces here ({first})"
    return ""


@functools.lru_cache(maxsize=8)
def _probe_backends(bwrap: str, uid: int | None, want: str) -> tuple[str, str, int, str]:
    """(bwrap problem, seccomp problem, landlock ABI, '') - cached: the kernel does not change."""
    limits = SandboxLimits(bwrap=bwrap)
    bwrap_problem = _bwrap_problem(limits, uid) if want in ("auto", "bwrap") else "not requested"
    return bwrap_problem, seccomp_available(), landlock_abi(), ""


def resolve(limits: SandboxLimits) -> Isolation:
    """The strongest boundary available, or SandboxUnavailable (or ``none`` if opted out)."""
    if limits.isolation not in ("auto", "bwrap", "landlock"):
        raise UserError(f"sandbox isolation must be 'auto', 'bwrap' or 'landlock', "
                        f"not {limits.isolation!r}")
    as_root = os.geteuid() == 0
    uid = limits.sandbox_uid if as_root else None
    cache_dir = resolve_cache_dir(limits)
    os.makedirs(cache_dir, exist_ok=True)
    if as_root and os.stat(cache_dir).st_mode & 0o005 != 0o005:  # written by us, read by the uid
        os.chmod(cache_dir, os.stat(cache_dir).st_mode | 0o005)
    needed = _needed_paths(cache_dir, limits)
    bwrap_problem, seccomp_problem, abi, _ = _probe_backends(limits.bwrap, uid, limits.isolation)
    devices = [d for d in DEVICE_FILES if os.path.exists(d)]
    if limits.allow_gpu and os.path.isdir("/dev"):
        devices += [f"/dev/{n}" for n in sorted(os.listdir("/dev")) if n.startswith("nvidia")]
    if limits.isolation in ("auto", "bwrap") and not bwrap_problem and not seccomp_problem:
        masks = _masks(limits, needed, as_root)
        binds = [p for p in needed if any(p == m or p.startswith(m + os.sep) for m in masks)]
        if as_root:
            unreadable = [p for p in needed if not (os.stat(p).st_mode & 0o005 == 0o005)]
            if unreadable:
                raise SandboxUnavailable(
                    f"sandbox unavailable: the unprivileged sandbox user cannot read "
                    f"{unreadable[0]} (mode {os.stat(unreadable[0]).st_mode & 0o777:o}); run "
                    f"`chmod o+rX {unreadable[0]}` or run prefdisco as a regular user")
        return Isolation("bwrap", SCRATCH, ["/"], devices, abi > 0, True, cache_dir,
                         bind_paths=binds, masks=masks, uid=uid)
    reasons = [bwrap_problem] if limits.isolation != "landlock" else []
    if seccomp_problem:
        reasons.append(seccomp_problem)
    if not abi:
        reasons.append("Landlock is not available (Linux < 5.13 or disabled)")
    if limits.isolation in ("auto", "landlock") and abi and not seccomp_problem:
        read = sorted({*SYSTEM_READ_PATHS, *needed})
        return Isolation("landlock", None, read, devices, True, True, cache_dir,
                         notes=[f"no namespaces ({bwrap_problem}); children are confined by "
                                "Landlock and seccomp"] if bwrap_problem != "not requested" else [])
    if limits.trusted_code_without_sandbox:
        return Isolation("none", None, [], devices, False, False, cache_dir, notes=[
            "RUNNING CANDIDATE CODE WITHOUT ISOLATION (--trusted-code-without-sandbox): "
            + "; ".join(reasons)])
    raise SandboxUnavailable(f"sandbox unavailable: cannot isolate candidate code here "
                             f"({'; '.join(reasons)}). Fix: {FIX}.")
