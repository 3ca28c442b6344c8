"""Rediscovery benchmark: can an offline campaign started from DiscoPOP's start set find a loss that
beats *tuned* DPO on held-out, and which known loss did it find?

Runs K campaigns of ``configs/rediscover.yaml`` (archive seeded with dpo, hinge, ipo, kto_pair only;
the other library losses are held back) with different seeds through the normal ``prefdisco run``
path, one after the other, into ``OUT/seed-K/`` (a killed benchmark resumes: a finished campaign is
not re-run, an unfinished one continues with ``--resume``). For each campaign:

* best = the discovered (non-baseline) loss with the best fitness;
* tuned betas: each of best and DPO at the beta of the fitness sweep with its best mean score over
  the fitness seeds (from the campaign's own fitness runs; ``discovery.review.rediscovery``);
* held-out: best (in the sandbox, as every candidate) and DPO on the held-out suite, each at its tuned
  beta, paired by seed; success = best ahead by more than 2 paired s.e.;
* what it rediscovered: the held-back library losses nearest to best's behaviour fingerprint (the
  probe vector the campaign stored), and the nearest start-set loss for contrast.

Prints the table and the success rate (acceptance: >= 3 of 5 seeds, each campaign <= 10 min on 2 cores).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rediscovery.py --seeds 0,1,2,3,4 --out runs/rediscovery
    PYTHONPATH=$PWD .venv/bin/python benchmarks/rediscovery.py --seeds 0 --report benchmarks/results/x.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START_SET = ("dpo", "hinge", "ipo", "kto_pair")
HELD_BACK = ("cdpo", "robust", "sppo_hard", "nca_pair", "bco_pair", "apo_zero", "apo_down", "exo_pair",
             "lrml", "padll", "aqfl", "aql", "cell", "dbaql", "pfl", "aot")
EVALUATE_JOB = "evaluators.jobs:evaluate_job"
DONE_FILE = "rediscovery-campaign.json"   # written when a seed's campaign has finished


def run_campaign(config: Path, seed: int, out: Path) -> dict[str, Any]:
    """The seed's campaign, run (or resumed) to its budget through `prefdisco run`; its wall time."""
    done = out / DONE_FILE
    if done.exists():
        return json.loads(done.read_text())
    cmd = [sys.executable, "-m", "discovery.commands", "run"]
    cmd += ["--resume", str(out)] if (out / "campaign.db").exists() else [str(config), "--seed", str(seed),
                                                                          "--out", str(out)]
    start, load = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.run(cmd + ["--json"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"campaign seed {seed} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    record = {"seed": seed, "wall_time_s": time.perf_counter() - start, "load_start": load,
              "load_end": os.getloadavg()[0], "resumed": "--resume" in cmd,
              "campaign_wall_time_s": summary.get("wall_time_s"), "candidates": summary.get("candidates"),
              "stopped_by": summary.get("stopped_by")}
    done.write_text(json.dumps(record, indent=2))
    return record


def _heldout(executor: Any, cache: dict[str, Any], store: Path, key: str, code: str | None, name: str,
             suite: str, beta: float, cache_dir: str | None, timeout: float) -> Any:
    """One held-out evaluation at a single beta (cached in ``store``), in the sandbox."""
    from evaluators.results import SuiteResult

    if key not in cache:
        kwargs: dict[str, Any] = {"suite": suite, "loss_name": name, "beta_override": beta}
        if cache_dir:
            kwargs["cache_dir"] = cache_dir
        res = executor.run_job(code, EVALUATE_JOB, kwargs, timeout)
        if not res.ok or not res.value:
            raise SystemExit(f"held-out evaluation of {name} failed: {res.failure_class}: {res.message}")
        cache[key] = res.value
        store.write_text(json.dumps(cache))
    return SuiteResult.from_dict(cache[key])


def analyse(out: Path, known: dict[str, list[float]], start: dict[str, list[float]]) -> dict[str, Any]:
    """Best discovered loss vs tuned DPO on held-out, and its nearest known losses."""
    from discovery.archive.campaign_dir import CampaignDir
    from discovery.archive.candidate import Stage, Status
    from discovery.executors import make_executor
    from discovery.review.rediscovery import at_beta, nearest_known, success, tuned_beta
    from discovery.sandbox import SandboxLimits
    from evaluators.paired import paired_difference
    from evaluators.results import SuiteResult
    from evaluators.suites import load_suite

    cdir = CampaignDir.open(out)
    cfg, db = cdir.config(), cdir.database()
    try:
        dpo = db.dpo()
        proposals = [r for r in db.all(status=Status.EVALUATED) if not r.is_baseline and r.fitness is not None]
        if dpo is None or not proposals:
            return {"campaign": str(out), "error": "no DPO baseline or no evaluated proposal"}
        best = max(proposals, key=lambda r: (r.fitness, -r.seq))
        fit_best = SuiteResult.from_dict(db.stage_result(best.id, Stage.FITNESS))
        fit_dpo = SuiteResult.from_dict(db.stage_result(dpo.id, Stage.FITNESS))
        beta_best, beta_dpo = tuned_beta(fit_best), tuned_beta(fit_dpo)
        heldout_suite = load_suite(cfg.cascade.heldout_suite)
        scoring = heldout_suite.scoring
        fit_pd = paired_difference(at_beta(fit_best, beta_best), at_beta(fit_dpo, beta_dpo),
                                   load_suite(cfg.cascade.fitness_suite).scoring, same_betas=False)
        store = out / "rediscovery-heldout.json"
        cache = json.loads(store.read_text()) if store.exists() else {}
        cache_dir = cfg.cascade.cache_dir
        limits = SandboxLimits(cache_dir=cache_dir) if cache_dir else None
        start_t = time.perf_counter()
        with make_executor("local", num_workers=1, limits=limits) as ex:
            ho_best = _heldout(ex, cache, store, f"{best.id}@{beta_best}", best.code, best.name,
                               cfg.cascade.heldout_suite, beta_best, cache_dir, cfg.cascade.job_timeout_s)
            ho_dpo = _heldout(ex, cache, store, f"dpo@{beta_dpo}", None, "dpo",
                              cfg.cascade.heldout_suite, beta_dpo, cache_dir, cfg.cascade.job_timeout_s)
        pd = paired_difference(ho_best, ho_dpo, scoring, same_betas=False)
        probe = db.stage_result(best.id, Stage.PROBE) or {}
        vector = probe.get("fingerprint_vector")
        near = nearest_known(vector, known, k=3) if vector else []
        near_start = nearest_known(vector, start, k=1) if vector else []
        return {"campaign": str(out), "best_id": best.id, "best_name": best.name, "best_code": best.code,
                "fitness": best.fitness, "dpo_fitness": dpo.fitness, "beta_best": beta_best, "beta_dpo": beta_dpo,
                "fitness_vs_tuned_dpo": fit_pd.to_dict(), "heldout_vs_tuned_dpo": pd.to_dict(),
                "success": success(pd), "heldout_wall_s": time.perf_counter() - start_t,
                "nearest_held_back": [(n.name, round(n.distance, 4)) for n in near],
                "nearest_start_set": [(n.name, round(n.distance, 4)) for n in near_start],
                "evaluated_proposals": len(proposals)}
    finally:
        db.close()


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| seed | candidates | campaign wall (s) | load | best (id) | beta best / DPO | fitness vs tuned DPO "
             "| held-out vs tuned DPO ± paired s.e. (n) | z | success | nearest held-back (distance) "
             "| nearest start-set |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    wins = 0
    for r in rows:
        c, a = r["campaign"], r["analysis"]
        if "error" in a:
            lines.append(f"| {c['seed']} | {c.get('candidates')} | {c['wall_time_s']:.0f} | | {a['error']} |||||||")
            continue
        f, h = a["fitness_vs_tuned_dpo"], a["heldout_vs_tuned_dpo"]
        wins += bool(a["success"])
        near = ", ".join(f"{n} ({d:.3f})" for n, d in a["nearest_held_back"])
        start = ", ".join(f"{n} ({d:.3f})" for n, d in a["nearest_start_set"])
        lines.append(
            f"| {c['seed']} | {c.get('candidates')} | {c['wall_time_s']:.0f} | {c['load_start']:.1f}-{c['load_end']:.1f} "
            f"| {a['best_name']} ({a['best_id']}) | {a['beta_best']} / {a['beta_dpo']} "
            f"| {f['difference']:+.4f} ± {f['se']:.4f} | {h['difference']:+.4f} ± {h['se']:.4f} ({h['n']}) "
            f"| {h['z']:+.1f} | {'YES' if a['success'] else 'no'} | {near} | {start} |")
    lines.append(f"\nSuccess rate: {wins} of {len(rows)} campaigns (best discovered loss ahead of tuned DPO on "
                 "held-out by > 2 paired s.e.).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "rediscover.yaml"))
    parser.add_argument("--seeds", default="0,1,2,3,4", help="campaign seeds, comma-separated")
    parser.add_argument("--out", default="runs/rediscovery", help="campaigns go to OUT/seed-K")
    parser.add_argument("--report", default=None, help="also write the table (markdown) here")
    parser.add_argument("--json", dest="json_out", default=None, help="write every row as JSON here")
    args = parser.parse_args()
    from discovery.review.rediscovery import library_fingerprints

    known, start = library_fingerprints(HELD_BACK), library_fingerprints(START_SET)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
        out = Path(args.out) / f"seed-{seed}"
        print(f"campaign seed {seed} -> {out} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        campaign = run_campaign(Path(args.config), seed, out)
        print(f"  done in {campaign['wall_time_s']:.0f} s; held-out check ...", file=sys.stderr, flush=True)
        rows.append({"campaign": campaign, "analysis": analyse(out, known, start)})
    text = render(rows)
    print(text)
    if args.report:
        Path(args.report).write_text(f"Command: `{' '.join(sys.argv)}`\n\n{text}\n")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
