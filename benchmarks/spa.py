"""SPA at small scale: does self-labelled data beat DPO on the gold seed alone?

    .venv/bin/python benchmarks/spa.py                       # configs/spa.yaml, seeds 0,1,2
    .venv/bin/python benchmarks/spa.py --seeds 5 --json out.json
    .venv/bin/python benchmarks/spa.py --variants spa,seed_only_long --seeds 3

Variants (same seed => same pi_init, same gold seed, same evaluation prompts):
  seed_only       DPO on the gold seed only (= stage 0 of every loop; the paper's "DPO on seed")
  seed_only_long  DPO on the gold seed for as many steps as the whole SPA run (more compute, same data)
  spa             SPA: implicit-reward self-labels + noise-aware refinement with DND
  spa_no_refine   the same loop without refinement (ablation)
  spa_no_dnd      refinement on, confidence from the current model (no extrapolation) (ablation)
  gold_loop       the same loop labelled by the gold reward (oracle: the "100 % labels" analogue)

Printed: final gold reward / KL / win rate per variant (mean +- seed-to-seed s.e.), the paired
difference to seed-only DPO, per-iteration label accuracy of the self-annotation, and how well
the refinement's low-confidence flags find wrong labels.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from statistics import mean, stdev

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALL = ("seed_only", "seed_only_long", "spa", "spa_no_refine", "spa_no_dnd", "gold_loop")


def _se(xs: list[float]) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan


def _m(xs: list[float]) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return mean(xs) if xs else math.nan


def variant_config(base, name: str, seed: int, spa_steps: int | None):
    cfg = copy.deepcopy(base)
    cfg.seed = seed
    cfg.out_dir = None
    if name == "spa_no_refine":
        cfg.refinement.enabled = False
    elif name == "spa_no_dnd":
        cfg.refinement.dnd = False
    elif name == "gold_loop":
        cfg.judge.kind = "gold"
    elif name == "seed_only_long":
        cfg.data.prompts_per_iteration = []
        cfg.train.seed_epochs = spa_steps * cfg.train.batch_size / cfg.data.seed_pairs
    return cfg


def apply_override(cfg, item: str):
    """``a.b.c=value`` on the config's dict form, re-validated through the loader."""
    import yaml

    from preference_data.spa.config import spa_config_from_dict, spa_config_to_dict

    path, _, value = item.partition("=")
    data = spa_config_to_dict(cfg)
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = yaml.safe_load(value)
    return spa_config_from_dict(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "spa.yaml"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--variants", default="seed_only,seed_only_long,spa,spa_no_refine,spa_no_dnd,gold_loop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", dest="json_out", default=None, help="also write every number to this file")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                    help="override a config value, e.g. --set reference.model.n_embd=128 (YAML value)")
    args = ap.parse_args()

    import torch

    from preference_data.spa.config import load_spa_config
    from preference_data.spa.pipeline import run_spa

    torch.set_num_threads(args.threads)
    base = load_spa_config(args.config)
    for item in args.overrides:
        base = apply_override(base, item)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(ALL)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {ALL}")
    print(f"task {base.task.name}: seed {base.data.seed_pairs} gold pairs + prompts "
          f"{base.data.prompts_per_iteration} -> {100 * base.data.gold_fraction:.1f} % gold; "
          f"beta {base.train.beta}, loss {base.train.loss}, seeds 0..{args.seeds - 1}, "
          f"model {base.reference.model}, lr {base.train.lr}", flush=True)
    rows: dict[str, list[dict]] = {v: [] for v in variants}
    need_spa = any(v in variants for v in ("seed_only", "seed_only_long"))
    for seed in range(args.seeds):
        spa_steps = None
        order = (["spa"] if need_spa or "spa" in variants else []) + [v for v in variants if v != "spa"]
        for name in order:
            if name == "seed_only":
                continue
            t0 = time.perf_counter()
            res = run_spa(variant_config(base, name, seed, spa_steps), device=args.device)
            row = {"seed": seed, "final": res.final.gold_reward, "kl": res.final.kl,
                   "win": res.final.win_rate, "ref": res.reference_reward,
                   "steps": sum(s.steps for s in res.stages),
                   "stages": [{k: getattr(s, k) for k in (
                       "iteration", "pairs", "new_pairs", "dropped_identical", "label_accuracy",
                       "label_ties", "mean_label_prob", "flagged_share", "flagged_label_accuracy",
                       "unflagged_label_accuracy", "gold_reward", "kl", "win_rate", "steps", "flags")}
                       for s in res.stages],
                   "wall_s": time.perf_counter() - t0}
            if name == "spa":
                spa_steps = row["steps"]
                if "seed_only" in variants:
                    s0 = res.stages[0]
                    rows["seed_only"].append({"seed": seed, "final": s0.gold_reward, "kl": s0.kl,
                                              "win": s0.win_rate, "ref": res.reference_reward,
                                              "steps": s0.steps, "stages": row["stages"][:1], "wall_s": 0.0})
                if "spa" not in variants:
                    continue
            rows[name].append(row)
            print(f"  seed {seed} {name:15s} gold {row['final']:.3f} KL {row['kl']:6.2f} "
                  f"steps {row['steps']:4d} ({row['wall_s']:.0f}s) "
                  + " ".join(f"it{s['iteration']}:acc={s['label_accuracy']:.2f}/gold={s['gold_reward']:.2f}"
                             for s in row["stages"]), flush=True)
    report(rows, base)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1, default=str))


def report(rows: dict[str, list[dict]], base) -> None:
    print("\n## Final policy (mean +- seed-to-seed s.e.)")
    print("| variant | gold reward | KL to pi_init | win rate vs pi_init | steps | n |")
    print("|---|---|---|---|---|---|")
    ref = _m([r["ref"] for rs in rows.values() for r in rs])
    print(f"| pi_init (SFT) | {ref:.3f} | 0 | 0.5 | 0 | |")
    for name, rs in rows.items():
        if not rs:
            continue
        g, k, w = ([r[key] for r in rs] for key in ("final", "kl", "win"))
        print(f"| {name} | {_m(g):.3f} +- {_se(g):.3f} | {_m(k):.2f} +- {_se(k):.2f} | "
              f"{_m(w):.3f} +- {_se(w):.3f} | {_m([r['steps'] for r in rs]):.0f} | {len(rs)} |")
    base_rows = {r["seed"]: r for r in rows.get("seed_only", [])}
    if base_rows:
        print("\n## Paired difference in final gold reward vs seed-only DPO (same seeds)")
        for name, rs in rows.items():
            if name == "seed_only" or not rs:
                continue
            d = [r["final"] - base_rows[r["seed"]]["final"] for r in rs if r["seed"] in base_rows]
            se_d = _se(d)
            verdict = "beats seed-only by more than 1 s.e." if _m(d) > (se_d if math.isfinite(se_d) else 0) else "does NOT clear 1 s.e."
            print(f"- {name}: {_m(d):+.3f} +- {se_d:.3f} ({verdict}; per seed {', '.join(f'{x:+.3f}' for x in d)})")
    print("\n## Self-annotation per iteration (mean over seeds)")
    print("| variant | iteration | new pairs | identical dropped | label accuracy vs gold | ties | "
          "flagged share | acc. flagged | acc. unflagged | gold reward after | KL after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("spa", "spa_no_refine", "spa_no_dnd", "gold_loop"):
        rs = rows.get(name) or []
        if not rs:
            continue
        for it in range(len(rs[0]["stages"])):
            st = [r["stages"][it] for r in rs if len(r["stages"]) > it]
            f = lambda key: _m([s[key] for s in st if s[key] is not None])  # noqa: E731
            print(f"| {name} | {it} | {f('new_pairs'):.0f} | {f('dropped_identical'):.0f} | "
                  f"{f('label_accuracy'):.3f} +- {_se([s['label_accuracy'] for s in st]):.3f} | "
                  f"{f('label_ties'):.0f} | {f('flagged_share'):.3f} | {f('flagged_label_accuracy'):.3f} | "
                  f"{f('unflagged_label_accuracy'):.3f} | {f('gold_reward'):.3f} | {f('kl'):.2f} |")


if __name__ == "__main__":
    main()
