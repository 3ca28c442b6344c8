"""Measure the evaluators: wall time per candidate for each tier, and the score of every baseline
loss on the screen, fitness and held-out suites.

    .venv/bin/python benchmarks/evaluators.py                      # everything (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/evaluators.py --losses dpo,ipo,lrml --suites fitness,heldout --workers 2

Reference models are built once per (task, seed) into the cache (timed separately, first line).
Numbers depend on machine load: the header prints the load average so shared-CPU runs can be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _evaluate(args: tuple[str, str, int | None, str]) -> dict:
    name, suite, seeds, cache = args
    from evaluators import evaluate_loss

    return evaluate_loss(name, suite, seeds=seeds, cache_dir=cache).to_dict()


def _warm_references(suite: str, seeds: int | None, cache: str) -> float:
    """Build (or load) every reference of a suite once, with a constant loss (no training)."""
    import torch

    from evaluators import evaluate_loss

    t = time.perf_counter()
    evaluate_loss(lambda pc, pr, rc, rr, beta: torch.zeros_like(pc), suite, seeds=seeds,
                  cache_dir=cache, loss_name="warm-up")
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", default="", help="comma-separated names (default: every baseline)")
    parser.add_argument("--suites", default="screen,fitness,heldout")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per group (default: suite's)")
    parser.add_argument("--workers", type=int, default=1, help="losses evaluated in parallel")
    parser.add_argument("--cache-dir", default=os.environ.get("PREFDISCO_CACHE", "/tmp/prefdisco-bench-cache"))
    parser.add_argument("--json", default="", help="write all results here")
    args = parser.parse_args()

    import torch
    from candidate_losses import list_losses

    names = [n for n in args.losses.split(",") if n] or [s.name for s in list_losses()]
    suites = [s for s in args.suites.split(",") if s]
    print(f"# {len(names)} losses x suites {suites}; workers={args.workers}; "
          f"cpus={os.cpu_count()}; load avg {os.getloadavg()[0]:.1f}; "
          f"device={'cuda' if torch.cuda.is_available() else 'cpu'}; torch {torch.__version__}")
    results: dict[str, dict[str, dict]] = {}
    for suite in suites:
        t_ref = _warm_references(suite, args.seeds, args.cache_dir)
        print(f"\n## suite {suite}: reference build/load (cached once per task x seed) {t_ref:.1f} s")
        t0 = time.perf_counter()
        jobs = [(n, suite, args.seeds, args.cache_dir) for n in names]
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers) as pool:
                rows = list(pool.map(_evaluate, jobs))
        else:
            rows = [_evaluate(j) for j in jobs]
        total = time.perf_counter() - t0
        print(f"{'loss':<14}{'fitness':>9}{'± se':>8}  {'per task':<58}{'flags':<12}{'s/cand':>8}")
        for row in sorted(rows, key=lambda r: -(r["fitness"] if r["fitness"] is not None else -9)):
            per = " ".join(f"{k.split('/')[-1]}={v:.3f}" for k, v in (row["per_task"] or {}).items())
            flags = sorted({f for r in row["runs"] for f in r["flags"]})
            se = row["fitness_se"]
            print(f"{row['loss']:<14}{row['fitness']:>9.3f}{'' if se is None else f'{se:>8.3f}'}  "
                  f"{per:<58}{','.join(flags):<12}{row['wall_time_s']:>8.1f}")
            results.setdefault(row["loss"], {})[suite] = row
        per_run = [r["wall_time_s"] for row in rows for r in row["runs"]]
        cpu_run = [r["extra"].get("cpu_time_s", 0.0) for row in rows for r in row["runs"]]
        tiers = sorted({r["tier"] for row in rows for r in row["runs"]})
        n = len(rows)
        print(f"-> tiers {tiers}: {len(per_run)} runs; per run wall mean {sum(per_run) / len(per_run):.2f} s "
              f"(max {max(per_run):.2f}), CPU mean {sum(cpu_run) / len(cpu_run):.2f} s; per candidate "
              f"(whole suite) wall {sum(r['wall_time_s'] for r in rows) / n:.1f} s, CPU "
              f"{sum(cpu_run) / n:.1f} s; {total:.1f} s wall for {n} candidates")
    if "fitness" in suites and "heldout" in suites:
        print("\n## generalisation gap (heldout - fitness)")
        for name, by_suite in sorted(results.items()):
            print(f"{name:<14}{by_suite['heldout']['fitness'] - by_suite['fitness']['fitness']:>9.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\n# load avg at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
