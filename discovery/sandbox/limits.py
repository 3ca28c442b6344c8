"""Resource limits of one sandbox pool, and the stripped environment its workers start with."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Environment variables a worker may inherit from the parent (values copied if present).
ENV_PASSTHROUGH: tuple[str, ...] = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")

# Fixed values every worker gets: one thread per library (determinism, and no surprise threads
# under RLIMIT_NPROC), offline Hugging Face, no bytecode writes.
ENV_FIXED: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONUNBUFFERED": "1",
}

SECRET_LIKE = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.I)


@dataclass
class SandboxLimits:
    """Every knob of the boundary, with defaults that fit probes on a 2-core CPU box.

    Jobs (training/evaluation) need more: build the pool with larger ``address_space_mb`` and
    pass ``timeout_s`` per call to ``run_job``.
    """

    wall_timeout_s: float = 10.0          # per request; the worker is killed and replaced after it
    cpu_time_s: int = 60                  # RLIMIT_CPU soft limit per request (SIGXCPU kills)
    address_space_mb: int = 4096          # RLIMIT_AS; torch alone reserves ~0.7 GB virtual
    max_output_bytes: int = 64_000        # stdout/stderr tail kept per request
    probe_time_budget_s: float = 2.0      # a probe that finishes but slower than this is 'timeout'
    max_file_mb: int = 256                # RLIMIT_FSIZE: biggest file a worker may write
    private_dir_mb: int = 512             # size of the worker's private tmpfs working dir
    max_open_files: int = 256             # RLIMIT_NOFILE
    max_new_threads: int = 0              # RLIMIT_NPROC headroom above the warm worker's threads
    worker_cpu_budget_s: int = 3600       # hard RLIMIT_CPU; the worker is recycled before it
    max_requests_per_worker: int = 500    # recycle a worker after this many requests
    isolate_network: bool = True          # new network namespace (no interfaces but a down lo)
    isolate_filesystem: bool = True       # read-only view of / except the private dir
    drop_privileges: bool = True          # root -> a fresh unprivileged uid per worker
    writable_dirs: tuple[str, ...] = ()   # extra directories the worker may write (e.g. caches)
    share_cache: bool = True              # make the evaluators' cache dir writable (see below)
    hidden_dirs: tuple[str, ...] = ("/home", "/root", "/srv", "/media")  # masked by empty tmpfs
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. {"PREFDISCO_CACHE": dir}
    warm_imports: tuple[str, ...] = ()    # modules imported before confinement (e.g. evaluators)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["writable_dirs"] = list(self.writable_dirs)
        data["warm_imports"] = list(self.warm_imports)
        data["hidden_dirs"] = list(self.hidden_dirs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SandboxLimits":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["writable_dirs"] = tuple(known.get("writable_dirs", ()))
        known["warm_imports"] = tuple(known.get("warm_imports", ()))
        known["hidden_dirs"] = tuple(known.get("hidden_dirs", ()))
        return cls(**known)


def default_cache_dir() -> str:
    """The evaluators' reference-model cache, resolved in the parent (workers get no env)."""
    return os.environ.get("PREFDISCO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                               "prefdisco")


def resolve_limits(limits: SandboxLimits) -> SandboxLimits:
    """With ``share_cache``, add the cache dir to ``writable_dirs`` and PREFDISCO_CACHE to the env.

    Jobs build reference-model caches there; without it every evaluation would fail on a
    read-only filesystem. An explicit PREFDISCO_CACHE in ``extra_env`` wins.
    """
    if not limits.share_cache:
        return limits
    cache = limits.extra_env.get("PREFDISCO_CACHE") or default_cache_dir()
    cache = os.path.abspath(cache)
    writable = tuple(dict.fromkeys([*limits.writable_dirs, cache]))
    return replace(limits, writable_dirs=writable,
                   extra_env={**limits.extra_env, "PREFDISCO_CACHE": cache})


def worker_environment(limits: SandboxLimits, home: str) -> dict[str, str]:
    """The whole environment of a worker: an allowlist, never the parent's environment.

    ``extra_env`` entries whose *names* look like secrets are refused, so a config typo cannot
    hand an API key to candidate code.
    """
    env = {k: os.environ[k] for k in ENV_PASSTHROUGH if k in os.environ}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(ENV_FIXED)
    env.update({"HOME": home, "TMPDIR": home})
    for key, value in limits.extra_env.items():
        if SECRET_LIKE.search(key):
            raise ValueError(f"refusing to pass secret-looking variable {key!r} to a sandbox worker")
        env[key] = str(value)
    return env
