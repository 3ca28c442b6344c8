"""Time `prefdisco report` on a real campaign of N candidates (default 50).

    .venv/bin/python benchmarks/report_speed.py [--candidates 50] [--keep DIR]
Runs an offline mutation campaign with the tiny test suites (real sandbox, real bandit training),
then renders its report and prints the seconds taken, the page size and the number of plots.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from discovery.search.campaign import Campaign
from discovery.config import config_from_dict
from discovery.search.progress import ProgressView
from discovery.review.report import write_report

SUITES = Path(__file__).resolve().parents[1] / "tests" / "discovery" / "suites"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--keep", type=Path, default=None, help="campaign directory to (re)use")
    args = parser.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="report-bench-")) / "campaign"
    if not (out / "campaign.db").exists():
        cfg = {"name": "report-bench", "seed": 1, "baselines": ["dpo", "ipo", "hinge", "lrml"], "generation_size": 5,
               "workers": 2, "budget": {"max_candidates": args.candidates},
               "cascade": {"screen_suite": str(SUITES / "tiny_screen.yaml"),
                           "fitness_suite": str(SUITES / "tiny_fitness.yaml"),
                           "heldout_suite": str(SUITES / "tiny_heldout.yaml"), "heldout_top_k": 3,
                           "screen_margin": 1.0, "job_timeout_s": 120}}
        start = time.perf_counter()
        Campaign.create(config_from_dict(cfg), out, progress=ProgressView(enabled=False)).run()
        print(f"campaign: {args.candidates} candidates in {time.perf_counter() - start:.1f}s -> {out}")
    summary = write_report(out)
    print(f"report: {summary.candidates} candidates ({summary.evaluated} on the leaderboard), {summary.images} plots, "
          f"{summary.bytes / 1e6:.2f} MB, {summary.wall_time_s:.2f}s -> {summary.path}")


if __name__ == "__main__":
    main()
