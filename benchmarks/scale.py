"""Executor scaling: candidates per minute with 1 vs 2 local workers and with Ray, plus per-request overhead.

    python benchmarks/scale.py                       # quickstart suites, 16 candidates per setup
    python benchmarks/scale.py --candidates 8 --setups local:1,local:2,ray:2 --json

Each setup runs the same quickstart campaign (same seed, so the same candidates; no final held-out
step) through its own executor and reports:
  * start_s         -- executor start-up (Ray: includes starting the local Ray cluster);
  * cand_per_min    -- proposals per minute of campaign wall time (baselines' evaluation included);
  * roundtrip_ms    -- median driver-side latency of a trivial sandboxed job (executor + sandbox IPC;
                       the job itself takes well under a millisecond);
  * overhead_per_candidate_ms -- roundtrip x sandbox requests per candidate (probe, screen, fitness);
  * worker_utilisation -- summed sandbox stage time / (wall x workers): how busy proposals kept
                       the workers (1.0 = never idle).
Only candidates/min depends on core count: on a 2-core machine shared with other work, expect
well under 2x from 2 workers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRIVIAL_JOB = "discovery.sandbox.jobs:call_loss"


def warm(ex, workers: int, screen_suite: str) -> None:
    """Import torch/evaluators in every sandbox worker before timing (one short job per worker)."""
    from discovery.executors import EvaluationRequest

    list(ex.map([EvaluationRequest.job_request(None, "evaluators.jobs:evaluate_job",
                                               {"suite": screen_suite, "loss_name": "dpo", "seeds": 1}, 300)
                 for _ in range(workers)]))


def roundtrip_ms(ex, n: int = 20) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        res = ex.run_job(None, TRIVIAL_JOB, {"loss_name": "dpo"}, 30)
        times.append((time.perf_counter() - start) * 1000)
        assert res.ok, res.message
    return statistics.median(times)


def sandbox_work(out: Path) -> tuple[float, float]:
    """(sandbox requests per archive row, summed seconds of all sandbox stages) of a campaign."""
    import sqlalchemy as sa

    from discovery.archive.campaign_dir import CampaignDir

    db = CampaignDir.open(out).database()
    try:
        with db.engine.connect() as conn:
            n, busy = conn.execute(sa.text("SELECT count(*), coalesce(sum(wall_time_s), 0) FROM evaluations "
                                           "WHERE stage != 'static'")).one()
        rows = len(db.all())
    finally:
        db.close()
    return n / max(rows, 1), float(busy)


def run_setup(kind: str, workers: int, candidates: int, root: Path) -> dict:
    from discovery.search.campaign import Campaign
    from discovery.config import load_config
    from discovery.executors import make_executor
    from discovery.search.progress import ProgressView

    cfg = load_config(ROOT / "configs" / "quickstart.yaml")  # suite paths resolved against the YAML
    cfg.workers = workers
    cfg.budget.max_candidates = candidates
    cfg.cascade.heldout_top_k = 0  # throughput of the discovery loop; the one-off held-out step would skew it
    start = time.perf_counter()
    ex = make_executor(kind, num_workers=workers)
    start_s = time.perf_counter() - start
    try:
        warm(ex, workers, cfg.cascade.screen_suite or cfg.cascade.fitness_suite)  # the quickstart has no screen
        rt = roundtrip_ms(ex)
        out = root / f"{kind}-{workers}"
        t = time.perf_counter()
        result = Campaign.create(cfg, out, pool=ex, progress=ProgressView(enabled=False)).run()
        wall = time.perf_counter() - t
    finally:
        ex.close()
    per_cand, busy = sandbox_work(out)
    return {"setup": f"{kind}:{workers}", "start_s": round(start_s, 2), "candidates": result.candidates,
            "wall_s": round(wall, 1), "cand_per_min": round(result.candidates / wall * 60, 2),
            "roundtrip_ms": round(rt, 2), "requests_per_candidate": round(per_cand, 2),
            "overhead_per_candidate_ms": round(rt * per_cand, 1),
            "worker_utilisation": round(busy / (wall * workers), 3), "best_fitness": result.best_fitness}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--setups", default="local:1,local:2,ray:2", help="kind:workers, comma separated")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="prefdisco-scale-") as tmp:
        for setup in args.setups.split(","):
            kind, _, n = setup.partition(":")
            rows.append(run_setup(kind, int(n or 1), args.candidates, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    one = next((r for r in rows if r["setup"] == "local:1"), None)
    for r in rows:
        r["speedup_vs_local1"] = round(r["cand_per_min"] / one["cand_per_min"], 2) if one else None
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'setup':10} {'start s':>8} {'cand/min':>9} {'speedup':>8} {'roundtrip ms':>13} "
          f"{'req/cand':>9} {'overhead/cand ms':>17} {'utilisation':>12}")
    for r in rows:
        print(f"{r['setup']:10} {r['start_s']:8.2f} {r['cand_per_min']:9.2f} {r['speedup_vs_local1'] or 0:8.2f} "
              f"{r['roundtrip_ms']:13.2f} {r['requests_per_candidate']:9.2f} {r['overhead_per_candidate_ms']:17.1f} "
              f"{r['worker_utilisation']:12.2f}")
    import os

    print(f"(machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"{args.candidates} candidates per setup, quickstart suites)")


if __name__ == "__main__":
    main()
