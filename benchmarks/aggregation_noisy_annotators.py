"""Dawid–Skene flags truly noisy simulated annotators: precision/recall over seeds and settings.

Population: N annotators, of whom some click at random (noise 1.0); the rest answer by a hidden
quality with a small error rate. Each item is judged by `overlap` random annotators.
Run: .venv/bin/python benchmarks/aggregation_noisy_annotators.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

# benchmarks/ holds scripts named like packages: make sure the real packages are imported
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]

from preference_data.aggregation import AggregationConfig, aggregate, parse_judgments
from preference_data.aggregation.simulate import SimulatedAnnotator, quality, simulate_judgments, truth_items


def one(n: int, noisy: int, good_noise: float, items: int, overlap: int, seed: int) -> tuple[float, float, float]:
    anns = [SimulatedAnnotator(f"a{i:02d}", quality, 1.0 if i < noisy else good_noise) for i in range(n)]
    js = parse_judgments(simulate_judgments(truth_items(items, seed=seed), anns, overlap, seed=seed + 100))
    res = aggregate(js, AggregationConfig(method="dawid-skene", max_clusters=2))
    flagged, truly = set(res.report["method_info"]["flagged_noisy"]), {f"a{i:02d}" for i in range(noisy)}
    tp = len(flagged & truly)
    q = {r["response_id"]: r["settings"]["quality"] for it in truth_items(items, seed=seed) for r in it["responses"]}
    acc = sum(q[p["provenance"]["chosen_response_id"]] > q[p["provenance"]["rejected_response_id"]]
              for p in res.pairs) / len(res.pairs)
    return tp / max(len(flagged), 1), tp / len(truly), acc


def main() -> None:
    print(f"{'annotators':>10} {'noisy':>5} {'good_err':>8} {'items':>5} {'k':>2} | precision recall  truth_acc (mean over 5 seeds)")
    for n, noisy, err, items, k in [(20, 4, 0.1, 120, 7), (20, 4, 0.2, 120, 7), (30, 6, 0.1, 200, 5), (20, 4, 0.1, 60, 3)]:
        t = time.perf_counter()
        runs = [one(n, noisy, err, items, k, s) for s in range(5)]
        p, r, a = (statistics.mean(x) for x in zip(*runs))
        print(f"{n:>10} {noisy:>5} {err:>8} {items:>5} {k:>2} | {p:9.3f} {r:6.3f} {a:10.3f}   ({time.perf_counter() - t:.1f}s)")


if __name__ == "__main__":
    main()
