"""Plain result types that cross the sandbox boundary (parent side).

Workers answer in JSON, never pickle: a hostile worker must not be able to run code in the
parent by crafting its reply, so everything here is rebuilt from plain JSON values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class FailureClass(str, Enum):
    """Why a candidate was rejected; the value is what the database and the LLM prompt see."""

    SYNTAX = "syntax"
    CONTRACT = "contract"
    UNSAFE = "unsafe"
    NON_FINITE = "non_finite"
    WRONG_SHAPE = "wrong_shape"
    NO_GRADIENT = "no_gradient"
    MUTATES_INPUT = "mutates_input"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASH = "crash"


@dataclass
class ProbeResult:
    """Verdict of static validation + numerical probe for one candidate."""

    ok: bool
    failure_class: str | None
    message: str
    fingerprint: str | None = None
    fingerprint_vector: list[float] | None = None
    shape: dict[str, Any] | None = None
    wall_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JobResult:
    """Outcome of a trusted job (training/evaluation) run with a candidate inside a worker."""

    ok: bool
    value: dict[str, Any] | None
    failure_class: str | None
    message: str
    wall_time_s: float = 0.0
    stdout_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failure_value(name: Any) -> str | None:
    """Normalise a failure class coming from a worker; unknown values become 'crash'."""
    if name is None:
        return None
    try:
        return FailureClass(str(name)).value
    except ValueError:
        return FailureClass.CRASH.value
