"""Is a refactor numerically neutral? Run the same evaluations from two source trees and compare.

    git archive <old-commit> | tar -x -C /tmp/tree_a ; git archive HEAD | tar -x -C /tmp/tree_b
    .venv/bin/python benchmarks/compare_trees.py /tmp/tree_a /tmp/tree_b --reps 6

For each tree, in fresh processes alternating A, B, B, A, ... (so machine load hits both alike):
the screen suite for a few baselines (CPU seconds per candidate), plus micro runs of every
suite tier (tinylm, pluralistic, spa) and of a failing loss. Prints whether every number is
bit-identical and the median CPU ratio B/A with the load average: a timing goal needs a ratio
measured side by side, not two numbers taken at different loads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PROBE = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from evaluators import evaluate_loss
from evaluators.suites import RunSpec
from candidate_losses import get_loss
cache = sys.argv[2]
timing, results = {}, {}
for name in ("dpo", "ipo", "hinge", "lrml"):
    c0 = time.process_time()
    results["screen/" + name] = evaluate_loss(name, "screen", cache_dir=cache).to_dict()
    timing[name] = time.process_time() - c0
if sys.argv[3] == "full":
    micro = {"model": {"n_layer": 1, "n_embd": 32, "n_head": 2}, "sft": {"steps": 20, "batch_size": 32, "corpus": 256},
             "data": {"train_pairs": 64, "heldout_pairs": 32, "eval_prompts": 32},
             "train": {"steps": 6, "batch_size": 16, "log_every": 2}}
    def cfg(**extra):
        c = {k: dict(v) for k, v in micro.items()}; c.update(extra); return c
    import importlib
    def runner(tier):  # by module, so that trees from before the tier registry work too
        for module, attr in {"tinylm": [("evaluators.tinylm", "run_tinylm")],
                             "pluralistic": [("preference_data.pluralistic", "run_pluralistic"),
                                             ("evaluators.pluralistic", "run_pluralistic")],
                             "spa": [("preference_data.spa.tier", "run_spa_tier")]}[tier]:
            try:
                return getattr(importlib.import_module(module), attr)
            except ImportError:
                continue
        raise ImportError(tier)
    bad = lambda pc, pr, rc, rr, beta: pc * float("inf") - pr * float("inf")
    cases = [("tinylm", "sorting", {"n": 4}, cfg(), get_loss("dpo").fn), ("tinylm", "sentiment", {}, cfg(), bad),
             ("pluralistic", "sentiment", {}, cfg(pluralistic={"annotators": 10, "overlap": 3, "by_group": True,
                                                              "weighting": "poststrat", "robust": "grpo"}), get_loss("dpo").fn)]
    spa = cfg(spa={"data": {"seed_pairs": 16, "prompts_per_iteration": [24, 24]}, "train": {"batch_size": 8}})
    spa.pop("train")
    cases.append(("spa", "sentiment", {}, spa, get_loss("dpo").fn))
    for tier, task, params, config, fn in cases:
        spec = RunSpec(tier, task, 0, 0.1, 0.5, 8.0, task_params=params, config=config)
        results[f"{tier}/{task}"] = runner(tier)(spec, fn, {}, cache, "cpu").to_dict()
def scrub(x):
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if not k.endswith("time_s")}
    return [scrub(v) for v in x] if isinstance(x, list) else x
print(json.dumps({"timing": timing, "results": scrub(results)}, sort_keys=True))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree_a")
    ap.add_argument("tree_b")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--cache-dir", default=os.environ.get("PREFDISCO_CACHE", "/tmp/prefdisco-compare-cache"))
    args = ap.parse_args()
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    results: dict[str, dict] = {}
    for rep in range(args.reps):
        for label in ("A", "B") if rep % 2 == 0 else ("B", "A"):
            tree = args.tree_a if label == "A" else args.tree_b
            mode = "full" if rep == 0 else "timing"
            out = subprocess.run([sys.executable, "-c", PROBE, tree, args.cache_dir, mode],
                                 capture_output=True, text=True, check=True)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            cpu[label].append(sum(data["timing"].values()) / len(data["timing"]))
            if mode == "full":
                results[label] = data["results"]
    same = json.dumps(results["A"], sort_keys=True) == json.dumps(results["B"], sort_keys=True)
    print(f"results bit-identical ({len(results['A'])} evaluations): {same}")
    for label in ("A", "B"):
        print(f"tree {label}: CPU s per screen candidate {[round(x, 2) for x in cpu[label]]}, "
              f"median {statistics.median(cpu[label]):.3f}")
    print(f"median CPU ratio B/A {statistics.median(cpu['B']) / statistics.median(cpu['A']):.3f}; "
          f"load average {os.getloadavg()[0]:.1f}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
