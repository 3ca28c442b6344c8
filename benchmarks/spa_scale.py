"""SPA scale study: where (if anywhere) does self-labelled data beat DPO on the seed alone?

    .venv/bin/python benchmarks/spa_scale.py --store runs/spa-scale.jsonl          # the full grid
    .venv/bin/python benchmarks/spa_scale.py --store runs/spa-scale.jsonl --report  # tables only

The grid: the calibrated tier's model-size ladder (S 2x12, M 2x32 = the search tier's model,
L 3x64; ``benchmarks/fidelity.py`` LADDER) x beta {0.1, 0.5} x seeds, on configs/spa.yaml (the
authors' released recipe) at the SPA suite's scale (100 gold pairs + 400/1000/1500 fresh prompts:
3.3 % gold, the paper's ratio). Arms, on common random numbers (one seed = one pi_init, one gold
seed, one set of fresh prompts and evaluation prompts):

  seed_only       DPO on the gold seed (= stage 0 of every loop; the paper's "DPO on seed")
  seed_only_long  DPO on the gold seed for as many optimiser steps as the whole SPA run
  spa             SPA as released: implicit-reward self-labels, refinement, fresh data per round
  spa_len_tok     SPA with the length-aware judge, per-token implicit reward
  spa_len_reg     SPA with the length-controlled judge (reward minus a fitted slope x length)
  gold_loop       the same loop labelled by the gold reward (the "all labels are human" analogue)
  spa_seed30      SPA after a 10x longer seed DPO (30 epochs: about seed_only_long's steps), so the
                  judge of round 1 starts from a well-trained pi_0 (is the judge the bottleneck?)

Every run is appended to ``--store`` (JSON lines) as it finishes; a re-run skips what is stored, so
the study resumes after a kill. The report gives mean +- s.e. over seeds, paired differences with
their paired s.e., and per round the self-label accuracy, the share of labels that chose the longer
response, the policy's response length and KL.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from statistics import mean, stdev

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"S": {"n_layer": 2, "n_embd": 12, "n_head": 2},
         "M": {"n_layer": 2, "n_embd": 32, "n_head": 4},
         "L": {"n_layer": 3, "n_embd": 64, "n_head": 4}}
ARMS = ("seed_only", "seed_only_long", "spa", "spa_len_tok", "spa_len_reg", "gold_loop", "spa_seed30")
LOOPS = ("spa", "spa_len_tok", "spa_len_reg", "gold_loop", "spa_seed30")
SCALE = {"data": {"seed_pairs": 100, "prompts_per_iteration": [400, 1000, 1500]}}
STAGE_KEYS = ("iteration", "pairs", "new_pairs", "label_accuracy", "chosen_longer", "flagged_share",
              "flagged_label_accuracy", "unflagged_label_accuracy", "gold_reward", "kl", "win_rate",
              "heldout_accuracy", "response_length", "gold_reward_lc", "steps", "flags")


def arm_config(base, arm: str, size: str, beta: float, seed: int, spa_steps: int | None):
    import copy

    cfg = copy.deepcopy(base)
    cfg.seed, cfg.out_dir = seed, None
    cfg.reference.model = dict(SIZES[size])
    cfg.train.beta = beta
    if arm == "spa_len_tok":
        cfg.judge.length_control = "per_token"
    elif arm == "spa_len_reg":
        cfg.judge.length_control = "regress"
    elif arm == "gold_loop":
        cfg.judge.kind = "gold"
    elif arm == "spa_seed30":
        cfg.train.seed_epochs = 30.0
    elif arm == "seed_only_long":
        cfg.data.prompts_per_iteration = []
        cfg.train.seed_epochs = spa_steps * cfg.train.batch_size / cfg.data.seed_pairs
    return cfg


def run_unit(config: str, size: str, seed: int, betas: list[float], arms: list[str],
             done: dict[str, int], cache: str | None) -> list[dict]:
    """Every (beta, arm) of one (size, seed): one pi_init, built once and shared. ``done`` maps the
    keys already stored to their step counts (seed_only_long takes the SPA run's)."""
    import torch

    from preference_data.spa.config import load_spa_config, spa_config_from_dict, spa_config_to_dict
    from preference_data.spa.pipeline import run_spa

    torch.set_num_threads(1)
    raw = spa_config_to_dict(load_spa_config(config))
    for section, values in SCALE.items():
        raw[section].update(values)
    raw["cache_dir"] = cache
    base = spa_config_from_dict(raw)
    rows = []
    for beta in betas:
        spa_steps = done.get(f"{size}/{beta}/{seed}/spa")
        needs_spa = any(a in arms for a in ("spa", "seed_only", "seed_only_long"))
        for arm in (["spa"] if needs_spa else []) + [a for a in arms if a not in ("spa", "seed_only")]:
            key = f"{size}/{beta}/{seed}/{arm}"
            if key in done:
                continue
            t0 = time.perf_counter()
            res = run_spa(arm_config(base, arm, size, beta, seed, spa_steps), device="cpu")
            stages = [{k: getattr(s, k) for k in STAGE_KEYS} for s in res.stages]
            row = {"key": key, "size": size, "beta": beta, "seed": seed, "arm": arm,
                   "final": res.final.gold_reward, "kl": res.final.kl, "win": res.final.win_rate,
                   "length": res.final.response_length, "lc": res.final.gold_reward_lc,
                   "ref": res.reference_reward,
                   "ref_length": res.reference_length, "steps": sum(s.steps for s in res.stages),
                   "stages": stages, "wall_s": time.perf_counter() - t0}
            rows.append(row)
            if arm == "spa":
                spa_steps = row["steps"]
                s0 = stages[0]
                rows.append({**row, "key": f"{size}/{beta}/{seed}/seed_only", "arm": "seed_only",
                             "final": s0["gold_reward"], "kl": s0["kl"], "win": s0["win_rate"],
                             "length": s0["response_length"], "lc": s0["gold_reward_lc"],
                             "steps": s0["steps"], "stages": stages[:1],
                             "wall_s": 0.0})
    return rows


def _m(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return mean(xs) if xs else math.nan


def _se(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan


def load(*stores: Path) -> dict[str, dict]:
    """Rows by key from JSON-lines stores (``.gz`` too: the committed study's runs)."""
    import gzip

    rows = {}
    for store in stores:
        if store.exists():
            text = gzip.decompress(store.read_bytes()).decode() if store.suffix == ".gz" else store.read_text()
            for line in text.splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[row["key"]] = row
    return rows


def report(rows: dict[str, dict]) -> None:
    by = {}
    for r in rows.values():
        by.setdefault((r["size"], r["beta"], r["arm"]), {})[r["seed"]] = r
    cells = sorted({(s, b) for s, b, _ in by}, key=lambda c: ("SML".index(c[0]), c[1]))
    print("## Final policy: gold reward (mean +- s.e. over seeds), KL to pi_init, response length")
    print("| size | beta | arm | n | gold reward | length-controlled | KL | length (pi_init) | win vs pi_init |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, beta in cells:
        for arm in ARMS:
            rs = list(by.get((size, beta, arm), {}).values())
            if not rs:
                continue
            g = [r["final"] for r in rs]
            lc = [r.get("lc") for r in rs]
            print(f"| {size} | {beta} | {arm} | {len(rs)} | {_m(g):.3f} +- {_se(g):.3f} | {_m(lc):.3f} +- {_se(lc):.3f} | "
                  f"{_m([r['kl'] for r in rs]):.2f} | {_m([r['length'] for r in rs]):.2f} "
                  f"({_m([r['ref_length'] for r in rs]):.2f}) | {_m([r['win'] for r in rs]):.3f} |")
    for metric, title in (("final", "final gold reward"), ("lc", "length-controlled gold reward")):
        paired_table(by, cells, metric, title)
    per_round(by, cells)


def paired_table(by: dict, cells: list, metric: str, title: str) -> None:
    print(f"\n## Paired differences in {title} (same seeds; s.e. of the per-seed differences)")
    print("| size | beta | comparison | n | difference | paired s.e. | beyond 2 s.e.? |")
    print("|---|---|---|---|---|---|---|")
    for size, beta in cells:
        for arm, base in (("spa", "seed_only"), ("spa", "seed_only_long"), ("spa_len_tok", "seed_only_long"),
                          ("spa_len_reg", "seed_only_long"), ("spa_len_tok", "spa"), ("spa_len_reg", "spa"),
                          ("gold_loop", "seed_only_long"), ("gold_loop", "spa"), ("spa_seed30", "seed_only_long")):
            a, b = by.get((size, beta, arm), {}), by.get((size, beta, base), {})
            d = [a[s].get(metric, math.nan) - b[s].get(metric, math.nan) for s in sorted(set(a) & set(b))]
            if len(d) < 2:
                continue
            m, se = _m(d), _se(d)
            verdict = "yes, better" if m > 2 * se else ("yes, worse" if m < -2 * se else "no")
            print(f"| {size} | {beta} | {arm} - {base} | {len(d)} | {m:+.3f} | {se:.3f} | {verdict} |")


def per_round(by: dict, cells: list) -> None:
    print("\n## Per round (mean over seeds): self-label accuracy vs gold, share of labels choosing the longer "
          "response, policy after the round")
    print("| size | beta | arm | round | label acc. | chose longer | flagged | heldout acc. | length | KL | gold reward | length-controlled |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, beta in cells:
        for arm in LOOPS:
            rs = list(by.get((size, beta, arm), {}).values())
            if not rs:
                continue
            for it in range(max(len(r["stages"]) for r in rs)):
                st = [r["stages"][it] for r in rs if len(r["stages"]) > it]
                f = lambda k: _m([s.get(k) for s in st])  # noqa: E731
                print(f"| {size} | {beta} | {arm} | {it} | {f('label_accuracy'):.3f} | {f('chosen_longer'):.2f} | "
                      f"{f('flagged_share'):.2f} | {f('heldout_accuracy'):.3f} | {f('response_length'):.2f} | "
                      f"{f('kl'):.2f} | {f('gold_reward'):.3f} | {f('gold_reward_lc'):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "spa.yaml"))
    ap.add_argument("--store", required=True, help="JSON-lines file of finished runs (appended; resumable)")
    ap.add_argument("--sizes", default="S,M,L")
    ap.add_argument("--betas", default="0.1,0.5")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="print the tables of the stored runs and exit")
    ap.add_argument("--also", action="append", default=[], metavar="JSONL",
                    help="more stores to read (runs made in parallel into their own files)")
    args = ap.parse_args()
    store = Path(args.store)
    if not args.report:
        store.parent.mkdir(parents=True, exist_ok=True)
        arms = [a for a in args.arms.split(",") if a]
        unknown = set(arms) - set(ARMS)
        if unknown:
            raise SystemExit(f"unknown arms {sorted(unknown)}; choose from {', '.join(ARMS)}")
        betas = [float(b) for b in args.betas.split(",")]
        done = {k: r["steps"] for k, r in load(store, *map(Path, args.also)).items()}
        units = [(size, seed) for seed in range(args.seeds) for size in args.sizes.split(",")]
        cache = os.environ.get("PREFDISCO_CACHE")
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = {pool.submit(run_unit, args.config, size, seed, betas, arms, done, cache): (size, seed)
                       for size, seed in units}
            for fut in as_completed(futures):
                new = [r for r in fut.result() if r["key"] not in done]
                with store.open("a") as fh:
                    for r in new:
                        fh.write(json.dumps(r, default=str) + "\n")
                for r in new:
                    print(f"  {r['key']:24s} gold {r['final']:.3f} KL {r['kl']:6.2f} len {r['length']:.2f} "
                          f"({r['wall_s']:.0f}s, {time.perf_counter() - t0:.0f}s elapsed)", flush=True)
    report(load(store, *map(Path, args.also)))


if __name__ == "__main__":
    main()
