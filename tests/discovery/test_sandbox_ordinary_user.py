"""The project as most people run it: a non-root user, a fresh clone in a 0700 home directory.

As root the test makes a throwaway user (and removes it); otherwise it uses the current user
with a private 0700 directory as HOME. In that clone, as that user, it runs ``scripts/setup``,
the sandbox's own tests (``scripts/test --fast tests/discovery/test_sandbox_*.py``) and a short
discovery campaign with the real sandbox; every step must succeed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = "/usr/bin/python3"
SHORT_CAMPAIGN = """
name: ordinary_user
seed: 0
baselines: [dpo, ipo, hinge]
generation_size: 4
pipeline_lag: 1
workers: 2
proposer: {kind: mutation}
cascade:
  screen_suite: suites/quickstart_screen.yaml
  fitness_suite: suites/quickstart_fitness.yaml
  heldout_suite: suites/quickstart_heldout.yaml
  heldout_top_k: 1
budget: {max_candidates: 4}
"""


class User:
    """Runs commands as an ordinary user whose home directory is mode 0700."""

    def __init__(self) -> None:
        self.name = None
        if os.geteuid() == 0:
            self.name = f"pdci{os.getpid() % 100000}"
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", self.name], check=True,
                           capture_output=True)
            self.home = Path(f"/home/{self.name}") if Path(f"/home/{self.name}").is_dir() else \
                Path(subprocess.run(["sh", "-c", f"getent passwd {self.name} | cut -d: -f6"],
                                    capture_output=True, text=True).stdout.strip())
        else:
            self.home = Path(tempfile.mkdtemp(prefix="prefdisco-home-"))
        os.chmod(self.home, 0o700)

    def run(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {"HOME": str(self.home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "PYTHON": DEBIAN_PYTHON, "USER": self.name or os.environ.get("USER", "")}
        argv = ["bash", "-c", command]
        if self.name:
            argv = ["runuser", "-u", self.name, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                    *argv]
            env = {}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.home), env=env or None)

    def remove(self) -> None:
        if self.name:
            for _ in range(10):
                if subprocess.run(["userdel", "-r", self.name], capture_output=True).returncode in (0, 6):
                    return
                time.sleep(1)
        else:
            shutil.rmtree(self.home, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_ordinary_user_in_a_0700_home_sets_up_tests_and_runs_a_campaign():
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        pytest.skip(f"no {DEBIAN_PYTHON} for an ordinary user")
    if os.geteuid() == 0 and not shutil.which("useradd"):
        pytest.skip("useradd is not available")
    user = User()
    timings: dict[str, float] = {}
    try:
        clone = user.home / "prefdisco"
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head], check=True)
        (clone / "configs" / "ordinary_user.yaml").write_text(SHORT_CAMPAIGN)
        if user.name:
            subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(clone)], check=True)

        steps = [
            ("setup", "cd prefdisco && scripts/setup", 1200),
            ("sandbox tests", "cd prefdisco && scripts/test --fast -q -p no:cacheprovider "
                              "tests/discovery/test_sandbox_pool.py tests/discovery/test_sandbox_escapes.py "
                              "tests/discovery/test_sandbox_validation.py tests/discovery/test_sandbox_check.py", 1200),
            ("campaign", "cd prefdisco && .venv/bin/prefdisco run configs/ordinary_user.yaml "
                         "--out runs/ordinary_user", 900),
        ]
        for name, command, timeout in steps:
            started = time.perf_counter()
            done = user.run(command, timeout)
            timings[name] = round(time.perf_counter() - started, 1)
            assert done.returncode == 0, f"{name} failed as an ordinary user:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        summary = done.stdout
        assert "fully evaluated" in summary and "DPO fitness" in summary, summary
        assert " 0 fully evaluated" not in summary, summary
    finally:
        print(f"ordinary-user timings (s): {timings}")
        user.remove()
