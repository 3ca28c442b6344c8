"""The sandbox: untrusted candidate loss code is validated here and only ever run elsewhere.

>>> from discovery.sandbox import SandboxPool, validate_source
>>> validate_source(code)                 # AST checks, in-process, never executes the code
>>> with SandboxPool(size=2) as pool:     # warm, confined worker processes
...     pool.probe(code)                  # -> ProbeResult (verdict, fingerprint, shape curves)
...     pool.run_job(code, "evaluators.jobs:evaluate_job", {"suite": "screen"}, timeout_s=600)

What a worker gets (see ``confine.py``; the parent logs every step the kernel refused):
fresh interpreter (``python -I``) with an allowlisted environment (no keys/tokens); new
network namespace (only a down ``lo``); private mount namespace with ``/`` read-only, home
directories masked, a size-capped tmpfs as cwd/HOME/TMPDIR and only ``writable_dirs`` (the
evaluators' cache) writable; a fresh uid per worker (root -> UID_BASE + pid), no capabilities,
no_new_privs; RLIMIT_AS/CPU/FSIZE/NOFILE/CORE and RLIMIT_NPROC pinned to its current thread
count (no fork, no new threads); fork/exec/spawn/socket tripwires in Python; a wall-clock
deadline enforced by the parent, which kills the process group and every process of the uid.

Not covered: the verdict is computed in the same interpreter as the candidate, so code that
got past static validation could forge it (host safety does not depend on that, integrity
does); world-readable files outside masked dirs stay readable; the shared cache dir is
writable by every worker; no seccomp filter.
"""

from __future__ import annotations

from discovery.sandbox.limits import SandboxLimits
from discovery.sandbox.pool import SandboxPool, SandboxUnavailable
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
