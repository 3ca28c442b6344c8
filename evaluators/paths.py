"""Where prefdisco keeps files it can rebuild (torch-free, so drivers can ask without importing it)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The reference-model cache: ``$PREFDISCO_CACHE``, else ``~/.cache/prefdisco``."""
    return Path(os.environ.get("PREFDISCO_CACHE") or Path.home() / ".cache" / "prefdisco")
