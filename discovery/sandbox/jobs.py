"""Trusted job functions for ``SandboxPool.run_job`` that describe or exercise the sandbox itself.

They run inside a worker like any job (``job(loss_fn, **kwargs) -> dict``); tests and
``prefdisco check`` use them to show what candidate code would see from in there.
"""

from __future__ import annotations

import os
import resource
from typing import Any, Callable


def environment_report(loss_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Environment variable names, identity, limits and capabilities seen inside the worker."""
    status = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "CapEff", "CapPrm", "NoNewPrivs", "Threads"):
                status[key] = value.strip()
    limits = {name: resource.getrlimit(getattr(resource, name))
              for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE")}
    try:  # /proc/self/net is per network namespace (/sys/class/net is not remounted)
        with open("/proc/self/net/dev") as fh:
            interfaces = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
    except OSError:
        interfaces = []
    return {"env": dict(os.environ), "cwd": os.getcwd(), "uid": os.getuid(), "euid": os.geteuid(),
            "status": status, "rlimits": limits, "net_interfaces": interfaces,
            "home_listing": sorted(os.listdir("/home")) if os.path.isdir("/home") else None,
            "has_loss": loss_fn is not None}


def call_loss(loss_fn: Callable[..., Any] | None, *, batch: int = 4, beta: float = 0.1,
              loss_name: str | None = None) -> dict[str, Any]:
    """Call the candidate (or registered baseline ``loss_name``) once on probe inputs."""
    from candidate_losses import get_loss
    from discovery.sandbox.probe import probe_inputs

    fn = loss_fn if loss_fn is not None else get_loss(str(loss_name)).fn
    out = fn(*probe_inputs(batch, seed=0), beta)
    return {"loss": [float(v) for v in out.detach().tolist()]}


def write_file(loss_fn: Callable[..., Any] | None, *, path: str) -> dict[str, Any]:
    """Write ``path`` from trusted code: shows what the sandboxed filesystem allows."""
    with open(path, "w") as fh:
        fh.write("written by a trusted sandbox job\n")
    return {"written": path}


def noop(loss_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Nothing at all: the round trip of a job is the sandbox's own overhead (benchmarks)."""
    return {}
