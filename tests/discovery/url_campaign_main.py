"""`fake_campaign_main.py`'s campaign with its database at a given URL (e.g. PostgreSQL).

    python url_campaign_main.py DIR DB_URL [--resume]
Used as a subprocess by the shared-storage kill -9 tests; crash point from PREFDISCO_CRASH_AT.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FakePool  # noqa: E402
from fake_campaign_main import CONFIG  # noqa: E402

from discovery.search.campaign import Campaign  # noqa: E402
from discovery.config import config_from_dict  # noqa: E402
from discovery.search.progress import ProgressView  # noqa: E402
from discovery.sandbox import validate_source  # noqa: E402


def main(out: str, url: str, resume: bool) -> None:
    kwargs = dict(pool=FakePool(), validate=validate_source, progress=ProgressView(enabled=False))
    if resume:
        campaign = Campaign.resume(out, **kwargs)  # the URL comes back from config.resolved.yaml
    else:
        config = config_from_dict({**CONFIG, "database": {**CONFIG["database"], "url": url}})
        campaign = Campaign.create(config, out, **kwargs)
    campaign.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--resume" in sys.argv)
