"""Deliberate self-kill at named points, for testing `kill -9` recovery (off unless env is set).

``PREFDISCO_CRASH_AT="db_write:3"`` makes the process SIGKILL itself the 3rd time it reaches
``maybe_crash("db_write")``; ``"db_write:3:INT"`` sends SIGINT instead (a Ctrl-C at that moment).
Points used: "proposal", "evaluation", "db_write".
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "PREFDISCO_CRASH_AT"
_counts: dict[str, int] = {}
_lock = threading.Lock()


def maybe_crash(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    parts = spec.split(":")
    name, nth, sig = parts[0], (parts[1:2] or ["1"])[0], (parts[2:3] or ["KILL"])[0]
    if name != point:
        return
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        hit = _counts[point] == int(nth or 1)
    if hit:
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
