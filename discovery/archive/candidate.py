"""The typed archive record: one candidate loss, where it came from and how far it got.

``Status`` says where a candidate stands (pending until the cascade settles it), ``Stage`` is the
last cascade stage it finished, ``Origin`` how it entered the archive, ``FailureClass`` why it
was rejected. The values are the strings the database stores and the prompts show.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Iterable

from discovery.failures import FailureClass


class Status(StrEnum):
    PENDING = "pending"        # still moving through the cascade
    EVALUATED = "evaluated"    # has a fitness (terminal)
    FAILED = "failed"          # rejected with a FailureClass (terminal)
    GATED = "gated"            # scored below DPO's screen gate (terminal)
    DUPLICATE = "duplicate"    # same normalised code or behaviour as an earlier one (terminal)


class Stage(StrEnum):
    """Cascade stages in order; ``NONE`` = nothing finished yet. ``HELDOUT`` runs only for finalists;
    ``FIT`` only in campaigns that fit constants."""

    NONE = ""
    STATIC = "static"
    PROBE = "probe"
    FIT = "fit"  # only with fit.trials > 0: constants and a beta scale fitted (search/fitting.py)
    SCREEN = "screen"
    FITNESS = "fitness"
    HELDOUT = "heldout"


class Origin(StrEnum):
    BASELINE = "baseline"      # a library loss, seeded at generation 0, visible on every island
    PROPOSAL = "proposal"      # a proposer's child of archive programs
    REPAIR = "repair"          # a proposer's fix of a failed proposal


# Failures a repair prompt can plausibly fix (the code, not the machine, was at fault).
REPAIRABLE = frozenset({FailureClass.EXTRACTION, FailureClass.SYNTAX, FailureClass.CONTRACT, FailureClass.UNSAFE,
                        FailureClass.NON_FINITE, FailureClass.WRONG_SHAPE, FailureClass.NO_GRADIENT,
                        FailureClass.MUTATES_INPUT})
ALL_ISLANDS = -1  # baselines belong to every island


def is_dpo(origin: str, name: str) -> bool:
    """The DPO baseline: every gate and every claim is relative to it."""
    return origin == Origin.BASELINE and name.lower() == "dpo"


@dataclass
class Candidate:
    """One archive row. ``stage`` is the last finished stage; ``metrics``/``timings`` are per stage."""

    id: str
    seq: int                   # deterministic global order (generation, slot, sample)
    generation: int
    slot: int
    island: int
    origin: Origin
    name: str
    code: str | None
    code_hash: str | None
    parent_ids: list[str]
    proposer: str
    thought: str = ""
    status: Status = Status.PENDING
    stage: Stage = Stage.NONE
    failure_class: str | None = None   # a FailureClass value (kept as stored: older archives may differ)
    error: str = ""
    duplicate_of: str | None = None
    fingerprint: str | None = None
    behaviour: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    screen_fitness: float | None = None
    fitness: float | None = None
    fitness_se: float | None = None
    heldout: float | None = None
    heldout_se: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    mutable: bool = True       # usable as parent code
    created_at: float | None = None
    updated_at: float | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Candidate":
        values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row}
        values["origin"] = Origin(values["origin"])
        values["status"] = Status(values["status"])
        values["stage"] = Stage(values.get("stage") or "")
        values["thought"] = values.get("thought") or ""
        values["error"] = values.get("error") or ""
        values["behaviour"] = values.get("behaviour") or ""
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (enums as their strings), e.g. for ``prefdisco show --json``."""
        out = dataclasses.asdict(self)
        for key in ("origin", "status", "stage"):
            out[key] = out[key].value
        return out

    @property
    def is_baseline(self) -> bool:
        return self.origin is Origin.BASELINE

    @property
    def is_dpo(self) -> bool:
        return is_dpo(self.origin, self.name)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def find_dpo(candidates: Iterable[Candidate]) -> Candidate | None:
    """The DPO baseline among ``candidates`` (None when the campaign has not seeded it)."""
    return next((c for c in candidates if c.is_dpo), None)
