"""The typed archive record and the stage machine the cascade owns."""

from __future__ import annotations

import dataclasses

import pytest

from discovery.archive.candidate import (Candidate, FailureClass, Origin, Stage, Status, find_dpo, is_dpo)
from discovery.search.cascade import SEARCH_STAGES, next_stage


def candidate(**kw) -> Candidate:
    base = dict(id="g001-s00", seq=1_000_000, generation=1, slot=0, island=0, origin=Origin.PROPOSAL, name="c",
                code="def f(): pass\n", code_hash="h", parent_ids=["base-00"], proposer="t")
    return Candidate(**{**base, **kw})


def test_next_stage_walks_the_cascade_then_stops() -> None:
    c = candidate()
    seen = []
    while (stage := next_stage(c)) is not None:
        seen.append(stage)
        c = dataclasses.replace(c, stage=stage)
    assert seen == list(SEARCH_STAGES) == [Stage.STATIC, Stage.PROBE, Stage.SCREEN, Stage.FITNESS]
    for status in (Status.EVALUATED, Status.FAILED, Status.GATED, Status.DUPLICATE):
        assert next_stage(candidate(status=status)) is None  # settled candidates run nothing more
    assert next_stage(candidate(stage=Stage.HELDOUT)) is None


def test_failure_classes_cover_the_sandbox_and_the_proposer_reply() -> None:
    from discovery.sandbox import FailureClass as SandboxFailure

    assert {f.value for f in SandboxFailure} <= {f.value for f in FailureClass}
    assert FailureClass.EXTRACTION == "extraction"


def test_row_round_trip_and_dpo_lookup() -> None:
    c = candidate(status=Status.EVALUATED, stage=Stage.FITNESS, fitness=0.5)
    row = c.to_dict()
    assert row["status"] == "evaluated" and row["origin"] == "proposal" and row["stage"] == "fitness"
    assert Candidate.from_row(row) == c
    dpo = candidate(id="base-00", origin=Origin.BASELINE, name="DPO")
    assert is_dpo("baseline", "dpo") and not is_dpo("proposal", "dpo")
    assert find_dpo([c, dpo]) is dpo and find_dpo([c]) is None
    with pytest.raises(ValueError):
        Candidate.from_row({**row, "status": "lost"})
