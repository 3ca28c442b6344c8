"""Calibration report of the calibrated_lm tier: does it reproduce what is published about
preference optimisation (/work/shared/reference/calibration-facts.md)?

    .venv/bin/python benchmarks/calibration.py                     # all facts, 5 seeds (~40 min on 2 shared cores)
    .venv/bin/python benchmarks/calibration.py --facts a,c --seeds 3 --out /tmp/cal.md

The regime is read from a suite (default ``calibrated_fitness``: its first group's model, SFT, data
and training settings), so the report certifies exactly what the search runs on. Each fact is an
experiment on the positive fixed-length sentiment task (the IMDb analogue) with its own beta grid,
label model and seeds; every comparison is paired (same seeds, pairs, labels and sampling noise:
common random numbers) and reported with its standard error over seeds. The verdict rules below
were fixed before the final numbers were run (see the git history of this file) and are printed
with the results.

Pre-registered rules ("reproduced" means all of the fact's rules hold; s.e. = paired standard
error over seeds of the difference in question; "2 s.e." uses that s.e.):
  a. DPO, beta in {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}, labels Bradley-Terry at the task's
     temperature. a1: KL(0.01) - KL(1) > 2 s.e. and no adjacent pair of betas has KL significantly
     increasing with beta (difference < -2 s.e.). a2: the same for gold reward.
  b. Deterministic preferences (label temperature 0), constant learning rate, KL measured after
     each doubling of training. b1: DPO's KL grows over the last doubling of training by more than
     2 s.e. and by more than 10 % (at every DPO beta). b2: for every IPO tau, KL grows over the last
     doubling by less than 10 % or by less than 2 s.e. b3: IPO's final KL decreases with tau (each
     adjacent pair by more than 2 s.e.).
     Second pass (``--b-tier bandit``, the default): Azar et al.'s own setting, the bandit tier
     (evaluators/bandit.py: 256 prompts x 16 responses, 4096 pairs drawn from the reference, tabular
     softmax policy, exact KL and reward -- no sampling noise), labels deterministic in the gold
     utility (continuous, so the only ties are pairs of a response with itself, which carry no
     gradient), no flips, AdamW at the bandit's constant lr 0.05, batch 64, KL after 125 * 2^k
     steps up to ``--b-steps`` (16000); DPO at beta 0.1 and 1, IPO at tau 0.25, 0.5, 1. Rules b1-b3
     as above, unchanged. (First pass, ``--b-tier lm``: the LM tier, first 256 pairs, 32 epochs; the
     label-temperature-0 labels there coin-flip the many pairs whose 4-word continuations tie on the
     gold reward.)
  c. Flipped labels (20 % and 40 % on top of the Bradley-Terry labels): robust DPO and conservative
     DPO with eps equal to the flip rate vs DPO at the same beta. c1: rDPO's gold reward > DPO's by
     more than 2 s.e. at both flip rates. c2: the same for cDPO.
     Second pass: long enough to overfit the flipped labels -- the first ``--c-pairs`` (256) pairs for
     ``--c-epochs`` (32) epochs in the suite's schedule (first pass: 1024 pairs, 4 epochs), gold
     reward and KL also recorded after 2^k epochs. Rules c1, c2 unchanged, on the final policies;
     c0 (reported, not part of the verdict: does the regime overfit at all?): at 40 % flips DPO's
     final gold reward is below its best checkpoint's by more than 2 s.e.
  d. DiscoPOP's losses over the beta grid of a. The frontier is the upper envelope of gold reward
     vs KL over every (loss, beta) point of d; a point's shortfall is frontier(KL) - reward.
     d1 PFL barely moves: its largest KL over the grid is below DPO's smallest KL over the grid.
     d2 LRML collapses at 0.01: its gain over the reference at beta 0.01 is below a quarter of
        DPO's gain at 0.01 (by more than 2 s.e.); and it is competitive at 0.025-0.25: shortfall
        <= 0.05 at each of those betas.
     d3 DBAQL and CELL degrade at beta >= 0.5: gold reward below DPO's at the same beta by more than
        2 s.e., at 0.5 and at 1.
     d4 DPO, PADLL, AQFL and hinge lie near the frontier: median shortfall over the grid <= 0.05.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))  # after ROOT: benchmarks/evaluators.py must not shadow the package

BETAS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
DISCOPOP = ("dpo", "pfl", "lrml", "dbaql", "cell", "padll", "aqfl", "hinge")
EXTRA_D = ("pfl_on_log_ratio",)    # reported next to d (DiscoPOP's first-written PFL), not judged


def mean_se(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return m, se


def fmt(values: list[float], digits: int = 3) -> str:
    m, se = mean_se(values)
    return f"{m:.{digits}f} ± {se:.{digits}f}"


class Lab:
    """Runs groups of the calibrated tier in the suite's regime, with per-experiment overrides."""

    def __init__(self, suite: str, seeds: int, cache: Path, log: list[str], model: dict[str, int] | None = None) -> None:
        from evaluators import load_suite

        group = load_suite(suite).groups[0]
        self.config = {k: dict(v) for k, v in group.config.items()}
        if model:   # another GPT-2 size in the same regime (e.g. a rung of the fidelity ladder)
            self.config["model"] = dict(model)
        self.task_params = dict(group.task_params)
        self.seeds = list(range(seeds))
        self.cache = cache
        self.log = log
        self.records: list[dict[str, Any]] = []

    def run(self, loss: str, betas: tuple[float, ...], *, noise: float = 0.0, label_temperature: float | None = None,
            train: dict[str, Any] | None = None, kwargs: dict[str, Any] | None = None) -> dict[float, list[Any]]:
        """{beta: [RunResult per seed]} of one loss, all (seed x beta) runs in one vectorised pass."""
        from evaluators.calibrated_lm import run_calibrated_group
        from evaluators.suites import RunSpec
        from loss_variants import resolve

        fn, kw = resolve(loss)
        kw = {**kw, **(kwargs or {})}
        config = {k: dict(v) for k, v in self.config.items()}
        config["train"].update(train or {})
        params = dict(self.task_params)
        if label_temperature is not None:
            params["label_temperature"] = label_temperature
        specs = [RunSpec("calibrated_lm", "sentiment", s, noise, b, 0.0, task_params=params, config=config)
                 for s in self.seeds for b in betas]
        start = time.perf_counter()
        runs = run_calibrated_group(specs, fn, kw, self.cache, None)
        wall = time.perf_counter() - start
        print(f"    {loss}{kw or ''} noise={noise} T={params.get('label_temperature', 'task')} {len(runs)} runs "
              f"{wall:.0f} s (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        out: dict[float, list[Any]] = {b: [] for b in betas}
        for r in runs:
            out[r.beta].append(r)
            self.records.append({"loss": loss, "kwargs": kw, "noise": noise, "T": params.get("label_temperature"),
                                 "train": train or {}, "seed": r.seed, "beta": r.beta, "gold_reward": r.gold_reward,
                                 "kl": r.kl, "accuracy": r.accuracy, "flags": r.flags,
                                 "reference_reward": r.extra["reference_reward"], "trajectory": r.extra["trajectory"]})
        return out


def paired(a: list[Any], b: list[Any], key: str) -> list[float]:
    """Per-seed differences a - b of a RunResult field (runs are aligned by seed)."""
    assert [r.seed for r in a] == [r.seed for r in b]
    return [getattr(x, key) - getattr(y, key) for x, y in zip(a, b)]


def significant(diffs: list[float], sign: float = 1.0) -> bool:
    """Mean difference beyond 2 s.e. in the direction of ``sign``."""
    m, se = mean_se(diffs)
    return sign * m > 2 * se


def verdict(ok: bool) -> str:
    return "REPRODUCED" if ok else "NOT REPRODUCED"


# ---------------------------------------------------------------------------------------- facts --
def fact_a(lab: Lab, out: list[str], cache: dict[str, Any]) -> bool:
    if "dpo" not in cache:
        cache["dpo"] = lab.run("dpo", BETAS)
    dpo = cache["dpo"]
    out.append("\n## a. DPO's reward-KL frontier is monotone in beta\n")
    out.append("| beta | gold reward | KL (nats) | gain over reference |\n|---|---|---|---|")
    for b in BETAS:
        gain = [r.gold_reward - r.extra["reference_reward"] for r in dpo[b]]
        out.append(f"| {b} | {fmt([r.gold_reward for r in dpo[b]])} | {fmt([r.kl for r in dpo[b]], 2)} | {fmt(gain)} |")
    ok = True
    for key, name in (("kl", "a1 KL"), ("gold_reward", "a2 reward")):
        ends = paired(dpo[BETAS[0]], dpo[BETAS[-1]], key)
        inversions = [(lo, hi) for lo, hi in zip(BETAS, BETAS[1:]) if significant(paired(dpo[lo], dpo[hi], key), -1)]
        good = significant(ends) and not inversions
        ok &= good
        m, se = mean_se(ends)
        out.append(f"\n{name}: {key}(0.01) - {key}(1) = {m:.3f} ± {se:.3f}; significant inversions between adjacent "
                   f"betas: {inversions or 'none'} -> {'holds' if good else 'FAILS'}")
    kl = {b: statistics.fmean(r.kl for r in dpo[b]) for b in BETAS}
    out.append(f"\nKL(0.025) / KL(0.5) = {kl[0.025] / kl[0.5]:.1f} (published: roughly 15x)")
    out.append(f"\n**a: {verdict(ok)}**")
    return ok


def growth(series: list[list[float]]) -> tuple[list[float], float]:
    """Per-seed change over the last doubling of training, and that change relative to the level before."""
    diffs = [b - a for a, b in zip(series[-2], series[-1])]
    return diffs, statistics.fmean(diffs) / max(1e-9, statistics.fmean(series[-2]))


def ipo_rules(i_series: dict[Any, list[list[float]]], taus: list[float], out: list[str], *,
              digits: int) -> tuple[bool, bool]:
    """Pre-registered rules b2 (IPO's KL plateaus: < 10 % or insignificant growth over the last
    doubling) and b3 (its final KL falls as tau grows), each with its report line."""
    b2 = True
    for t in taus:
        diffs, rel = growth(i_series[t])
        flat = rel < 0.10 or not significant(diffs)
        b2 &= flat
        out.append(f"b2: IPO tau={t}: {statistics.fmean(diffs):+.{digits}f} ± {mean_se(diffs)[1]:.{digits}f} nats "
                   f"({100 * rel:.{digits - 2}f} %) -> {'plateau' if flat else 'STILL GROWING'}")
    b3 = all(significant([a - b for a, b in zip(i_series[lo][-1], i_series[hi][-1])])
             for lo, hi in zip(taus, taus[1:]))
    out.append(f"b3: IPO's final KL decreases with tau: "
               f"{' > '.join(f'{statistics.fmean(i_series[t][-1]):.{digits}f}' for t in taus)} -> {'holds' if b3 else 'FAILS'}")
    return b2, b3


def fact_b(lab: Lab, out: list[str], pairs: int, epochs: int) -> bool:
    checkpoints = [2 ** k for k in range(int(math.log2(epochs)) + 1)]
    train = {"pairs": pairs, "epochs": epochs, "decay": False, "warmup": 0.0, "eval_epochs": checkpoints}
    taus = (0.1, 0.5, 1.0)
    dpo = lab.run("dpo", (0.1,), label_temperature=0.0, train=train)[0.1]
    ipo = lab.run("ipo", taus, label_temperature=0.0, train=train)
    out.append(f"\n## b. Deterministic preferences: DPO's KL keeps growing, IPO's plateaus at a level set by tau\n")
    out.append(f"Label temperature 0 (ties: coin flips), first {pairs} pairs, constant learning rate, {epochs} "
               "epochs; KL (nats) after each number of epochs:\n")
    out.append("| loss | " + " | ".join(f"epoch {e}" for e in checkpoints) + " |\n|---|" + "---|" * len(checkpoints))

    def row(name: str, runs: list[Any]) -> list[list[float]]:
        series = [[r.extra["trajectory"][i]["kl"] for r in runs] for i in range(len(checkpoints))]
        out.append(f"| {name} | " + " | ".join(fmt(s, 2) for s in series) + " |")
        return series

    d_series = row("DPO beta=0.1", dpo)
    i_series = {t: row(f"IPO tau={t}", ipo[t]) for t in taus}
    d_diff, d_rel = growth(d_series)
    b1 = significant(d_diff) and d_rel > 0.10
    out.append(f"\nb1: DPO's KL over the last doubling: +{statistics.fmean(d_diff):.2f} ± {mean_se(d_diff)[1]:.2f} "
               f"nats ({100 * d_rel:.0f} %) -> {'holds' if b1 else 'FAILS'}")
    b2, b3 = ipo_rules(i_series, taus, out, digits=2)
    ok = b1 and b2 and b3
    out.append(f"\n**b: {verdict(ok)}**")
    return ok


def bandit_kl_trajectories(loss: str, betas: tuple[float, ...], seeds: list[int], steps: int,
                           checkpoints: list[int]) -> dict[float, list[list[tuple[float, float]]]]:
    """{beta: [per seed: [(KL, gold reward) at each checkpoint]]} on the bandit tier with deterministic
    labels. All (seed x beta) runs train together: one logit table per run, the per-run mean loss
    summed (so each run gets exactly its own gradient), per-run gradient-norm clipping, AdamW
    (elementwise, hence per run); each run sees its pairs in the order ``run_bandit`` uses, so
    a checkpoint equals ``run_bandit`` with that many steps (checked at the first checkpoint)."""
    from evaluators.bandit import BanditConfig, _problem
    from evaluators.training import bradley_terry_labels, run_seed
    from loss_variants import resolve

    fn, kw = resolve(loss)
    cfg = BanditConfig(prompts=256, responses=16, pairs=4096, ref_scale=1.0, reward_corr=0.0,
                       label_temperature=0.0, steps=steps, batch_size=64, lr=0.05)
    runs = [(s, b) for s in seeds for b in betas]
    probs = {s: _problem(cfg, s) for s in seeds}
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("p", "c", "r", "u", "ref")}
    for s, _ in runs:
        u, ref_logits = probs[s]["u"], probs[s]["ref_logits"]
        p, a, b = probs[s]["train"]
        a_wins = bradley_terry_labels(u[p, a], u[p, b], cfg.label_temperature, 0.0,
                                      torch.Generator().manual_seed(run_seed("bandit-labels", s, 0.0)))
        rows["p"].append(p)
        rows["c"].append(torch.where(a_wins, a, b))
        rows["r"].append(torch.where(a_wins, b, a))
        rows["u"].append(u)
        rows["ref"].append(ref_logits)
    t = {k: torch.stack(v) for k, v in rows.items()}
    ref_logp = torch.log_softmax(t["ref"], dim=-1)
    theta = t["ref"].clone().requires_grad_(True)
    opt = torch.optim.AdamW([theta], lr=cfg.lr, weight_decay=0.0)
    gens = [torch.Generator().manual_seed(run_seed("bandit-order", s, 0.0)) for s, _ in runs]
    beta = torch.tensor([b for _, b in runs]).repeat_interleave(cfg.batch_size)
    n, bs, R = cfg.pairs, cfg.batch_size, len(runs)
    rr = torch.arange(R)[:, None]
    orders, cursor = [torch.randperm(n, generator=g) for g in gens], 0
    out: dict[float, list[list[tuple[float, float]]]] = {b: [[] for _ in seeds] for b in betas}
    for step in range(steps):
        if cursor + bs > n:
            orders, cursor = [torch.randperm(n, generator=g) for g in gens], 0
        idx = torch.stack([o[cursor:cursor + bs] for o in orders])
        cursor += bs
        logp = torch.log_softmax(theta, dim=-1)
        pp, cc, rj = t["p"][rr, idx], t["c"][rr, idx], t["r"][rr, idx]
        losses = fn(logp[rr, pp, cc].flatten(), logp[rr, pp, rj].flatten(), ref_logp[rr, pp, cc].flatten(),
                    ref_logp[rr, pp, rj].flatten(), beta, **kw)
        opt.zero_grad(set_to_none=True)
        losses.view(R, bs).float().mean(1).sum().backward()
        with torch.no_grad():
            norms = theta.grad.flatten(1).norm(dim=1)
            theta.grad *= (cfg.grad_clip / (norms + 1e-6)).clamp(max=1.0)[:, None, None]
        opt.step()
        if step + 1 in checkpoints:
            with torch.no_grad():
                lp = torch.log_softmax(theta, dim=-1)
                pol = lp.exp()
                kl = (pol * (lp - ref_logp)).sum(-1).mean(-1)
                gold = (pol * t["u"]).sum(-1).mean(-1)
            for i, (s, b) in enumerate(runs):
                out[b][seeds.index(s)].append((float(kl[i]), float(gold[i])))
    return out


def fact_b_bandit(out: list[str], seeds: list[int], steps: int) -> bool:
    from evaluators.bandit import run_bandit
    from evaluators.suites import RunSpec
    from loss_variants import resolve

    checkpoints = [125 * 2 ** k for k in range(int(math.log2(steps / 125)) + 1)]
    dpo_betas, taus = (0.1, 1.0), (0.25, 0.5, 1.0)
    start = time.perf_counter()
    dpo = bandit_kl_trajectories("dpo", dpo_betas, seeds, checkpoints[-1], checkpoints)
    ipo = bandit_kl_trajectories("ipo", taus, seeds, checkpoints[-1], checkpoints)
    print(f"    fact b on the bandit: {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})",
          file=sys.stderr, flush=True)
    # the vectorised loop equals the tier's own runner (first checkpoint, first seed, DPO beta 0.1)
    config = {"bandit": {"prompts": 256, "responses": 16, "pairs": 4096, "ref_scale": 1.0, "reward_corr": 0.0,
                         "label_temperature": 0.0}, "train": {"steps": checkpoints[0], "batch_size": 64, "lr": 0.05}}
    fn, kw = resolve("dpo")
    check = run_bandit(RunSpec("bandit", "bandit", seeds[0], 0.0, dpo_betas[0], 1.0, config=config), fn, kw)
    gap = abs(check.kl - dpo[dpo_betas[0]][0][0][0])
    out.append("\n## b. Deterministic preferences: DPO's KL keeps growing, IPO's plateaus at a level set by tau\n")
    out.append("Bandit tier (Azar et al.'s setting): 256 prompts x 16 responses, 4096 pairs, labels deterministic in "
               "the gold utility, no flips, AdamW lr 0.05 constant, batch 64; exact KL (nats) after each number "
               f"of steps ({len(seeds)} seeds). The vectorised loop vs `run_bandit` at {checkpoints[0]} steps: "
               f"|KL difference| = {gap:.1e}.\n")
    out.append("| loss | " + " | ".join(f"{c} steps" for c in checkpoints) + " |\n|---|" + "---|" * len(checkpoints))

    def series_of(runs: list[list[tuple[float, float]]]) -> list[list[float]]:
        return [[r[i][0] for r in runs] for i in range(len(checkpoints))]

    d_series = {b: series_of(dpo[b]) for b in dpo_betas}
    i_series = {t: series_of(ipo[t]) for t in taus}
    for b in dpo_betas:
        out.append(f"| DPO beta={b} | " + " | ".join(fmt(x, 2) for x in d_series[b]) + " |")
    for t in taus:
        out.append(f"| IPO tau={t} | " + " | ".join(fmt(x, 2) for x in i_series[t]) + " |")
    gold = {f"DPO beta={b}": [r[-1][1] for r in dpo[b]] for b in dpo_betas}
    gold.update({f"IPO tau={t}": [r[-1][1] for r in ipo[t]] for t in taus})
    out.append("\nFinal gold reward: " + "; ".join(f"{k} {fmt(v)}" for k, v in gold.items()))
    b1 = True
    for b in dpo_betas:
        diffs, rel = growth(d_series[b])
        good = significant(diffs) and rel > 0.10
        b1 &= good
        out.append(f"\nb1: DPO beta={b}: KL over the last doubling {statistics.fmean(diffs):+.3f} ± "
                   f"{mean_se(diffs)[1]:.3f} nats ({100 * rel:.1f} %) -> {'holds' if good else 'FAILS'}")
    b2, b3 = ipo_rules(i_series, taus, out, digits=3)
    ok = b1 and b2 and b3
    out.append(f"\n**b: {verdict(ok)}** (b1 {b1}, b2 {b2}, b3 {b3})")
    return ok


def fact_c(lab: Lab, out: list[str], beta: float, pairs: int = 0, epochs: int = 0) -> bool:
    train: dict[str, Any] = {}
    if pairs:
        train["pairs"] = pairs
    if epochs:
        train["epochs"] = epochs
        train["eval_epochs"] = [2 ** k for k in range(int(math.log2(epochs)) + 1)]
    regime = f", first {pairs or lab.config['train'].get('pairs')} pairs, {epochs or lab.config['train'].get('epochs')} epochs"
    out.append(f"\n## c. Flipped labels: robust / conservative DPO with eps = flip rate beat DPO (beta {beta}{regime})\n")
    out.append("| flip rate | DPO reward | cDPO reward | rDPO reward | cDPO - DPO | rDPO - DPO | KL DPO / cDPO / rDPO |"
               "\n|---|---|---|---|---|---|---|")
    ok_r = ok_c = True
    curves: list[str] = []
    for eps in (0.2, 0.4):
        dpo = lab.run("dpo", (beta,), noise=eps, train=train)[beta]
        cdpo = lab.run("cdpo", (beta,), noise=eps, kwargs={"label_smoothing": eps}, train=train)[beta]
        rdpo = lab.run("robust", (beta,), noise=eps, kwargs={"label_smoothing": eps}, train=train)[beta]
        if train.get("eval_epochs"):
            for name, runs in (("DPO", dpo), ("cDPO", cdpo), ("rDPO", rdpo)):
                points = [[r.extra["trajectory"][i]["gold_reward"] for r in runs]
                          for i in range(len(train["eval_epochs"]))]
                curves.append(f"| {eps} | {name} | " + " | ".join(fmt(x) for x in points) + " |")
            if eps == 0.4:
                best = [max(p["gold_reward"] for p in r.extra["trajectory"]) for r in dpo]
                drop = [b - r.gold_reward for b, r in zip(best, dpo)]
                c0 = significant(drop)
                curves.append(f"\nc0 (not judged): DPO at 40 % flips ends {fmt(drop)} below its best checkpoint -> "
                              f"{'overfits' if c0 else 'does NOT overfit measurably'}")
        dc, dr = paired(cdpo, dpo, "gold_reward"), paired(rdpo, dpo, "gold_reward")
        ok_c &= significant(dc)
        ok_r &= significant(dr)
        kls = " / ".join(f"{statistics.fmean(r.kl for r in runs):.2f}" for runs in (dpo, cdpo, rdpo))
        out.append(f"| {eps} | {fmt([r.gold_reward for r in dpo])} | {fmt([r.gold_reward for r in cdpo])} | "
                   f"{fmt([r.gold_reward for r in rdpo])} | {fmt(dc)} | {fmt(dr)} | {kls} |")
    if curves:
        epochs_list = train["eval_epochs"]
        out.append("\nGold reward after each number of epochs:\n\n| flip rate | loss | "
                   + " | ".join(f"epoch {e}" for e in epochs_list) + " |\n|---|---|" + "---|" * len(epochs_list))
        out.extend(curves)
    out.append(f"\nc1 rDPO > DPO at both flip rates: {'holds' if ok_r else 'FAILS'}; "
               f"c2 cDPO > DPO at both flip rates: {'holds' if ok_c else 'FAILS'}")
    ok = ok_r and ok_c
    out.append(f"\n**c: {verdict(ok)}**")
    return ok


def _frontier(points: list[tuple[float, float]]):
    """Upper envelope of reward vs KL: best reward reached at KL <= k (a non-decreasing step function)."""
    pts = sorted(points)

    def f(k: float) -> float:
        best = -math.inf
        for kl, reward in pts:
            if kl <= k + 1e-12:
                best = max(best, reward)
        return best

    return f


def fact_d(lab: Lab, out: list[str], cache: dict[str, Any]) -> bool:
    if "dpo" not in cache:
        cache["dpo"] = lab.run("dpo", BETAS)
    runs = {"dpo": cache["dpo"]}
    for loss in DISCOPOP[1:] + EXTRA_D:
        runs[loss] = lab.run(loss, BETAS)
    mean = {(l, b): (statistics.fmean(r.kl for r in runs[l][b]), statistics.fmean(r.gold_reward for r in runs[l][b]))
            for l in runs for b in BETAS}
    frontier = _frontier([mean[(l, b)] for l in DISCOPOP for b in BETAS])
    short = {k: frontier(v[0]) - v[1] for k, v in mean.items()}
    out.append("\n## d. DiscoPOP's IMDb findings\n")
    out.append("Gold reward / KL (nats) per loss and beta (mean over seeds; s.e. in the JSON). Shortfall = distance "
               "below the frontier (upper envelope of all points of the eight losses).\n")
    out.append("| loss | " + " | ".join(f"beta {b}" for b in BETAS) + " |\n|---|" + "---|" * len(BETAS))
    for l in runs:
        out.append(f"| {l} | " + " | ".join(f"{mean[(l, b)][1]:.3f} / {mean[(l, b)][0]:.2f}" for b in BETAS) + " |")
    ref = statistics.fmean(r.extra["reference_reward"] for r in runs["dpo"][BETAS[0]])
    out.append(f"\nReference (SFT) gold reward {ref:.3f}.")
    # d1
    pfl_max = max(mean[("pfl", b)][0] for b in BETAS)
    dpo_min = min(mean[("dpo", b)][0] for b in BETAS)
    d1 = pfl_max < dpo_min
    pfl_rho = max(mean[("pfl_on_log_ratio", b)][0] for b in BETAS)
    out.append(f"\nd1 PFL barely moves: PFL's largest KL {pfl_max:.2f} vs DPO's smallest {dpo_min:.2f} -> "
               f"{'holds' if d1 else 'FAILS'} (not judged: PFL on the unscaled log-ratio, as DiscoPOP's LLM first "
               f"wrote it, reaches at most {pfl_rho:.2f})")
    # d2
    lrml_gain = [r.gold_reward - r.extra["reference_reward"] for r in runs["lrml"][0.01]]
    dpo_gain = [r.gold_reward - r.extra["reference_reward"] for r in runs["dpo"][0.01]]
    collapse = significant([0.25 * d - l for l, d in zip(lrml_gain, dpo_gain)])
    mid = (0.025, 0.05, 0.1, 0.25)
    competitive = all(short[("lrml", b)] <= 0.05 for b in mid)
    d2 = collapse and competitive
    shortfalls = ", ".join(f"{short[('lrml', b)]:.3f}" for b in mid)
    out.append(f"d2 LRML: gain at 0.01 {fmt(lrml_gain)} vs DPO's {fmt(dpo_gain)} -> collapse "
               f"{'holds' if collapse else 'FAILS'}; shortfall at 0.025-0.25: {shortfalls} -> competitive "
               f"{'holds' if competitive else 'FAILS'}")
    # d3
    d3 = True
    parts = []
    for l in ("dbaql", "cell"):
        for b in (0.5, 1.0):
            diff = paired(runs[l][b], runs["dpo"][b], "gold_reward")
            worse = significant(diff, -1)
            d3 &= worse
            parts.append(f"{l}@{b}: {fmt(diff)}")
    out.append(f"d3 DBAQL/CELL vs DPO at beta >= 0.5 (reward difference): {'; '.join(parts)} -> "
               f"{'holds' if d3 else 'FAILS'}")
    # d4
    d4 = True
    parts = []
    for l in ("dpo", "padll", "aqfl", "hinge"):
        med = statistics.median(short[(l, b)] for b in BETAS)
        d4 &= med <= 0.05
        parts.append(f"{l} {med:.3f}")
    out.append(f"d4 median shortfall: {', '.join(parts)} -> {'holds' if d4 else 'FAILS'}")
    ok = d1 and d2 and d3 and d4
    out.append(f"\n**d: {verdict(ok)}** (d1 {d1}, d2 {d2}, d3 {d3}, d4 {d4})")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", default="a,b,c,d")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--suite", default="calibrated_fitness", help="suite whose regime is calibrated")
    parser.add_argument("--b-pairs", type=int, default=256, help="fact b: size of the fixed preference set")
    parser.add_argument("--b-epochs", type=int, default=32, help="fact b: epochs (a power of 2)")
    parser.add_argument("--b-tier", choices=("bandit", "lm"), default="bandit", help="fact b: tier of the experiment")
    parser.add_argument("--b-steps", type=int, default=16000, help="fact b on the bandit: steps (125 x a power of 2)")
    parser.add_argument("--c-beta", type=float, default=0.1, help="fact c: beta of all three losses")
    parser.add_argument("--c-pairs", type=int, default=256, help="fact c: train on the first N pairs (0: the suite's)")
    parser.add_argument("--c-epochs", type=int, default=32, help="fact c: epochs, a power of 2 (0: the suite's)")
    parser.add_argument("--model", default="", help="GPT-2 size instead of the suite's, as n_layer,n_embd,n_head "
                                                     "(e.g. 3,64,4: the ladder's 154k-parameter rung L)")
    parser.add_argument("--cache-dir", default=os.environ.get("PREFDISCO_CACHE", str(Path.home() / ".cache/prefdisco")))
    parser.add_argument("--out", default="", help="also write the markdown report here")
    parser.add_argument("--json", default="", help="write every run here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    facts = args.facts.split(",")
    model = dict(zip(("n_layer", "n_embd", "n_head"), map(int, args.model.split(",")))) if args.model else None
    lab = Lab(args.suite, args.seeds, Path(args.cache_dir), [], model)
    start = time.perf_counter()
    out = [f"# Calibration of the calibrated_lm tier ({args.suite})\n",
           f"Command: `{' '.join(['python'] + sys.argv)}`  ",
           f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; machine: {os.cpu_count()} CPUs, 1 torch thread, "
           f"torch {torch.__version__}; load average at start {os.getloadavg()[0]:.1f}  ",
           f"Regime: {json.dumps(lab.config)}; task sentiment {json.dumps(lab.task_params)}; seeds {lab.seeds}"]
    results: dict[str, bool] = {}
    shared: dict[str, Any] = {}
    if "a" in facts:
        results["a"] = fact_a(lab, out, shared)
    if "b" in facts:
        results["b"] = (fact_b_bandit(out, lab.seeds, args.b_steps) if args.b_tier == "bandit"
                        else fact_b(lab, out, args.b_pairs, args.b_epochs))
    if "c" in facts:
        results["c"] = fact_c(lab, out, args.c_beta, args.c_pairs, args.c_epochs)
    if "d" in facts:
        results["d"] = fact_d(lab, out, shared)
    out.append(f"\n## Summary\n\n" + "\n".join(f"- {k}: {verdict(v)}" for k, v in results.items()))
    out.append(f"\nWall time {time.perf_counter() - start:.0f} s; load average at end {os.getloadavg()[0]:.1f}.")
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(lab.records))


if __name__ == "__main__":
    main()
