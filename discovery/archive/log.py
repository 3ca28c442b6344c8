"""A campaign's structured event log (log.jsonl): one JSON object per line, appended and flushed."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class CampaignLog:
    """Append-only JSON lines; one event per line, flushed so a kill loses at most one."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def event(self, event: str, **data: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "event": event, **data}, default=str)
        with self._lock, open(self.path, "a") as fh:
            fh.write(line + "\n")
            fh.flush()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by kill -9
    return out
