"""Plain result types that cross the sandbox boundary, and the parent's schema checks.

A reply comes from the process the candidate ran in, so it is data of unknown honesty: it is
decoded by ``wire.decode`` (bounded JSON) and then rebuilt field by field here. Anything outside
the schema (wrong types, a fingerprint that is not 64 hex digits, absurd sizes) makes the result
an ``unsafe`` failure; the parent never raises on a bad reply.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from discovery.failures import FailureClass

__all__ = ["FailureClass", "JobResult", "ProbeResult"]


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


MAX_MESSAGE_CHARS = 600
MAX_TAIL_CHARS = 64_000
MAX_VECTOR = 4096
MAX_SHAPE_POINTS = 1000
HEX64 = re.compile(r"[0-9a-f]{64}")


class SchemaError(ValueError):
    """A reply field outside its schema."""


def clip(text: Any, n: int = MAX_MESSAGE_CHARS) -> str:
    text = str(text).encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= n else text[: n - 3] + "..."


def failure_value(name: Any) -> str | None:
    """Normalise a failure class coming from a worker; unknown values become 'crash'."""
    if name is None:
        return None
    try:
        return FailureClass(str(name)).value
    except ValueError:
        return FailureClass.CRASH.value


def failure_result(kind: str, failure_class: str, message: str, wall: float = 0.0,
                   tail: str = "") -> ProbeResult | JobResult:
    if kind == "probe":
        return ProbeResult(False, failure_class, clip(message), wall_time_s=wall)
    return JobResult(False, None, failure_class, clip(message), wall, clip(tail, MAX_TAIL_CHARS))


def _number_list(value: Any, limit: int, *, allow_none: bool = False) -> list[Any]:
    if not isinstance(value, list) or len(value) > limit:
        raise SchemaError("expected a bounded list of numbers")
    for v in value:
        if not (isinstance(v, (int, float)) and not isinstance(v, bool)) and not (
                allow_none and v is None):
            raise SchemaError("expected numbers")
    return [float(v) if v is not None else None for v in value]


def _shape(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SchemaError("shape must be an object")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("z", "loss", "dloss_dz"):
            out[key] = _number_list(item, MAX_SHAPE_POINTS, allow_none=True)
        elif key == "beta" and isinstance(item, (int, float)) and not isinstance(item, bool):
            out[key] = float(item)
        else:
            raise SchemaError(f"unexpected shape field {key!r}")
    return out


def probe_result(reply: dict[str, Any], wall: float) -> ProbeResult:
    """Rebuild a ProbeResult from a decoded reply; raises SchemaError outside the schema."""
    ok = reply.get("ok")
    if not isinstance(ok, bool):
        raise SchemaError("'ok' must be a boolean")
    message = clip(reply.get("message", ""))
    if not ok:
        return ProbeResult(False, failure_value(reply.get("failure_class")) or "crash", message,
                           wall_time_s=wall)
    fingerprint = reply.get("fingerprint")
    if not isinstance(fingerprint, str) or not HEX64.fullmatch(fingerprint):
        raise SchemaError("fingerprint must be 64 hex digits")
    vector = _number_list(reply.get("fingerprint_vector"), MAX_VECTOR)
    return ProbeResult(True, None, message, fingerprint, vector, _shape(reply.get("shape")), wall)


def job_result(reply: dict[str, Any], wall: float) -> JobResult:
    """Rebuild a JobResult from a decoded reply (already bounded plain JSON)."""
    ok = reply.get("ok")
    if not isinstance(ok, bool):
        raise SchemaError("'ok' must be a boolean")
    value = reply.get("value")
    if ok and not isinstance(value, dict):
        raise SchemaError("a successful job must return an object")
    tail = reply.get("stdout_tail", "")
    if not isinstance(tail, str):
        raise SchemaError("stdout_tail must be a string")
    failure = None if ok else (failure_value(reply.get("failure_class")) or "crash")
    return JobResult(ok, value if ok else None, failure, clip(reply.get("message", "")), wall,
                     clip(tail, MAX_TAIL_CHARS))
