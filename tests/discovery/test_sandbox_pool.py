"""The runtime boundary: hostile code run with static validation bypassed is still contained.

One warm pool (module scope) serves every test, which also proves it keeps serving after each
hostile candidate. The parent sets OPENAI_API_KEY before the pool starts; workers must not see it.
``validate=False`` skips the static allow-list check (in the parent and in the child), so what
is tested here is the runtime namespace (facades, builtins, importer) plus the process boundary.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from candidate_losses import get_loss
from discovery.sandbox import SandboxLimits, SandboxPool
from discovery.sandbox.limits import SECRET_LIKE

HOSTILE_DIR = Path(__file__).parent / "hostile"
HOSTILE = sorted(HOSTILE_DIR.glob("*.py"))
SLOW_CASES = {"infinite_loop"}  # costs a wall-clock timeout
ESCAPES = "tests.discovery.hostile.jobs.escapes"
DPO = get_loss("dpo").source
IPO_INLINE = '''
def ipo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
        reference_rejected_logps, beta):
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return (h - 1 / (2 * beta)) ** 2
'''
DPO_RENAMED = '''
def some_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
              reference_rejected_logps, beta):
    chosen_ratio = policy_chosen_logps - reference_chosen_logps
    rejected_ratio = policy_rejected_logps - reference_rejected_logps
    return -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
'''
DPO_REORDERED = '''
import torch.nn.functional as functional

def dpo_again(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
              reference_rejected_logps, beta):
    margin = (reference_rejected_logps - policy_rejected_logps) + (policy_chosen_logps - reference_chosen_logps)
    return -functional.logsigmoid(margin * beta)
'''
DPO_SOFTPLUS = '''
def dpo_softplus(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                 reference_rejected_logps, beta):
    z = beta * ((policy_chosen_logps + reference_rejected_logps) - (reference_chosen_logps + policy_rejected_logps))
    return F.softplus(-z)
'''


def runtime_class(path: Path) -> str:
    return re.search(r"^# runtime: (\w+)", path.read_text(), re.M).group(1)


@pytest.fixture(scope="module")
def pool():
    previous = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = "sk-parent-secret-must-not-leak"
    try:
        with SandboxPool(size=2, limits=SandboxLimits(wall_timeout_s=4.0, private_dir_mb=64)) as warm:
            yield warm
    finally:
        if previous is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = previous


@pytest.fixture(scope="module")
def dpo_fingerprint(pool):
    result = pool.probe(DPO)
    assert result.ok, result.message
    return result.fingerprint


def _case_params():
    for path in HOSTILE:
        marks = [pytest.mark.slow] if path.stem in SLOW_CASES else []
        yield pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", list(_case_params()))
def test_hostile_candidate_contained_at_runtime(pool, dpo_fingerprint, path):
    result = pool.probe(path.read_text(), validate=False)
    got = "ok" if result.ok else result.failure_class
    assert got == runtime_class(path), result.message
    assert result.message and len(result.message) <= 600
    after = pool.probe(DPO)  # the pool keeps serving, and serves correctly
    assert after.ok and after.fingerprint == dpo_fingerprint


def test_static_validation_rejects_before_any_worker_runs(pool):
    result = pool.probe((HOSTILE_DIR / "os_system.py").read_text())
    assert not result.ok and result.failure_class == "unsafe" and "os" in result.message
    assert result.wall_time_s == 0.0


def test_escape_attempts_leave_no_trace():
    assert not Path("/tmp/prefdisco-sandbox-escape.txt").exists()
    assert not Path("/work/prefdisco-sandbox-escape.txt").exists()
    assert not Path("/tmp/prefdisco-pwned").exists()


def test_monkeypatching_torch_does_not_leak_into_later_candidates(pool, dpo_fingerprint):
    patched = pool.probe((HOSTILE_DIR / "monkeypatch_torch.py").read_text(), validate=False)
    assert not patched.ok and patched.failure_class == "unsafe" and "read-only" in patched.message
    for _ in range(4):  # whichever worker takes them, DPO still behaves as DPO
        assert pool.probe(DPO).fingerprint == dpo_fingerprint


def test_worker_sees_no_secrets_and_no_privileges(pool):
    assert os.environ["OPENAI_API_KEY"]  # set in the parent...
    result = pool.run_job(None, "discovery.sandbox.jobs:environment_report", {})
    assert result.ok, result.message
    env = result.value["env"]
    assert "OPENAI_API_KEY" not in env  # ...and invisible in the worker
    assert not [k for k in env if SECRET_LIKE.search(k) and k != "TOKENIZERS_PARALLELISM"]
    assert env["HOME"] == result.value["cwd"] and "/job-" in env["HOME"]
    assert int(result.value["status"]["CapEff"], 16) == 0
    assert result.value["status"]["NoNewPrivs"] == "1"
    assert result.value["rlimits"]["RLIMIT_AS"][0] == 4096 * 1024 * 1024
    if os.geteuid() == 0:
        assert result.value["uid"] != 0 and result.value["euid"] != 0
    report = pool.isolation_report()
    assert report and {w["mode"] for w in report} <= {"bwrap", "landlock"}
    assert all(w["seccomp"] for w in report)
    if report[0]["mode"] == "bwrap":
        assert result.value["net_interfaces"] == ["lo"]
        # home directories are masked: only the way down to the project (or cache) shows
        from discovery.sandbox.isolation import PROJECT_ROOT

        allowed = {Path(p).parts[2] for p in (PROJECT_ROOT, pool.isolation.cache_dir)
                   if p.startswith("/home/") and len(Path(p).parts) > 2}
        assert set(result.value["home_listing"] or []) <= allowed


def test_fingerprint_ignores_spelling_but_not_behaviour(pool, dpo_fingerprint):
    for code in (DPO_RENAMED, DPO_REORDERED, DPO_SOFTPLUS):
        result = pool.probe(code)
        assert result.ok, result.message
        assert result.fingerprint == dpo_fingerprint
    try:
        ipo_source = get_loss("ipo").source
    except KeyError:
        ipo_source = IPO_INLINE
    ipo = pool.probe(ipo_source)
    assert ipo.ok and ipo.fingerprint != dpo_fingerprint
    assert pool.probe(IPO_INLINE).fingerprint == ipo.fingerprint  # same maths, other spelling
    scaled = pool.probe(DPO_RENAMED.replace("-F.logsigmoid", "-1.01 * F.logsigmoid"))
    assert scaled.fingerprint != dpo_fingerprint


def test_shape_curves_are_dpo_shaped(pool):
    result = pool.probe(DPO)
    shape = result.shape
    assert len(shape["z"]) == len(shape["loss"]) == len(shape["dloss_dz"]) == 81
    mid = shape["z"].index(0.0)
    assert shape["loss"][mid] == pytest.approx(0.693147, rel=1e-4)  # -log sigmoid(0)
    assert shape["dloss_dz"][mid] == pytest.approx(-0.5, rel=1e-4)
    assert shape["loss"][0] > shape["loss"][-1]  # decreasing in z
    assert len(result.fingerprint_vector) > 100


def test_jobs_run_candidates_and_baselines(pool):
    candidate = pool.run_job(DPO_RENAMED, "discovery.sandbox.jobs:call_loss", {"batch": 3})
    baseline = pool.run_job(None, "discovery.sandbox.jobs:call_loss", {"batch": 3, "loss_name": "dpo"})
    assert candidate.ok and baseline.ok
    assert candidate.value["loss"] == pytest.approx(baseline.value["loss"])
    rejected = pool.run_job((HOSTILE_DIR / "os_system.py").read_text(),
                            "discovery.sandbox.jobs:call_loss", {})
    assert not rejected.ok and rejected.failure_class == "unsafe"


def test_job_output_is_captured_and_truncated(pool):
    result = pool.run_job((HOSTILE_DIR / "print_100mb.py").read_text(),
                          "discovery.sandbox.jobs:call_loss", {"batch": 2})
    assert result.ok
    assert "output truncated" in result.stdout_tail
    assert len(result.stdout_tail) <= pool.limits.max_output_bytes + 200


def test_job_timeout_is_per_call(pool):
    result = pool.run_job((HOSTILE_DIR / "infinite_loop.py").read_text(),
                          "discovery.sandbox.jobs:call_loss", {}, timeout_s=1.0)
    assert not result.ok and result.failure_class == "timeout"
    assert result.wall_time_s < 5.0


def test_concurrent_submits_survive_a_crashing_worker(pool, dpo_fingerprint):
    results: dict[int, object] = {}

    def submit(i: int) -> None:
        if i == 3:  # a child that dies outright (trusted job: loss code cannot reach os._exit)
            results[i] = pool.submit_job(None, f"{ESCAPES}:hard_exit", {}).result(timeout=120)
        else:
            results[i] = pool.submit_probe(DPO_RENAMED).result(timeout=120)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[3].failure_class == "crash"
    good = [r for i, r in results.items() if i != 3]
    assert len(good) == 11 and all(r.ok and r.fingerprint == dpo_fingerprint for r in good)


@pytest.mark.slow
def test_cpu_time_limit_kills_busy_loops():
    limits = SandboxLimits(wall_timeout_s=30.0, cpu_time_s=1)
    with SandboxPool(size=1, limits=limits) as small:
        result = small.probe((HOSTILE_DIR / "infinite_loop.py").read_text())
        assert not result.ok and result.failure_class == "timeout"
        assert result.wall_time_s < 25  # CPU limit (1 s + slack), not the 30 s wall clock
        assert small.probe(DPO).ok


@pytest.mark.slow
def test_evaluation_job_runs_inside_the_sandbox(tmp_path):
    """The real evaluator job, with a read-only cache dir the parent fills, gives the baseline's score."""
    cache = tmp_path / "cache"
    limits = SandboxLimits(wall_timeout_s=120, cache_dir=str(cache))
    with SandboxPool(size=1, limits=limits) as jobs:
        candidate = jobs.run_job(DPO_RENAMED, "evaluators.jobs:evaluate_job",
                                 {"suite": "screen", "seeds": 1}, timeout_s=120)
        baseline = jobs.run_job(None, "evaluators.jobs:evaluate_job",
                                {"suite": "screen", "seeds": 1, "loss_name": "dpo"}, timeout_s=120)
    assert candidate.ok and baseline.ok, (candidate.message, baseline.message)
    assert candidate.value["fitness"] == pytest.approx(baseline.value["fitness"])


def test_job_failures_outside_the_candidate_are_not_blamed_on_it(pool):
    # The trusted job (not the candidate) hits the read-only filesystem: infrastructure, not 'unsafe'.
    result = pool.run_job(None, "discovery.sandbox.jobs:write_file", {"path": "/etc/prefdisco-x"})
    assert not result.ok and result.failure_class == "infrastructure"
    assert "outside the candidate" in result.message
    inside = pool.run_job((HOSTILE_DIR / "write_outside.py").read_text(),
                          "discovery.sandbox.jobs:call_loss", {}, validate=False)
    assert inside.failure_class == "unsafe"


def test_closing_the_pool_does_not_start_queued_work():
    """Ctrl-C closes the pool: work still queued fails at once as infrastructure instead of
    starting (or being retried) on fresh workers while the campaign is shutting down."""
    with SandboxPool(size=1, limits=SandboxLimits(wall_timeout_s=30.0)) as small:
        running = small.submit_job(None, f"{ESCAPES}:sleep", {"seconds": 2.0}, timeout_s=30)
        queued = small.submit_probe(DPO)
        while not running.running():  # the slot has taken the sleep job; the probe waits behind it
            threading.Event().wait(0.05)
        small.close()
        assert running.result().ok
        late = queued.result()
        assert not late.ok and late.failure_class == "infrastructure"
        assert "closed before this request ran" in late.message
