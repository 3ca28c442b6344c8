"""Regime search for the rediscovery benchmark: where does a loss the search is NOT given beat tuned DPO?

For each candidate regime (a calibrated_lm suite group: flip rate, size of the preference set,
epochs, learning rate) this scores DPO and every held-back library loss at each beta of a sweep on
the FITNESS seeds, all runs of one loss in one vectorised pass. Tuned DPO = DPO at the beta with the
best mean score over the fitness seeds; each held-back loss is tuned the same way, and the regime's
*leader* is the held-back loss with the best tuned fitness score. Only then is the leader checked on
DISJOINT held-out seeds against tuned DPO, each at its own tuned beta, paired by seed (common random
numbers: same reference, pairs, flipped labels and sampling noise), with the paired s.e.

Pre-registered rule (benchmarks/results/rediscovery-regimes-cpu2-2026-12-02.md, committed before any
held-out number was looked at): a regime QUALIFIES when its leader beats tuned DPO on the held-out
seeds by more than 3 paired s.e. The leader and both betas are fixed by the fitness seeds alone.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rediscovery_regimes.py --out benchmarks/results/rediscovery-regimes.md
    ... --regimes flip30_small --losses dpo,cdpo,robust        # a slice

Scores are cached in ``--store`` (JSON, one entry per regime x split x loss x betas), so an
interrupted run resumes without retraining.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START_SET = ("dpo", "hinge", "ipo", "kto_pair")     # DiscoPOP's start set: what the search is given
HELD_BACK = ("cdpo", "robust", "sppo_hard", "nca_pair", "bco_pair", "apo_zero", "exo_pair", "padll")
BETAS = (0.1, 0.3, 1.0, 3.0)
BETAS_EXTRA = (10.0,)   # added after DPO tuned to the edge (3) in clean_tiny: scored as a second pass
FITNESS_SEEDS = (0, 1, 2, 3)
HELDOUT_SEEDS = tuple(range(1000, 1008))
CONFIRM_SEEDS = tuple(range(1008, 1016))   # a qualifying comparison is repeated once here (never searched)
QUALIFY_AT = 3.0

# The calibrated tier's model, SFT and data sections (their cached references are reused).
BASE = {"model": {"n_layer": 2, "n_embd": 32, "n_head": 4},
        "sft": {"steps": 300, "batch_size": 64, "lr": 3.0e-3},
        "data": {"train_pairs": 2048, "heldout_pairs": 256, "eval_prompts": 512}}
TRAIN = {"pairs": 1024, "epochs": 4, "batch_size": 16, "lr": 3.0e-4, "warmup": 0.1, "decay": True,
         "eval_prompts": 256}

# name -> (flip rate, train overrides, why)
REGIMES: dict[str, tuple[float, dict[str, Any], str]] = {
    # Calibration fact c (second pass: 256 pairs, 32 epochs at lr 3e-4) found cDPO +0.04 +- 0.03 over
    # DPO at 20 % flips and DPO's KL 3-5x cDPO's. The same lr x steps in a quarter of the steps
    # (8 epochs at lr 1.2e-3) keeps a regime cheap enough for a search fitness.
    "flip20_fast": (0.2, {"pairs": 256, "epochs": 8, "lr": 1.2e-3}, "20 % flips, small set, overfitting fast"),
    "flip30_fast": (0.3, {"pairs": 256, "epochs": 8, "lr": 1.2e-3}, "30 % flips, small set, overfitting fast"),
    "flip40_fast": (0.4, {"pairs": 256, "epochs": 8, "lr": 1.2e-3}, "40 % flips: near-chance labels"),
    "flip30_small": (0.3, {"pairs": 256, "epochs": 32}, "30 % flips, fact c's schedule (4x the steps)"),
    "clean_tiny": (0.0, {"pairs": 128, "epochs": 16, "lr": 1.2e-3}, "clean labels, tiny set: margins run away"),
}


def suite_for(regime: str, seeds: tuple[int, ...], betas: tuple[float, ...]) -> Any:
    from evaluators.suites import suite_from_dict

    noise, train, why = REGIMES[regime]
    return suite_from_dict({
        "name": f"regime_{regime}", "description": why,
        "scoring": {"kl_weight": 0.25, "failure_score": -0.5, "beta_aggregate": "mean"},
        "groups": [{"tier": "calibrated_lm", "task": "sentiment", "task_params": {"length": 4},
                    "seeds": list(seeds), "noise": [noise], "betas": list(betas), "kl_budget": 1.0,
                    **BASE, "train": {**TRAIN, **train}}]})


class Store:
    """JSON cache of SuiteResults keyed by regime/split/loss/betas (resume without retraining)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, regime: str, split: str, loss: str, betas: tuple[float, ...]) -> Any:
        from evaluators.api import evaluate_loss
        from evaluators.results import SuiteResult

        key = f"{regime}|{split}|{loss}|{','.join(map(str, betas))}"
        if key not in self.data:
            seeds = {"fitness": FITNESS_SEEDS, "heldout": HELDOUT_SEEDS, "confirm": CONFIRM_SEEDS}[split]
            start = time.perf_counter()
            result = evaluate_loss(loss, suite_for(regime, seeds, betas))
            wall = time.perf_counter() - start
            print(f"  {regime} {split} {loss} betas={betas}: {len(result.runs)} runs {wall:.0f} s "
                  f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
            self.data[key] = result.to_dict()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data))
            tmp.replace(self.path)
        return SuiteResult.from_dict(self.data[key])

    def fitness(self, regime: str, loss: str) -> Any:
        """The loss on the fitness seeds over the whole beta grid (BETAS, then BETAS_EXTRA)."""
        return _merge([self.get(regime, "fitness", loss, BETAS), self.get(regime, "fitness", loss, BETAS_EXTRA)])


def _merge(results: list[Any]) -> Any:
    from dataclasses import replace

    return replace(results[0], runs=[r for res in results for r in res.runs])


def per_beta(result: Any) -> dict[float, list[float]]:
    """beta -> per-seed scores (seed order)."""
    out: dict[float, dict[int, float]] = {}
    for run in result.runs:
        out.setdefault(run.beta, {})[run.seed] = float(run.extra["score"])
    return {b: [v[s] for s in sorted(v)] for b, v in sorted(out.items())}


def tuned(result: Any) -> tuple[float, float, float]:
    """(best beta, its mean score over seeds, its s.e.) -- the beta a user would tune on these seeds."""
    table = per_beta(result)
    beta = max(table, key=lambda b: fmean(table[b]))
    xs = table[beta]
    return beta, fmean(xs), stdev(xs) / math.sqrt(len(xs))


def study(regime: str, losses: tuple[str, ...], store: Store, heldout: bool) -> dict[str, Any]:
    from evaluators.paired import paired_difference
    from evaluators.suites import Scoring

    fit = {loss: store.fitness(regime, loss) for loss in ("dpo", *losses)}
    tune = {loss: tuned(r) for loss, r in fit.items()}
    scoring = Scoring(kl_weight=0.25, failure_score=-0.5, beta_aggregate="mean")
    dpo_beta = tune["dpo"][0]
    dpo_at = fit["dpo"]
    ranked = sorted(losses, key=lambda l: -tune[l][1])
    ranked = [l for l in ranked if l not in START_SET] + [l for l in ranked if l in START_SET]
    # fitness paired difference of each loss at its tuned beta vs DPO at its tuned beta
    fit_rows = []
    for loss in ranked:
        a = _at_beta(fit[loss], tune[loss][0])
        b = _at_beta(dpo_at, dpo_beta)
        pd = paired_difference(a, b, scoring, same_betas=False)
        fit_rows.append((loss, tune[loss][0], tune[loss][1], pd.difference, pd.se))
    out: dict[str, Any] = {"regime": regime, "dpo": tune["dpo"], "fitness": fit_rows,
                           "kl": {l: _kl(fit[l], tune[l][0]) for l in ("dpo", *losses)}}
    if heldout and ranked:
        leader = ranked[0]   # the best held-back loss (start-set losses are listed, never leaders)
        a = store.get(regime, "heldout", leader, (tune[leader][0],))
        b = store.get(regime, "heldout", "dpo", (dpo_beta,))
        pd = paired_difference(a, b, scoring, same_betas=False)
        out["heldout"] = {"leader": leader, "beta": tune[leader][0], "difference": pd.difference,
                          "se": pd.se, "n": pd.n, "z": pd.z, "qualifies": pd.difference > QUALIFY_AT * pd.se,
                          "kl_leader": _kl(a, tune[leader][0]), "kl_dpo": _kl(b, dpo_beta)}
        if out["heldout"]["qualifies"]:
            ca = store.get(regime, "confirm", leader, (tune[leader][0],))
            cb = store.get(regime, "confirm", "dpo", (dpo_beta,))
            cd = paired_difference(ca, cb, scoring, same_betas=False)
            out["confirm"] = {"difference": cd.difference, "se": cd.se, "n": cd.n, "z": cd.z}
    return out


def _at_beta(result: Any, beta: float) -> Any:
    from dataclasses import replace

    return replace(result, runs=[r for r in result.runs if r.beta == beta])


def _kl(result: Any, beta: float) -> float:
    return fmean(r.kl for r in result.runs if r.beta == beta)


def render(studies: list[dict[str, Any]]) -> str:
    lines = ["| regime | flips | train | tuned DPO beta (fitness score) | leader (beta) | leader - DPO fitness "
             "| held-out leader - tuned DPO | z | n | KL leader / DPO (held-out) | qualifies |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in studies:
        noise, train, _ = REGIMES[s["regime"]]
        beta, score, se = s["dpo"]
        lead = s["fitness"][0]
        h = s.get("heldout")
        ho = (f"{h['difference']:+.4f} ± {h['se']:.4f} | {h['z']:+.1f} | {h['n']} | "
              f"{h['kl_leader']:.2f} / {h['kl_dpo']:.2f} | {'YES' if h['qualifies'] else 'no'}") if h else "- | - | - | - | -"
        lines.append(f"| {s['regime']} | {noise} | {train} | {beta} ({score:.4f} ± {se:.4f}) | {lead[0]} ({lead[1]}) "
                     f"| {lead[3]:+.4f} ± {lead[4]:.4f} | {ho} |")
    for s in studies:
        if "confirm" in s:
            c = s["confirm"]
            lines.append(f"\nConfirmation of {s['regime']} on seeds {CONFIRM_SEEDS[0]}-{CONFIRM_SEEDS[-1]} (never searched): "
                         f"{s['heldout']['leader']} - tuned DPO = {c['difference']:+.4f} ± {c['se']:.4f} "
                         f"(z {c['z']:+.1f}, n {c['n']}).")
    lines.append("")
    for s in studies:
        lines.append(f"Fitness ranking, {s['regime']} (each loss at its tuned beta; paired difference vs tuned "
                     f"DPO over {len(FITNESS_SEEDS)} seeds; KL at that beta):\n")
        lines.append("| loss | beta | score | - DPO | KL |\n|---|---|---|---|---|")
        lines.append(f"| dpo | {s['dpo'][0]} | {s['dpo'][1]:.4f} | 0 | {s['kl']['dpo']:.2f} |")
        for loss, beta, score, d, se in s["fitness"]:
            tag = " (start set)" if loss in START_SET else ""
            lines.append(f"| {loss}{tag} | {beta} | {score:.4f} | {d:+.4f} ± {se:.4f} | {s['kl'][loss]:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regimes", default=",".join(REGIMES))
    parser.add_argument("--losses", default=",".join(HELD_BACK + START_SET[1:]),
                        help="losses to score besides DPO (the leader is the best one outside the start set)")
    parser.add_argument("--heldout", action="store_true", help="also check each leader on the held-out seeds")
    parser.add_argument("--store", default="runs/rediscovery-regimes.json")
    parser.add_argument("--out", default=None, help="write the table (markdown) here")
    args = parser.parse_args()
    store = Store(Path(args.store))
    start = time.perf_counter()
    load = os.getloadavg()[0]
    studies = [study(r, tuple(l for l in args.losses.split(",") if l), store, args.heldout)
               for r in args.regimes.split(",")]
    text = render(studies)
    text += (f"\nWall time {time.perf_counter() - start:.0f} s (cached entries cost 0); load average at start "
             f"{load:.1f}, at end {os.getloadavg()[0]:.1f}; 1 torch thread.\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
