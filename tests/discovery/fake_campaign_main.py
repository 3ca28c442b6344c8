"""Run a campaign on the FakePool in this process (used as a subprocess by the kill -9 tests).

    python fake_campaign_main.py DIR [--resume]
The crash point comes from PREFDISCO_CRASH_AT (see discovery/crashpoints.py).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FakePool  # noqa: E402

from discovery.search.campaign import Campaign  # noqa: E402
from discovery.config import config_from_dict  # noqa: E402
from discovery.search.progress import ProgressView  # noqa: E402
from discovery.sandbox import validate_source  # noqa: E402

CONFIG = {"name": "fake", "seed": 7, "baselines": ["dpo", "ipo", "hinge", "lrml"], "generation_size": 4,
          "workers": 2, "budget": {"max_candidates": 16},
          "database": {"islands": 2, "migration_interval": 2},
          "cascade": {"heldout_top_k": 2, "screen_margin": 0.3}}


def main(out: str, resume: bool) -> None:
    kwargs = dict(pool=FakePool(), validate=validate_source, progress=ProgressView(enabled=False))
    if resume:
        campaign = Campaign.resume(out, **kwargs)
    else:
        campaign = Campaign.create(config_from_dict(CONFIG), out, **kwargs)
    campaign.run()


if __name__ == "__main__":
    # A Ctrl-C must raise KeyboardInterrupt here, as in an interactive `prefdisco run`, even when the
    # test runner itself was started with SIGINT ignored (a background job of a non-interactive shell
    # passes SIG_IGN on, and Python then installs no handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(sys.argv[1], "--resume" in sys.argv)
