"""Fidelity matrix: do the suites rank losses the same way?

Scores the whole loss library plus the fixed variants of ``benchmarks/loss_variants.py`` on
  screen      the bandit screen (evaluators/suites/screen.yaml),
  fitness     the calibrated search fitness (calibrated_fitness.yaml),
  heldout     the calibrated held-out suite (calibrated_heldout.yaml: same task, unseen instances),
  heldout_fresh  the held-out suite on 8 seeds no earlier analysis had seen (confirms a choice made
              after looking at ``heldout``, e.g. the beta aggregation),
  transfer    the negative-sentiment transfer suite (calibrated_transfer.yaml),
  lm_S, lm_M, lm_L  the size ladder: calibrated_quickstart's regime on 8 seeds with a 4.6k / 27.6k
              (the search tier's model) / 154k-parameter GPT-2,
and derives, from the fitness runs (their instances are subsets of fitness's; a run's numbers do
not depend on which runs it was trained with), the quickstart suite and the calibrated screen.
A seed's scores over the beta sweep are combined as each suite's ``scoring.beta_aggregate`` says
(every calibrated suite: mean, since benchmarks/results/fidelity-preregistration-2026-12-01.md).
Then prints Spearman's rho and Kendall's tau for every pair of suites with 95 % bootstrap
confidence intervals (losses resampled with replacement), the per-candidate cost of every suite,
and the smallest difference from DPO each suite detects at 2 paired standard errors.

    .venv/bin/python benchmarks/fidelity.py --out benchmarks/results/fidelity-cpu2-DATE.md
    .venv/bin/python benchmarks/fidelity.py --losses dpo,ipo,lrml --suites fitness,heldout   # a slice

Scores are cached in ``--store`` (JSON, one entry per suite x loss) so an interrupted run resumes.
``--reuse`` names stores of earlier passes: a run's numbers do not depend on which runs it was
trained with (same seed, noise, beta -> same numbers), so the instances such an entry already has
are taken from it and only the others are trained (runs of instances the suite no longer has are
dropped). The cost column then scales the wall time per run trained in this pass to the suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))  # after ROOT: benchmarks/evaluators.py must not shadow the package

LADDER = {"lm_S": {"n_layer": 2, "n_embd": 12, "n_head": 2},     # ~4.6k parameters
          "lm_M": {"n_layer": 2, "n_embd": 32, "n_head": 4},     # ~27.6k: the search tier's model
          "lm_L": {"n_layer": 3, "n_embd": 64, "n_head": 4}}     # ~154k parameters (33x S)
LADDER_SEEDS = tuple(range(8))   # every rung on 8 seeds of the quickstart regime (seeds 0-3 of lm_M are fitness runs)
REUSE_FROM = {"lm_M": "fitness"}   # a rung whose instances an earlier suite's runs already have
RUN_SUITES = ("screen", "fitness", "heldout", "heldout_fresh", "transfer", "lm_S", "lm_M", "lm_L")
FRESH_SEEDS = tuple(range(1008, 1016))   # heldout_fresh: held-out seeds no analysis had seen (pre-registered)
DERIVED = {"quickstart": "calibrated_quickstart", "calibrated_screen": "calibrated_screen"}
ORDER = ("screen", "calibrated_screen", "fitness", "heldout", "heldout_fresh", "transfer", "quickstart",
         "lm_S", "lm_M", "lm_L")


def suites() -> dict[str, Any]:
    from dataclasses import replace

    from evaluators import load_suite

    out = {"screen": load_suite("screen"), "fitness": load_suite("calibrated_fitness"),
           "heldout": load_suite("calibrated_heldout"), "transfer": load_suite("calibrated_transfer")}
    held = out["heldout"]
    out["heldout_fresh"] = replace(held, name="calibrated_heldout[fresh seeds]",
                                   groups=tuple(replace(g, seeds=FRESH_SEEDS) for g in held.groups))
    quick = load_suite("calibrated_quickstart")
    for name, model in LADDER.items():
        groups = tuple(replace(g, seeds=LADDER_SEEDS, config={**g.config, "model": dict(model)}) for g in quick.groups)
        out[name] = replace(quick, name=f"calibrated_quickstart[{name}]", groups=groups)
    return out


def loss_names() -> list[str]:
    from candidate_losses import list_losses
    from loss_variants import VARIANTS

    aliased = {fn for fn, kwargs in VARIANTS.values() if not kwargs}   # a variant that IS a library loss
    return [s.name for s in list_losses() if s.fn not in aliased] + list(VARIANTS)


def reusable(old: dict[str, Any] | None, suite: Any) -> list[dict[str, Any]]:
    """Runs of earlier entries at instances of a one-group suite (one run per instance)."""
    if not old:
        return []
    (group,) = suite.groups
    wanted = {(s, n, b) for s in group.seeds for n in group.noises for b in group.betas}
    have = {(r["seed"], r["noise"], r["beta"]): r for r in old["runs"]}
    return [have[k] for k in sorted(wanted) if k in have]


def missing_groups(suite: Any, old: list[dict[str, Any]]) -> Any:
    """The suite cut to the instances ``old`` lacks: one group per set of missing (noise, beta) of a seed."""
    from dataclasses import replace

    (group,) = suite.groups
    done = {(r["seed"], r["noise"], r["beta"]) for r in old}
    by_missing: dict[tuple, list[int]] = defaultdict(list)
    for s in group.seeds:
        todo = tuple((n, b) for n in group.noises for b in group.betas if (s, n, b) not in done)
        if todo:
            by_missing[todo].append(s)
    groups = []
    for todo, seeds in by_missing.items():
        noises = tuple(sorted({n for n, _ in todo}))
        betas = tuple(sorted({b for _, b in todo}))
        assert len(todo) == len(noises) * len(betas), "missing instances do not form a grid"
        groups.append(replace(group, seeds=tuple(seeds), noises=noises, betas=betas))
    return replace(suite, groups=tuple(groups))


def old_params(reuse: dict[str, Any] | None, key: str) -> int | None:
    return ((reuse or {}).get(key) or {}).get("n_params")


def score(store: dict[str, Any], path: Path, suite_name: str, suite: Any, loss: str, cache: str,
          reuse: dict[str, Any] | None = None) -> dict[str, Any]:
    key = f"{suite_name}/{loss}"
    if key in store:
        return store[key]
    from evaluators import evaluate_loss
    from loss_variants import resolve

    old = reusable((reuse or {}).get(key), suite)
    if suite_name in REUSE_FROM:   # e.g. rung M's seeds 0-3 are fitness runs
        have = {(r["seed"], r["noise"], r["beta"]) for r in old}
        old += [r for r in reusable((reuse or {}).get(f"{REUSE_FROM[suite_name]}/{loss}"), suite)
                if (r["seed"], r["noise"], r["beta"]) not in have]
    todo = missing_groups(suite, old)
    fn, kwargs = resolve(loss)
    start = time.perf_counter()
    fresh = (evaluate_loss(fn, todo, loss_kwargs=kwargs, loss_name=loss, cache_dir=cache).runs
             if todo.groups else [])
    runs = old + [{"seed": r.seed, "beta": r.beta, "noise": r.noise, "score": r.extra["score"],
                   "gold_reward": r.gold_reward, "kl": r.kl, "flags": r.flags} for r in fresh]
    seeds = list(per_seed(runs, combine=combiner(suite)).values())
    entry = {"fitness": statistics.fmean(seeds), "fitness_se": statistics.stdev(seeds) / math.sqrt(len(seeds)),
             "wall_s": time.perf_counter() - start, "runs_trained": len(fresh), "runs_reused": len(old),
             "load": os.getloadavg()[0], "n_params": fresh[0].extra.get("n_params") if fresh else old_params(reuse, key),
             "runs": runs}
    store[key] = entry
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(store))
    os.replace(tmp, path)
    print(f"  {key:<40} {entry['fitness']:8.4f}  {entry['wall_s']:6.1f} s for {len(fresh)} runs "
          f"({len(old)} reused) (load {entry['load']:.1f})", flush=True)
    return entry


def combiner(suite: Any) -> Any:
    """How a suite combines a seed's scores over its beta sweep (its ``scoring.beta_aggregate``)."""
    return max if suite.scoring.beta_aggregate == "max" else statistics.fmean


def per_seed(runs: list[dict[str, Any]], keep: Any = None, combine: Any = statistics.fmean) -> dict[int, float]:
    """Seed -> its scores over the beta sweep combined by ``combine`` (a suite's beta_aggregate)."""
    by: dict[int, list[float]] = defaultdict(list)
    for r in runs:
        if keep is None or keep(r):
            by[r["seed"]].append(r["score"])
    return {s: combine(v) for s, v in by.items()}


def derived_entry(fitness_entry: dict[str, Any], suite_name: str) -> dict[str, Any]:
    """Score of a suite whose instances are a subset of calibrated_fitness's, from the fitness runs."""
    from evaluators import load_suite

    suite = load_suite(suite_name)
    wanted = {(s.seed, s.noise, s.beta) for s in suite.instances()}
    runs = [r for r in fitness_entry["runs"] if (r["seed"], r["noise"], r["beta"]) in wanted]
    assert len(runs) == len(wanted), f"{suite_name} is not a subset of calibrated_fitness"
    seeds = per_seed(runs, combine=combiner(suite))
    values = list(seeds.values())
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return {"fitness": statistics.fmean(values), "fitness_se": se, "runs": runs}


def correlations(table: dict[str, dict[str, float]], names: list[str], losses: list[str], n_boot: int,
                 ) -> list[tuple[str, str, float, tuple[float, float], float, tuple[float, float]]]:
    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    rng = np.random.default_rng(0)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            x = np.array([table[a][l] for l in losses])
            y = np.array([table[b][l] for l in losses])
            rho = float(spearmanr(x, y).statistic)
            tau = float(kendalltau(x, y).statistic)
            boots_r, boots_t = [], []
            for _ in range(n_boot):
                idx = rng.integers(0, len(losses), len(losses))
                if len(set(x[idx])) < 2 or len(set(y[idx])) < 2:
                    continue
                boots_r.append(spearmanr(x[idx], y[idx]).statistic)
                boots_t.append(kendalltau(x[idx], y[idx]).statistic)
            ci_r = tuple(float(v) for v in np.nanpercentile(boots_r, [2.5, 97.5]))
            ci_t = tuple(float(v) for v in np.nanpercentile(boots_t, [2.5, 97.5]))
            rows.append((a, b, rho, ci_r, tau, ci_t))
    return rows


def detectable(entries: dict[str, dict[str, Any]], combine: Any, reference: str = "dpo", keep: Any = None,
               n_seeds: int | None = None) -> tuple[float, int]:
    """2 x the paired s.e. of (loss - reference) per-seed scores for a typical loss (the median over
    losses; unstable losses have far larger ones): the smallest difference from DPO the suite
    detects (common random numbers: same seeds, data, labels, sampling noise). ``keep`` filters
    runs and ``n_seeds`` sets the suite's seed count, so a one-seed suite can borrow the
    seed-to-seed variance of a larger suite with the same runs."""
    base = per_seed(entries[reference]["runs"], keep, combine)
    sds = []
    for loss, e in entries.items():
        if loss == reference:
            continue
        mine = per_seed(e["runs"], keep, combine)
        diffs = [mine[s] - base[s] for s in base]
        if len(diffs) > 1:
            sds.append(statistics.stdev(diffs))
    n = n_seeds or len(base)
    return (2 * statistics.median(sds) / math.sqrt(n) if sds else math.nan), n


def reliability(entries: dict[str, dict[str, Any]], losses: list[str], combine: Any) -> float:
    """Seed split-half reliability of a suite's ranking, Spearman-Brown corrected: the Spearman rho
    between the scores of its first and second half of seeds (per-seed beta sweep combined by ``combine``),
    r_full = 2 r / (1 + r). Two suites can agree at most about sqrt(rel_A * rel_B) (noise ceiling)."""
    from scipy.stats import spearmanr

    halves: list[list[float]] = [[], []]
    for loss in losses:
        seeds = per_seed(entries[loss]["runs"], combine=combine)
        order = sorted(seeds)
        if len(order) < 2:
            return math.nan
        k = len(order) // 2
        halves[0].append(statistics.fmean(seeds[s] for s in order[:k]))
        halves[1].append(statistics.fmean(seeds[s] for s in order[k:2 * k]))
    r = float(spearmanr(halves[0], halves[1]).statistic)
    return 2 * r / (1 + r) if r > -1 else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(RUN_SUITES))
    parser.add_argument("--losses", default="", help="comma-separated (default: library + variants)")
    parser.add_argument("--cache-dir", default=os.environ.get("PREFDISCO_CACHE", str(Path.home() / ".cache/prefdisco")))
    parser.add_argument("--store", default=str(ROOT / "benchmarks/results/fidelity-scores.json"))
    parser.add_argument("--reuse", default="", help="comma-separated score stores of earlier passes whose runs may be reused")
    parser.add_argument("--out", default="", help="also write the markdown report here")
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    store_path = Path(args.store)
    store: dict[str, Any] = json.loads(store_path.read_text()) if store_path.exists() else {}
    reuse: dict[str, Any] = {}   # key -> {"runs": union of the earlier stores' runs, "n_params"}
    for path in filter(None, args.reuse.split(",")):
        for key, e in json.loads(Path(path).read_text()).items():
            merged = reuse.setdefault(key, {"runs": [], "n_params": e.get("n_params")})
            seen = {(r["seed"], r["noise"], r["beta"]) for r in merged["runs"]}
            merged["runs"] += [r for r in e["runs"] if (r["seed"], r["noise"], r["beta"]) not in seen]
    losses = [l for l in args.losses.split(",") if l] or loss_names()
    wanted = [s for s in args.suites.split(",") if s]
    all_suites = suites()
    start = time.perf_counter()
    header = (f"# Fidelity matrix ({len(losses)} losses)\n\nCommand: `python {' '.join(sys.argv)}`  \n"
              f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} CPUs, 1 torch thread; "
              f"load average at start {os.getloadavg()[0]:.1f}\n")
    print(header, flush=True)
    for name in wanted:
        print(f"## scoring on {name}", flush=True)
        for loss in losses:
            score(store, store_path, name, all_suites[name], loss, args.cache_dir, reuse)
    entries = {name: {l: store[f"{name}/{l}"] for l in losses} for name in wanted}
    if "fitness" in entries:
        for short, suite_name in DERIVED.items():
            entries[short] = {l: derived_entry(e, suite_name) for l, e in entries["fitness"].items()}
    names = [n for n in ORDER if n in entries]
    from evaluators import load_suite

    combine = {n: combiner(all_suites[n] if n in all_suites else load_suite(DERIVED[n])) for n in names}
    table = {n: {l: statistics.fmean(per_seed(entries[n][l]["runs"], combine=combine[n]).values()) for l in losses}
             for n in names}

    out = [header]
    out.append("## Suites\n\n| suite | what | params (LM) | s per candidate (mean wall) | detectable vs DPO (2 paired s.e., "
               "typical loss) |"
               "\n|---|---|---|---|---|")
    what = {"screen": "bandit, 3 seeds x 2 betas", "calibrated_screen": "calibrated_lm, 1 run (from fitness runs)",
            "quickstart": "calibrated_lm, 4 seeds x 2 betas (from fitness runs)",
            "fitness": "calibrated_lm, 4 seeds x 3 betas", "heldout": "calibrated_lm, 8 other seeds x 2 other betas, 20 % flips",
            "transfer": "calibrated_lm negative sentiment, 3 seeds x 3 betas, 20 % flips",
            "heldout_fresh": f"calibrated_heldout on seeds {FRESH_SEEDS[0]}-{FRESH_SEEDS[-1]} instead",
            **{n: f"quickstart on seeds 0-{len(LADDER_SEEDS) - 1} with GPT-2 " + json.dumps(m) for n, m in LADDER.items()}}
    for n in names:
        walls = [e.get("wall_s") for e in entries[n].values() if e.get("wall_s") is not None]
        if any(e.get("runs_reused") for e in entries[n].values()):   # per run trained, times the suite's runs
            walls = [e["wall_s"] / e["runs_trained"] * len(e["runs"]) for e in entries[n].values()
                     if e.get("runs_trained")]
        params = next((e.get("n_params") for e in entries[n].values() if e.get("n_params")), None)
        if n == "calibrated_screen":   # one seed: seed-to-seed variance of the fitness runs at its beta
            from evaluators import load_suite

            betas = set(load_suite(DERIVED[n]).groups[0].betas)
            det, k = detectable(entries["fitness"], combine[n], keep=lambda r: r["beta"] in betas, n_seeds=1)
        else:
            det, k = detectable(entries[n], combine[n])
        cost = f"{statistics.fmean(walls):.1f}" if walls else "see benchmarks/lm_speed.py"
        out.append(f"| {n} | {what.get(n, '')} | {params or '-'} | {cost} | "
                   f"{'n/a' if math.isnan(det) else f'{det:.4f} ({k} seed' + ('s)' if k > 1 else ')')} |")
    rel = {n: reliability(entries[n], losses, combine[n]) for n in names}
    out.append("\nSeed split-half reliability of each suite's ranking (Spearman-Brown): "
               + ", ".join(f"{n} {v:.2f}" for n, v in rel.items() if not math.isnan(v))
               + ". Two suites cannot agree beyond about sqrt(rel_A x rel_B): the noise ceiling below.")
    out.append("\n## Rank correlations (95 % bootstrap CI over losses)\n\n| suite A | suite B | Spearman rho | "
               "Kendall tau | noise ceiling |\n|---|---|---|---|---|")
    for a, b, rho, ci_r, tau, ci_t in correlations(table, names, losses, args.bootstrap):
        ceiling = math.sqrt(rel[a] * rel[b]) if rel[a] > 0 and rel[b] > 0 else math.nan
        out.append(f"| {a} | {b} | {rho:.2f} [{ci_r[0]:.2f}, {ci_r[1]:.2f}] | {tau:.2f} [{ci_t[0]:.2f}, {ci_t[1]:.2f}] | "
                   f"{'-' if math.isnan(ceiling) else f'{ceiling:.2f}'} |")
    if "fitness" in entries and "heldout" in entries:   # are a few unstable losses the whole story?
        from scipy.stats import spearmanr

        def floored(n: str, l: str) -> bool:
            return any(v <= -0.5 + 1e-9 for v in per_seed(entries[n][l]["runs"], combine=combine[n]).values())

        stable = [l for l in losses if not floored("fitness", l) and not floored("heldout", l)]
        rho = float(spearmanr([table["fitness"][l] for l in stable], [table["heldout"][l] for l in stable]).statistic)
        out.append(f"\nfitness vs heldout over the {len(stable)} losses with no seed at the failure floor (-0.5) on "
                   f"either suite: Spearman rho {rho:.2f}; the other {len(losses) - len(stable)}: "
                   f"{', '.join(sorted(set(losses) - set(stable)))}.")
    lm = [n for n in names if n not in ("screen", "calibrated_screen")]
    if len(lm) > 1:   # the same runs scored with beta_aggregate: max (the suites' definition until 2026-12-01)
        max_table = {n: {l: statistics.fmean(per_seed(entries[n][l]["runs"], combine=max).values())
                         for l in losses} for n in lm}
        rel_max = {n: reliability(entries[n], losses, combine=max) for n in lm}
        out.append("\n## The same runs scored with beta_aggregate: max (the previous definition; for comparison)\n\n"
                   "Split-half reliability: " + ", ".join(f"{n} {v:.2f}" for n, v in rel_max.items()) +
                   "\n\n| suite A | suite B | Spearman rho | Kendall tau |\n|---|---|---|---|")
        for a, b, rho, ci_r, tau, ci_t in correlations(max_table, lm, losses, args.bootstrap):
            out.append(f"| {a} | {b} | {rho:.2f} [{ci_r[0]:.2f}, {ci_r[1]:.2f}] | {tau:.2f} [{ci_t[0]:.2f}, {ci_t[1]:.2f}] |")
    out.append("\n## Scores (fitness of each loss on each suite)\n\n| loss | " + " | ".join(names) + " |\n|---|"
               + "---|" * len(names))
    for l in sorted(losses, key=lambda l: -table.get("fitness", table[names[0]])[l]):
        out.append(f"| {l} | " + " | ".join(f"{table[n][l]:.4f}" for n in names) + " |")
    out.append(f"\nWall time {time.perf_counter() - start:.0f} s; load average at end {os.getloadavg()[0]:.1f}.")
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
