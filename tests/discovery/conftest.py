"""Fixtures for the discovery tests: a fake sandbox pool that never executes candidate code.

`FakePool` stands in for `discovery.sandbox.SandboxPool` in fast unit tests of the runner's
bookkeeping. It scores code by *reading* it (a deterministic function of the normalised text), so
the tests exercise selection, dedupe, gating and resume without torch training. Tests that need
real scores use the real sandbox and evaluators and are marked slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import pytest

from candidate_losses.source import normalize_code

sys.path.insert(0, str(Path(__file__).parent))  # helper modules next to the tests (test server)


@dataclass
class FakeProbe:
    ok: bool
    failure_class: str | None
    message: str
    fingerprint: str | None = None
    fingerprint_vector: list[float] | None = None
    shape: dict | None = None
    wall_time_s: float = 0.001

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FakeJob:
    ok: bool
    value: dict | None
    failure_class: str | None
    message: str
    wall_time_s: float = 0.001
    stdout_tail: str = ""


def fake_score(code: str | None, name: str) -> float:
    """A deterministic pseudo-fitness read off the code text (no execution)."""
    key = normalize_code(code) if code else name
    return int(hashlib.sha256(key.encode()).hexdigest()[:6], 16) / 0xFFFFFF


@dataclass
class FakePool:
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _note(self, kind: str, key: str) -> None:
        """Record a finished call (and, for subprocess tests, append it to $FAKEPOOL_LOG)."""
        with self.lock:
            self.calls.append((kind, key))
            if os.environ.get("FAKEPOOL_LOG"):
                with open(os.environ["FAKEPOOL_LOG"], "a") as fh:
                    fh.write(json.dumps([kind, key]) + "\n")

    def probe(self, code: str) -> FakeProbe:
        self._note("probe", code)
        if "raise" in code:
            return FakeProbe(False, "crash", "candidate raised")
        if "nan" in code:
            return FakeProbe(False, "non_finite", "loss is nan")
        fp = hashlib.sha256(normalize_code(code).encode()).hexdigest()[:16]
        if "SAMEBEHAVIOUR" in code:
            fp = "same"
        return FakeProbe(True, None, "ok", fingerprint=fp,
                         shape={"z": [-2.0, 0.0, 2.0], "loss": [2.1, 0.69, 0.13], "dloss_dz": [-0.9, -0.5, -0.1]})

    def run_job(self, code: str | None, job: str, kwargs: dict, timeout_s: float | None = None) -> FakeJob:
        self._note(kwargs["suite"], code or kwargs.get("loss_name", ""))
        score = fake_score(code, kwargs.get("loss_name", ""))
        if kwargs["suite"] == "heldout":
            score += 0.5
        value = {"loss": kwargs.get("loss_name"), "suite": kwargs["suite"], "fitness": score,
                 "fitness_se": 0.01, "runs": [], "per_task": {"taskA": score}}
        return FakeJob(True, value, None, "")

    def close(self) -> None:
        pass


@pytest.fixture
def fake_pool() -> FakePool:
    return FakePool()


def no_errors(code: str) -> list:
    """Stand-in static validator for fake-pool tests: only syntax is checked."""
    import ast

    try:
        ast.parse(code)
    except SyntaxError as exc:
        return [f"syntax (line {exc.lineno}): {exc.msg}"]
    return []
