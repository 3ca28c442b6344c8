"""Sandbox speed: validation per candidate, cold start, and the per-job cost of a fresh process.

Every probe and job runs in a child forked from a warm zygote (which imported torch and the
evaluators once), confined, and discarded. This prints what that costs:

* fork-to-ready: from the zygote's fork to the child being confined and waiting for its request
  (seccomp + Landlock + rlimits included), as measured by the child (target <= 50 ms, 2 cores);
  the zygote forks the next child right after a reply, so a request normally only waits
  request-to-start: from its arrival at the zygote until the waiting child starts on it;
* the round trip of a job that does nothing, and of a trivial job (one DPO call);
* the warm probe round trip (validation + probe + fingerprint + shape curves);

and, with ``--compare-ref REF`` (e.g. the commit before the fresh-process sandbox), the same
trivial-job and probe round trips for that revision's warm pool, measured in the same run.
Run:  .venv/bin/python benchmarks/sandbox.py [--jobs 40] [--compare-ref b04da13]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a subprocess against one source tree (this one or --compare-ref's): only the API the
# old and the new pools share, so the numbers are comparable.
MEASURE = r'''
import json, statistics, sys, time
from candidate_losses import list_losses
from discovery.sandbox import SandboxPool
n = int(sys.argv[1])
sources = [s.source for s in list_losses()]
t0 = time.perf_counter()
with SandboxPool(size=1) as pool:
    pool.probe(sources[0])
    cold = time.perf_counter() - t0
    def timed(call):
        out = []
        for i in range(n):
            t = time.perf_counter(); r = call(i); out.append((time.perf_counter() - t) * 1000)
            assert r.ok, r.message
        return out
    trivial = timed(lambda i: pool.run_job(None, "discovery.sandbox.jobs:call_loss", {"loss_name": "dpo"}))
    probe = timed(lambda i: pool.probe(sources[i % len(sources)]))
    extra = {}
    if hasattr(pool, "fork_to_ready_s"):
        pool.fork_to_ready_s.clear()
        pool.request_to_start_s.clear()
        pool.fork_to_ready_cpu_s.clear()
        extra["noop_ms"] = timed(lambda i: pool.run_job(None, "discovery.sandbox.jobs:noop", {}))
        extra["fork_to_ready_ms"] = [s * 1000 for s in pool.fork_to_ready_s]
        extra["request_to_start_ms"] = [s * 1000 for s in pool.request_to_start_s]
        extra["fork_to_ready_cpu_ms"] = [s * 1000 for s in pool.fork_to_ready_cpu_s]
        extra["isolation"] = pool.isolation_report()
print(json.dumps({"cold_s": cold, "trivial_ms": trivial, "probe_ms": probe, **extra}))
'''


def summary(values: list[float]) -> str:
    values = sorted(values)
    return (f"median {statistics.median(values):6.1f} ms, p90 {values[max(0, int(0.9 * len(values)) - 1)]:6.1f}"
            f" ms, max {values[-1]:6.1f} ms")


def measure(tree: Path, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(n)], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def checkout(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(into)  # noqa: S202 - our own repository
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="jobs and probes timed per kind")
    parser.add_argument("--compare-ref", default=None, help="git revision whose warm pool to time too")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from candidate_losses import list_losses
    from discovery.sandbox import validate_source

    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"(1/5/15 min) on {os.cpu_count()} cores")
    sources = [spec.source for spec in list_losses()]
    validate_source(sources[0])
    per = []
    for source in sources:
        started = time.perf_counter()
        for _ in range(20):
            validate_source(source)
        per.append((time.perf_counter() - started) / 20 * 1000)
    print(f"static validation per candidate: mean {statistics.mean(per):.2f} ms, max {max(per):.2f} ms "
          f"over {len(sources)} library losses (target < 5 ms)")

    new = measure(ROOT, args.jobs)
    iso = (new.get("isolation") or [{}])[0]
    print(f"\nfresh process per job ({iso.get('mode')}, Landlock ABI {iso.get('landlock_abi')}, "
          f"seccomp {iso.get('seccomp')}):")
    print(f"  cold zygote start + first probe  {new['cold_s']:.2f} s")
    print(f"  fork-to-ready (child-measured)   {summary(new['fork_to_ready_ms'])}  (target <= 50 ms)")
    print(f"  fork-to-ready, CPU time          {summary(new['fork_to_ready_cpu_ms'])}  (load-independent)")
    print(f"  request-to-start (waiting child) {summary(new['request_to_start_ms'])}")
    print(f"  no-op job round trip             {summary(new['noop_ms'])}")
    print(f"  trivial job (one DPO call)       {summary(new['trivial_ms'])}")
    print(f"  warm probe round trip            {summary(new['probe_ms'])}  (target < 100 ms + fork)")
    if args.compare_ref:
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o755)  # older sandboxes ran workers as another uid that must read it
            old = measure(checkout(args.compare_ref, Path(tmp)), args.jobs)
        print(f"\nwarm pool of {args.compare_ref} (one long-lived worker serves every job):")
        print(f"  cold worker start + first probe  {old['cold_s']:.2f} s")
        print(f"  trivial job (one DPO call)       {summary(old['trivial_ms'])}")
        print(f"  warm probe round trip            {summary(old['probe_ms'])}")
        extra = statistics.median(new["trivial_ms"]) - statistics.median(old["trivial_ms"])
        print(f"\nper-job cost of a fresh process (trivial job, median new - old): {extra:+.1f} ms")


if __name__ == "__main__":
    main()
