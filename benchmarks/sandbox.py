"""Sandbox speed: static validation per candidate, warm-pool probe per candidate, cold start.

Targets (issue 4): validation < 5 ms, warm probe < 100 ms. Run:
    .venv/bin/python benchmarks/sandbox.py [--probes 40] [--size 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

from candidate_losses import list_losses
from discovery.sandbox import SandboxPool, validate_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=40, help="probes timed in the warm pool")
    parser.add_argument("--size", type=int, default=1, help="pool size")
    args = parser.parse_args()
    sources = [spec.source for spec in list_losses()]
    print(f"candidates: {len(sources)} registered losses (sources of the baseline library)")

    validate_source(sources[0])  # import-time costs out of the measurement
    per_candidate = []
    for source in sources:
        started = time.perf_counter()
        for _ in range(20):
            validate_source(source)
        per_candidate.append((time.perf_counter() - started) / 20 * 1000)
    print(f"static validation per candidate: mean {statistics.mean(per_candidate):.2f} ms, "
          f"max {max(per_candidate):.2f} ms  (target < 5 ms)")

    started = time.perf_counter()
    with SandboxPool(size=args.size) as pool:
        pool.probe(sources[0])  # blocks until a worker is warm
        cold = time.perf_counter() - started
        print(f"cold worker start (spawn, namespaces, import torch, warm-up, confine): "
              f"{statistics.mean(pool.start_times_s):.2f} s per worker; pool ready + first probe "
              f"{cold:.2f} s")
        times, wall = [], []
        for i in range(args.probes):
            source = sources[i % len(sources)]
            t0 = time.perf_counter()
            result = pool.probe(source)
            wall.append((time.perf_counter() - t0) * 1000)
            times.append(result.wall_time_s * 1000)
            if not result.ok:
                print(f"  note: probe rejected a baseline: {result.failure_class} {result.message}")
        wall.sort()
        print(f"warm probe per candidate (validation + probe + fingerprint + shape, round trip): "
              f"median {statistics.median(wall):.1f} ms, p90 {wall[int(0.9 * len(wall)) - 1]:.1f} ms, "
              f"max {wall[-1]:.1f} ms over {args.probes} probes  (target < 100 ms)")
        report = pool.isolation_report()
        if report:
            print(f"isolation: {report[0]['isolation']}  uid {report[0]['uid']}  "
                  f"notes {report[0]['notes'] or 'none'}")


if __name__ == "__main__":
    main()
