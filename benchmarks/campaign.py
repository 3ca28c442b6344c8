"""Campaign throughput: candidates per minute by stage, and where the wall time goes.

    python benchmarks/campaign.py                      # run a short quickstart campaign, then measure
    python benchmarks/campaign.py --dir runs/quickstart  # measure an existing campaign directory
    python benchmarks/campaign.py --max-candidates 16 --workers 2   # a shorter run

"training" = seconds spent inside preference-training runs (summed from each run's own timer,
reported by the evaluators); "stage time" = seconds each stage call took as seen by the runner
(training + sandbox start/IPC + data setup + scoring); "overhead" = the rest of the workers' capacity
(proposing, probing, database, idle waiting). Fractions are of worker capacity = wall x workers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(campaign_dir: Path) -> dict:
    import sqlalchemy as sa

    from discovery.archive.campaign_dir import CampaignDir

    campaign = CampaignDir.open(campaign_dir)
    workers = campaign.config().workers
    events = campaign.events()
    wall, start = 0.0, None  # summed over the runs of a resumed campaign (gaps excluded)
    for e in events:
        if e["event"] == "campaign_start":
            start = e["t"]
        elif start is not None:
            if e["event"] in ("campaign_end", "interrupted"):
                wall += e["t"] - start
                start = None
            last = e["t"]
    if start is not None:  # killed run: count up to its last event
        wall += last - start
    wall = wall or float("nan")
    db = campaign.database()
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT candidate_id, stage, wall_time_s, result FROM evaluations")).all()
        candidates = db.all()
    finally:
        db.close()
    by_stage: dict[str, dict] = {}
    training_s = 0.0
    for cid, stage, took, result in rows:
        s = by_stage.setdefault(stage, {"count": 0, "stage_time_s": 0.0, "training_s": 0.0})
        s["count"] += 1
        s["stage_time_s"] += took
        for run in (json.loads(result) or {}).get("runs", []) if stage in ("screen", "fitness", "heldout") else []:
            s["training_s"] += float(run.get("wall_time_s") or 0.0)
    for stage, s in by_stage.items():
        training_s += s["training_s"]
        s["per_min_of_campaign"] = round(s["count"] / (wall / 60.0), 2)
        s["mean_s_per_call"] = round(s["stage_time_s"] / max(1, s["count"]), 4)
        s["stage_time_s"] = round(s["stage_time_s"], 2)
        s["training_s"] = round(s["training_s"], 2)
    stage_total = sum(s["stage_time_s"] for s in by_stage.values())
    capacity = wall * workers
    proposals = [c for c in candidates if not c.is_baseline]
    statuses: dict[str, int] = {}
    for c in proposals:
        statuses[str(c.status)] = statuses.get(str(c.status), 0) + 1
    return {
        "campaign": str(campaign_dir), "workers": workers, "wall_time_s": round(wall, 1),
        "candidates": len(proposals), "candidates_per_min": round(len(proposals) / (wall / 60.0), 2),
        "status_counts": statuses, "stages": by_stage,
        "fraction_training": round(training_s / capacity, 3),
        "fraction_stage_non_training": round((stage_total - training_s) / capacity, 3),
        "fraction_overhead_idle": round(1 - stage_total / capacity, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="existing campaign directory to measure")
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--max-candidates", type=int, default=None, help="override the config's budget")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    campaign_dir = args.dir
    if campaign_dir is None:
        from discovery.search.campaign import Campaign
        from discovery.config import load_config
        from discovery.search.progress import ProgressView

        cfg = load_config(args.config)
        if args.max_candidates is not None:
            cfg.budget.max_candidates = args.max_candidates
        cfg.workers = args.workers
        campaign_dir = Path(tempfile.mkdtemp(prefix="prefdisco-bench-")) / "campaign"
        start = time.time()
        Campaign.create(cfg, campaign_dir, progress=ProgressView(enabled=False)).run()
        print(f"ran {args.config} ({cfg.budget.max_candidates} candidates) in {time.time() - start:.1f}s "
              f"-> {campaign_dir}", file=sys.stderr)
    report = measure(campaign_dir)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
