"""The sandbox: untrusted candidate loss code is validated here and only ever run elsewhere.

>>> from discovery.sandbox import SandboxPool, validate_source
>>> validate_source(code)                 # allow-list check, in-process, never executes the code
>>> with SandboxPool(size=2) as pool:     # warm zygotes; one fresh, confined child per request
...     pool.probe(code)                  # -> ProbeResult (verdict, fingerprint, shape curves)
...     pool.run_job(code, "evaluators.jobs:evaluate_job", {"suite": "screen"}, timeout_s=600)

Two boundaries, each tested on its own:

* Language: candidate code sees only an allow-list (``namespace.py``): ``torch``, ``F`` and
  ``math`` facades with tensor operations, tensor methods, a few builtins; no module objects,
  dunders, ``match``, classes or attribute assignment. ``validation.py`` checks the same tables
  statically, in the parent and again in the child right before ``exec``.
* Operating system: each request runs in a child forked from a zygote that imported torch and
  the evaluators once (``zygote.py``), so nothing one candidate does reaches the next. The
  zygote lives in bubblewrap namespaces (user, mount, PID, network, IPC; read-only filesystem,
  homes and /run masked, a size-capped tmpfs as the only writable place; an unprivileged uid
  when started as root). Each child adds rlimits, Landlock and a seccomp filter (no sockets,
  processes, IPC, ptrace; ``confine.py``). Without namespaces, Landlock + seccomp hold alone.
  Without either, ``SandboxPool`` refuses to start (``SandboxUnavailable`` names the fix) unless
  the user opts out for trusted code (``--trusted-code-without-sandbox``).

The parent trusts no reply: bounded size and depth, finite numbers of sane magnitude, a schema
per result type; every failure completes its future with a classified result. Reference caches
are built by the parent (``prepare_in_parent`` of a job), bound read-only into the sandbox and
verified by content hash where they are loaded.
"""

from __future__ import annotations

from discovery.sandbox.isolation import SandboxUnavailable
from discovery.sandbox.limits import SandboxLimits
from discovery.sandbox.pool import SandboxPool
from discovery.sandbox.results import FailureClass, JobResult, ProbeResult
from discovery.sandbox.validation import ValidationError, validate_source

__all__ = [
    "FailureClass",
    "JobResult",
    "ProbeResult",
    "SandboxLimits",
    "SandboxPool",
    "SandboxUnavailable",
    "ValidationError",
    "validate_source",
]
