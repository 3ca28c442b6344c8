"""Regression tests for every escape class found by the sandbox security review.

1. validator bypasses giving arbitrary Python   5. the shared reference cache
2. forged results (verdicts, suite scores)       6. isolation gaps (IPC, sockets, /sys, env, fail-open)
3. cross-candidate poisoning in a warm process   7. false rejects of ordinary LLM-written code
4. a parent that trusts its workers' replies

Attacks that need arbitrary code inside the sandbox are written as trusted jobs
(``hostile/jobs/escapes.py``): they stand for a candidate that already got past the language
boundary, so the operating-system boundary is tested on its own. One single-worker pool serves
the module (a single worker is where cross-candidate state would leak).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from candidate_losses import get_loss, list_losses
from discovery.sandbox import SandboxLimits, SandboxPool, validate_source

HOSTILE = Path(__file__).parent / "hostile"
ESCAPES = "tests.discovery.hostile.jobs.escapes"
EVALUATE = "evaluators.jobs:evaluate_job"
ROOT = Path(__file__).resolve().parents[2]
DPO = get_loss("dpo").source
SECRET = "sk-parent-secret-e5c4pe-te5t"
IPC_KEY = 0x5EED51


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("escapes-cache")


@pytest.fixture(scope="module")
def pool(cache):
    previous = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = SECRET
    try:
        with SandboxPool(size=1, limits=SandboxLimits(wall_timeout_s=20.0, cache_dir=str(cache))) as p:
            yield p
    finally:
        if previous is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = previous


def job(pool, name, timeout_s=60.0, **kwargs):
    future = pool.submit_job(None, f"{ESCAPES}:{name}", kwargs, timeout_s=timeout_s)
    return future.result(timeout=timeout_s + 120)  # a hung slot fails the test, never the run


def blocked(report: dict) -> None:
    allowed = {k: v for k, v in report.items() if not str(v).startswith("blocked")}
    assert not allowed, allowed


# ---- 1 + 2: validator bypasses and forged results ----------------------------------------------

def exploit(path: str) -> str:
    return (HOSTILE / path).read_text()


@pytest.mark.parametrize("name", ["match_globals_forges_probe.py", "reexported_modules_forge_probe.py"])
def test_validator_bypasses_are_rejected_statically(name):
    errors = validate_source(exploit(name))
    assert errors and errors[0].kind == "unsafe", errors


@pytest.mark.parametrize("validate", [True, False], ids=["validated", "runtime-only"])
@pytest.mark.parametrize("name", ["match_globals_forges_probe.py", "reexported_modules_forge_probe.py"])
def test_patching_the_probe_cannot_get_a_nan_loss_accepted(pool, name, validate):
    result = pool.submit_probe(exploit(name), validate=validate).result(timeout=120)
    assert not result.ok and result.failure_class == "unsafe", result
    assert pool.probe(DPO).ok  # and the next candidate gets the real probe


@pytest.mark.parametrize("validate", [True, False], ids=["validated", "runtime-only"])
def test_patching_suite_result_cannot_forge_a_score(pool, validate):
    future = pool.submit_job(exploit("forge_suite_result.py"), EVALUATE,
                             {"suite": "screen", "seeds": 1}, timeout_s=300, validate=validate)
    result = future.result(timeout=400)
    assert not (result.ok and result.value.get("fitness") == 9.99), "forged fitness accepted"
    assert not result.ok and result.failure_class == "unsafe", result


# ---- 3: cross-candidate poisoning ---------------------------------------------------------------

def test_process_state_a_job_changes_never_reaches_the_next_job(pool):
    before = job(pool, "loss_values")
    poison = job(pool, "poison_globals")
    after = job(pool, "loss_values")
    assert before.ok and poison.ok and after.ok, (before.message, poison.message, after.message)
    assert "torch_function_mode" in poison.value["done"]  # the poisoner really ran...
    assert after.value["loss"] == before.value["loss"]    # ...and changed nothing for the next job
    assert after.value["default_dtype"] == "torch.float32"
    assert not after.value["anomaly"] and after.value["matmul_precision"] == "highest"
    assert "poison.txt" not in after.value["cwd_files"]
    assert after.value["pid"] != poison.value["pid"]       # one fresh process per job


# ---- 4: replies are data of unknown honesty ----------------------------------------------------

FORGED = {
    "deep_nesting": '{"id": "__ID__", "ok": true, "message": "ok", "value": ' + "[" * 100_000
                    + "]" * 100_000 + "}",
    "huge_integer": '{"id": "__ID__", "ok": true, "failure_class": null, "message": "ok", '
                    '"value": {"fitness": ' + "9" * 400 + "}}",
    "nan_fitness": '{"id": "__ID__", "ok": true, "failure_class": null, "message": "ok", '
                   '"value": {"fitness": NaN}}',
    "not_an_object": '[1, 2, 3]',
}


@pytest.mark.parametrize("kind", sorted(FORGED))
def test_forged_replies_complete_with_a_classified_failure(pool, kind):
    result = job(pool, "forge_reply", payload=FORGED[kind])
    assert not result.ok and result.failure_class in ("unsafe", "crash"), result
    assert pool.probe(DPO).ok  # the slot survived


# ---- 5: the reference cache --------------------------------------------------------------------

TINY_SUITE = """
name: tiny_tinylm
description: a very small tinylm suite (cache tests)
groups:
  - tier: tinylm
    task: sorting
    task_params: {n: 4}
    seeds: [0]
    noise: [0.0]
    betas: [0.1]
    kl_budget: 5.0
    model: {n_layer: 1, n_embd: 16, n_head: 2}
    sft: {steps: 20, batch_size: 32, lr: 3.0e-3}
    data: {train_pairs: 128, heldout_pairs: 32, eval_prompts: 32}
    train: {steps: 10, batch_size: 32, lr: 1.0e-3}
"""


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    path.write_text(TINY_SUITE)
    return path


def _bundles(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((cache / "tinylm").glob("*.pt"))}


def test_workers_cannot_rewrite_replace_or_add_to_the_reference_cache(pool, cache, tiny_suite):
    from evaluators import evaluate_loss

    score = evaluate_loss("dpo", str(tiny_suite), cache_dir=str(cache)).fitness  # parent builds
    files = _bundles(cache)
    assert files
    report = job(pool, "tamper_cache", cache_dir=str(cache))
    assert report.ok, report.message
    blocked({k: v for k, v in report.value.items() if k != "bundles"})
    assert _bundles(cache) == files and not (cache / "planted.txt").exists()
    assert (cache / "tinylm").is_dir() and not (cache / "tinylm").is_symlink()
    assert evaluate_loss("dpo", str(tiny_suite), cache_dir=str(cache)).fitness == score


def test_a_changed_bundle_is_rebuilt_not_trained_on(cache, tiny_suite):
    from evaluators import evaluate_loss

    score = evaluate_loss("dpo", str(tiny_suite), cache_dir=str(cache)).fitness
    bundle = next((cache / "tinylm").glob("*.pt"))
    import torch

    data = torch.load(bundle, weights_only=True)
    data["train"]["ref_a"] = data["train"]["ref_a"] + 5.0  # what a tampering worker would do
    torch.save(data, bundle)
    assert evaluate_loss("dpo", str(tiny_suite), cache_dir=str(cache)).fitness == score


def test_the_private_scratch_dir_has_a_per_job_quota(pool):
    result = job(pool, "fill_disk", mb=4096)
    limit = pool.limits.private_dir_mb
    if result.ok:  # bubblewrap: a sized tmpfs says ENOSPC
        assert result.value["written_mb"] <= limit and "No space" in result.value["stopped"]
    else:          # Landlock: the zygote measures and kills
        assert result.failure_class == "unsafe" and "private directory" in result.message
    assert job(pool, "write_scratch").value["files"] == ["output.log", "scratch.txt"]  # wiped


# ---- 6: isolation gaps ---------------------------------------------------------------------------

def _sysv_keys(kind: str) -> set[int]:
    try:
        lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {int(line.split()[0]) for line in lines if line.strip()}


def test_sysv_ipc_objects_cannot_be_made_or_outlive_the_job(pool):
    result = job(pool, "sysv_ipc", key=IPC_KEY)
    try:
        assert result.ok, result.message
        blocked(result.value)
        assert IPC_KEY not in _sysv_keys("msg") and IPC_KEY not in _sysv_keys("shm")
    finally:  # leave no object behind, whatever happened
        subprocess.run(["ipcrm", "-Q", str(IPC_KEY)], capture_output=True)
        subprocess.run(["ipcrm", "-M", str(IPC_KEY)], capture_output=True)


def test_sockets_on_disk_abstract_and_tcp_are_unreachable(pool, cache):
    path = cache / "listening.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(path))
    unix.listen(1)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0prefdisco-escape-test")
    abstract.listen(1)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    try:
        result = job(pool, "connect", tcp_port=tcp.getsockname()[1], unix_path=str(path),
                     abstract_name="prefdisco-escape-test")
        assert result.ok, result.message
        blocked(result.value)
    finally:
        for s in (unix, abstract, tcp):
            s.close()
        path.unlink()


def test_sys_dev_cgroup_and_tmp_are_not_writable(pool):
    result = job(pool, "write_system")
    assert result.ok, result.message
    blocked(result.value)
    assert not Path("/tmp/prefdisco-x").exists()


def test_no_new_processes_programs_or_signals_to_others(pool):
    result = job(pool, "fork_and_signal")
    assert result.ok, result.message
    blocked(result.value)


def test_the_parents_secrets_are_unreadable(pool):
    assert os.environ["OPENAI_API_KEY"] == SECRET
    result = job(pool, "scan_environ", marker=SECRET)
    assert result.ok, result.message
    assert result.value["found_in"] == [] and not result.value["own_env_has_it"]
    probe = pool.probe(exploit("env_secret.py"), validate=False)
    assert SECRET not in probe.message


def test_a_child_that_dies_or_hangs_is_classified_and_replaced(pool):
    died = job(pool, "hard_exit")
    assert not died.ok and died.failure_class == "crash", died
    hung = pool.submit_job(None, f"{ESCAPES}:sleep", {"seconds": 60}, timeout_s=1.0).result(timeout=60)
    assert not hung.ok and hung.failure_class == "timeout"
    assert pool.probe(DPO).ok


# A Docker-like kernel policy: no namespaces of any kind (optionally no Landlock either).
DENY = textwrap.dedent("""
    import errno, sys, pyseccomp as sc
    f = sc.SyscallFilter(sc.ALLOW)
    for name in ("unshare", "setns", "mount", "pivot_root"):
        f.add_rule(sc.ERRNO(errno.EPERM), name)
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    if sys.argv[1] == "no-landlock":
        for name in ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"):
            f.add_rule(sc.ERRNO(errno.ENOSYS), name)
    f.load()
    sys.argv = sys.argv[2:]
    exec(compile(open(sys.argv[0]).read(), sys.argv[0], "exec"))
""")
POOL_SCRIPT = textwrap.dedent("""
    import json, sys
    from candidate_losses import get_loss
    from discovery.sandbox import SandboxLimits, SandboxPool
    try:
        with SandboxPool(size=1, limits=SandboxLimits(wall_timeout_s=20.0)) as pool:
            probe = pool.probe(get_loss("dpo").source)
            escape = pool.run_job(None, "tests.discovery.hostile.jobs.escapes:connect", {"tcp_port": 1})
            report = pool.isolation_report()
        print(json.dumps({"probe_ok": probe.ok, "probe_message": probe.message,
                          "escape": escape.value, "mode": report[0]["mode"] if report else None}))
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
""")


def _under_policy(tmp_path, policy: str, env: dict[str, str] | None = None) -> dict:
    (tmp_path / "deny.py").write_text(DENY)
    (tmp_path / "pool.py").write_text(POOL_SCRIPT)
    done = subprocess.run([sys.executable, str(tmp_path / "deny.py"), policy, str(tmp_path / "pool.py")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1])


@pytest.mark.slow
def test_without_namespaces_landlock_and_seccomp_still_contain(tmp_path):
    out = _under_policy(tmp_path, "no-namespaces")
    assert out.get("mode") == "landlock", out
    assert out["probe_ok"], out
    blocked(out["escape"])


@pytest.mark.slow
def test_without_any_isolation_the_pool_fails_closed_with_the_fix(tmp_path):
    out = _under_policy(tmp_path, "no-landlock")
    assert out.get("error") == "SandboxUnavailable", out
    message = out["message"]
    assert "\n" not in message and "bubblewrap" in message and "--trusted-code-without-sandbox" in message
    assert SECRET not in message


@pytest.mark.slow
def test_the_trusted_code_opt_out_runs_unisolated_only_when_asked(tmp_path):
    out = _under_policy(tmp_path, "no-landlock", {"PREFDISCO_TRUSTED_CODE_WITHOUT_SANDBOX": "1"})
    assert out.get("mode") == "none" and out["probe_ok"], out


@pytest.mark.slow
def test_a_campaign_that_cannot_evaluate_stops_loudly(tmp_path):
    """`prefdisco run` where no sandbox can be had: one line naming the fix, non-zero exit."""
    (tmp_path / "deny.py").write_text(DENY)
    cli = tmp_path / "cli.py"
    cli.write_text("from discovery.commands import main\nmain()\n")
    done = subprocess.run(
        [sys.executable, str(tmp_path / "deny.py"), "no-landlock", str(cli), "run",
         str(ROOT / "configs" / "quickstart.yaml"), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PREFDISCO_CACHE": str(tmp_path / "cache")})
    assert done.returncode != 0, done.stdout
    assert "budget" not in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sandbox unavailable" in errors[0] and "Fix:" in errors[0], done.stderr


# ---- 7: ordinary LLM-written code is accepted ----------------------------------------------------

REALISTIC = {
    "lambda_alias": '''
import torch.nn.functional as F
logsig = lambda x: F.logsigmoid(x)

def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    return -logsig(beta * ((policy_chosen_logps - reference_chosen_logps)
                           - (policy_rejected_logps - reference_rejected_logps)))
''',
    "future_annotations": '''
from __future__ import annotations
import torch

def loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
         reference_chosen_logps: torch.Tensor, reference_rejected_logps: torch.Tensor,
         beta: float) -> torch.Tensor:
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h)
''',
    "typing_optional": '''
from typing import Optional
import torch

def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta, margin: Optional[float] = None):
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    if margin is not None:
        h = h - margin
    return -torch.nn.functional.logsigmoid(beta * h)
''',
    "dunder_docstring": '''
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    """DPO with a softplus: like torch's __call__ wrapper, returns per-example losses."""
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return F.softplus(-beta * h)
''',
    "format_debug_print": '''
def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
         reference_rejected_logps, beta):
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    print("mean margin {}".format(h.mean().item()))
    print("beta={:.3f} batch={}".format(beta, h.shape[0]))
    return -F.logsigmoid(beta * h)
''',
}


@pytest.mark.parametrize("name", sorted(REALISTIC))
def test_realistic_llm_code_is_accepted_and_runs(pool, name):
    assert validate_source(REALISTIC[name]) == []
    result = pool.probe(REALISTIC[name])
    assert result.ok, result.message


def test_format_strings_that_reach_attributes_are_still_refused():
    for template in ("{0.__class__}", "{x.real}", "{0[1]}", "{:{0.__class__}}"):
        code = REALISTIC["format_debug_print"].replace('"mean margin {}"', repr(template))
        errors = validate_source(code)
        assert errors and errors[0].kind == "unsafe", template


def test_every_library_loss_runs_unchanged_in_the_sandbox(pool):
    from discovery.search.campaign import baseline_code

    specs = list_losses()
    assert len(specs) >= 21
    futures = [(spec.name, pool.submit_probe(baseline_code(spec.source))) for spec in specs]
    failed = {name: f.result(timeout=300).message for name, f in futures if not f.result().ok}
    assert not failed, failed
