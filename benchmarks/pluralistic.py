"""Pluralistic benchmark: does group weighting help the under-represented annotator group?

Runs the `pluralistic` suite's setting (tinylm sentiment; 85 % positivity annotators, 15 % brevity
annotators; population 70/30) with DPO under four data/reduction pipelines and prints each
group's gold utility (normalised to [0, 1]) over seeds:

* majority        - pooled majority vote, one pair per reference pair (the plain baseline)
* poststrat-vote  - pooled vote where each judgment counts target share / sample share
* poststrat-pairs - one decision per group, each group's pairs weighted to its population share
* grpo            - one decision per group, group-robust reduction (GRPO, Ramesh et al. 2024)

Target: a weighting/robust pipeline raises the minority's gold utility over
`majority` by more than the seed standard error; the majority group's cost is reported.

Run: .venv/bin/python benchmarks/pluralistic.py --seeds 3 [--beta 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

# benchmarks/ holds scripts named like packages (evaluators.py): import the packages, not them
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]

VARIANTS: dict[str, dict] = {
    "majority": {"aggregation": "majority", "weighting": "none", "by_group": False, "robust": "none"},
    "poststrat-vote": {"aggregation": "majority", "weighting": "poststrat", "by_group": False, "robust": "none"},
    "poststrat-pairs": {"aggregation": "majority", "weighting": "poststrat", "by_group": True, "robust": "none"},
    "grpo": {"aggregation": "majority", "weighting": "none", "by_group": True, "robust": "grpo"},
}


def mean_se(xs: list[float]) -> tuple[float, float]:
    m = statistics.mean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan)


def main() -> None:
    import torch

    from candidate_losses import get_loss
    from evaluators import load_suite
    from preference_data.pluralistic import run_pluralistic
    from evaluators.reference import default_cache_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--beta", type=float, default=None, help="default: the suite's first beta")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--loss", default="dpo")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    suite = load_suite("pluralistic").with_overrides(seeds=args.seeds)
    base = suite.instances()
    loss = get_loss(args.loss).fn
    results: dict[str, list[dict]] = {}
    for name in args.variants.split(","):
        results[name] = []
        for spec in base:
            config = {**spec.config, "pluralistic": {**spec.config["pluralistic"], **VARIANTS[name]}}
            spec = replace(spec, config=config, beta=args.beta if args.beta is not None else spec.beta)
            t = time.perf_counter()
            run = run_pluralistic(spec, loss, {}, default_cache_dir(), "cpu")
            g = run.extra["groups"]
            results[name].append({"seed": spec.seed, "kl": run.kl, "flags": run.flags,
                                  **{k: v["gold"] for k, v in g.items()},
                                  "reference": {k: v["reference"] for k, v in g.items()},
                                  "worst_group": run.extra["worst_group"],
                                  "population": run.extra["population_weighted"],
                                  "grpo_alpha": run.extra["grpo_alpha"]})
            print(f"  {name:16s} seed {spec.seed}: " + ", ".join(f"{k} {v['gold']:.3f}" for k, v in g.items())
                  + f", KL {run.kl:.2f} ({time.perf_counter() - t:.0f}s){' ' + str(run.flags) if run.flags else ''}",
                  flush=True)

    groups = list(base[0].config["pluralistic"]["groups"])
    minority = min(groups, key=lambda g: g["annotator_share"])["name"]
    majority_group = max(groups, key=lambda g: g["annotator_share"])["name"]
    print(f"\nloss={args.loss} beta={args.beta or base[0].beta} seeds={args.seeds}; minority group "
          f"'{minority}' ({100 * min(g['annotator_share'] for g in groups):.0f} % of annotators)")
    print(f"{'pipeline':16s} {minority:>15s} {majority_group:>15s} {'worst':>13s} {'population':>13s} {'KL':>6s}"
          f" | {'minority gain vs majority (paired)':>34s} {'majority cost':>15s}")
    summary = {}
    base_runs = results.get("majority")
    for name, runs in results.items():
        cols = {k: mean_se([r[k] for r in runs]) for k in (minority, majority_group, "worst_group", "population", "kl")}
        line = (f"{name:16s} " + " ".join(f"{cols[k][0]:7.3f}±{cols[k][1]:.3f}" for k in
                                          (minority, majority_group, "worst_group", "population"))
                + f" {cols['kl'][0]:6.2f}")
        entry = {k: {"mean": m, "se": s} for k, (m, s) in cols.items()}
        if base_runs and name != "majority":
            gain = mean_se([r[minority] - b[minority] for r, b in zip(runs, base_runs)])
            cost = mean_se([b[majority_group] - r[majority_group] for r, b in zip(runs, base_runs)])
            beats = gain[0] > gain[1] and gain[0] > cols[minority][1]
            line += f" | {gain[0]:+.3f}±{gain[1]:.3f} {'> s.e.' if beats else 'NOT > s.e.':>10s} {cost[0]:+9.3f}±{cost[1]:.3f}"
            entry.update({"minority_gain": {"mean": gain[0], "se": gain[1], "exceeds_se": beats},
                          "majority_cost": {"mean": cost[0], "se": cost[1]}})
        print(line)
        summary[name] = entry
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
