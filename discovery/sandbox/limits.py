"""Resource limits of one sandbox pool, and the stripped environment its processes start with."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluators.paths import default_cache_dir

# Environment variables a sandbox process may inherit from the parent (values copied if present).
ENV_PASSTHROUGH: tuple[str, ...] = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")

# Fixed values every sandbox process gets: one thread per library (determinism, and no surprise
# threads), offline Hugging Face, no bytecode writes.
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
# The opt-out for code you trust, by environment (the CLI flag --trusted-code-without-sandbox
# sets it). Its name says what it does; nothing else turns isolation off.
TRUSTED_CODE_ENV = "PREFDISCO_TRUSTED_CODE_WITHOUT_SANDBOX"

# Modules a zygote imports once, so that no child pays for them (trusted evaluator code).
DEFAULT_WARM_IMPORTS: tuple[str, ...] = (
    "evaluators.jobs", "evaluators.api", "evaluators.metrics", "evaluators.bandit",
    "evaluators.tinylm", "preference_data.pluralistic", "discovery.sandbox.jobs",
)


def _trusted_default() -> bool:
    return os.environ.get(TRUSTED_CODE_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass
class SandboxLimits:
    """Every knob of the boundary, with defaults that fit probes on a 2-core CPU box.

    Jobs (training/evaluation) need more: build the pool with larger ``address_space_mb`` and
    pass ``timeout_s`` per call to ``run_job``.
    """

    wall_timeout_s: float = 10.0          # per request; the child is killed after it
    cpu_time_s: int = 60                  # RLIMIT_CPU of a child (SIGXCPU ends it)
    address_space_mb: int = 4096          # RLIMIT_AS of a child; torch alone reserves ~0.7 GB
    max_output_bytes: int = 64_000        # printed output kept per request
    probe_time_budget_s: float = 2.0      # a probe that finishes but slower than this is 'timeout'
    max_file_mb: int = 256                # RLIMIT_FSIZE: biggest file a child may write
    private_dir_mb: int = 256             # disk quota of a child's private scratch dir
    max_open_files: int = 256             # RLIMIT_NOFILE
    max_requests_per_worker: int = 2000   # a zygote is replaced after this many children
    isolation: str = "auto"               # "auto" | "bwrap" | "landlock": which boundary to use
    trusted_code_without_sandbox: bool = field(default_factory=_trusted_default)
    bwrap: str = "bwrap"                  # the bubblewrap binary (name on PATH or a path)
    sandbox_uid: int = 200_000            # root only: the unprivileged uid sandboxes run as
    hidden_dirs: tuple[str, ...] = ("/home", "/root", "/srv", "/media", "/mnt", "/run",
                                    "/var/tmp", "/var/run")  # masked by empty tmpfs
    cache_dir: str | None = None          # reference cache, read-only inside (None: default)
    readonly_dirs: tuple[str, ...] = ()   # more directories children may read
    allow_gpu: bool = False               # expose /dev/nvidia* to children
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. {"CUDA_VISIBLE_DEVICES": "0"}
    warm_imports: tuple[str, ...] = DEFAULT_WARM_IMPORTS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("hidden_dirs", "readonly_dirs", "warm_imports"):
            data[key] = list(getattr(self, key))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SandboxLimits":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("hidden_dirs", "readonly_dirs", "warm_imports"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def resolve_cache_dir(limits: SandboxLimits) -> str:
    return os.path.abspath(limits.cache_dir or limits.extra_env.get("PREFDISCO_CACHE")
                           or str(default_cache_dir()))


def worker_environment(limits: SandboxLimits, home: str) -> dict[str, str]:
    """The whole environment of a sandbox process: an allowlist, never the parent's.

    ``extra_env`` entries whose *names* look like secrets are refused, so a config typo cannot
    hand an API key to candidate code.
    """
    env = {k: os.environ[k] for k in ENV_PASSTHROUGH if k in os.environ}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(ENV_FIXED)
    env.update({"HOME": home, "TMPDIR": home, "PREFDISCO_CACHE": resolve_cache_dir(limits)})
    for key, value in limits.extra_env.items():
        if SECRET_LIKE.search(key):
            raise ValueError(f"refusing to pass secret-looking variable {key!r} to a sandbox worker")
        env[key] = str(value)
    return env
