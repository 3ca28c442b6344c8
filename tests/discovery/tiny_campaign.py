"""A real (sandboxed, trained) but tiny campaign shared by the executor and tuning tests.

Three baselines + two MutationProposer children on the tests' tiny bandit suites: about ten
seconds on 2 cores, with real fitness numbers (no fake pool).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discovery.search.campaign import Campaign
from discovery.config import config_from_dict
from discovery.search.progress import ProgressView

SUITES = Path(__file__).parent / "suites"
TINY_CONFIG: dict[str, Any] = {
    "name": "tiny", "seed": 3, "baselines": ["dpo", "ipo", "cdpo"], "generation_size": 2, "workers": 2,
    "budget": {"max_candidates": 2},
    "cascade": {"screen_suite": str(SUITES / "tiny_screen.yaml"), "fitness_suite": str(SUITES / "tiny_fitness.yaml"),
                "heldout_suite": str(SUITES / "tiny_heldout.yaml"), "heldout_top_k": 1, "screen_margin": 1.0,
                "job_timeout_s": 120},
}


def run_tiny_campaign(out: Path, *, pool: Any = None, **overrides: Any) -> Any:
    """Run the tiny campaign into `out` (pool: an executor to evaluate through; None = the config's)."""
    cfg = config_from_dict({**TINY_CONFIG, **overrides})
    return Campaign.create(cfg, out, pool=pool, progress=ProgressView(enabled=False)).run()
