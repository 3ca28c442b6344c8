"""Program database: idempotent writes, once-only stages, selection, migration, dedupe lookups."""

from __future__ import annotations

import random

from discovery.archive.candidate import ALL_ISLANDS, Candidate
from discovery.archive.database import ProgramDatabase, candidate_id, sequence_number


def make_db(tmp_path) -> ProgramDatabase:
    return ProgramDatabase(f"sqlite:///{tmp_path / 'campaign.db'}")


def add(db, g, s, *, island=0, fitness=None, code=None, h=None, parents=(), origin="proposal"):
    cid = candidate_id(g, s, origin=origin)
    db.add_candidate(Candidate(id=cid, seq=sequence_number(g, s), generation=g, slot=s, island=island,
                               origin=origin, name=f"n{g}{s}", code=code or f"def f{g}{s}(): pass",
                               code_hash=h or f"h{g}{s}", parent_ids=list(parents), proposer="t"))
    if fitness is not None:
        db.update(cid, status="evaluated", fitness=fitness)
    return cid


def test_add_candidate_is_idempotent_and_stage_recorded_once(tmp_path):
    db = make_db(tmp_path)
    cid = add(db, 1, 0)
    assert add(db, 1, 0) == cid and len(db.all()) == 1
    assert db.record_stage(cid, "static", result={"ok": True}, wall_time_s=0.1, updates={})
    assert not db.record_stage(cid, "static", result={"ok": False}, wall_time_s=0.1,
                               updates={"status": "failed"})
    row = db.get(cid)
    assert row.stage == "static" and row.status == "pending" and db.count_evaluations() == 1
    db.record_stage(cid, "screen", result={"fitness": 0.3}, wall_time_s=2.0,
                    updates={"screen_fitness": 0.3, "metrics": {"fitness": 0.3}})
    row = db.get(cid)
    assert row.metrics == {"screen": {"fitness": 0.3}} and row.timings == {"static": 0.1, "screen": 2.0}
    assert db.stage_result(cid, "screen") == {"fitness": 0.3}


def test_first_with_finds_earliest_earlier_duplicate(tmp_path):
    db = make_db(tmp_path)
    add(db, 1, 0, h="same")
    add(db, 1, 1, h="same")
    assert db.first_with("code_hash", "same", before_seq=sequence_number(1, 1)).id == "g001-s00"
    assert db.first_with("code_hash", "same", before_seq=sequence_number(1, 0)) is None


def test_selection_favours_fitness_but_spreads_over_children(tmp_path):
    db = make_db(tmp_path)
    add(db, 0, 0, island=ALL_ISLANDS, fitness=0.1, origin="baseline")
    for s, f in enumerate([0.2, 0.3, 0.9]):
        add(db, 1, s, fitness=f)
    rng = random.Random(0)
    picks = [db.select_parents(0, 1, 2, rng, k=1)[0].id for _ in range(400)]
    assert picks.count("g001-s02") > picks.count("g001-s00") * 2
    # once the best has many children its weight drops below an unexplored program's
    for s in range(10):
        add(db, 2, s, parents=["g001-s02"])
    picks2 = [db.select_parents(0, 1, 3, random.Random(i), k=1)[0].id for i in range(400)]
    assert picks2.count("g001-s02") < picks.count("g001-s02") / 2
    assert [r.id for r in db.select_parents(0, 1, 2, random.Random(5), k=2)] == \
           [r.id for r in db.select_parents(0, 1, 2, random.Random(5), k=2)]


def test_islands_and_ring_migration(tmp_path):
    db = make_db(tmp_path)
    add(db, 0, 0, island=ALL_ISLANDS, fitness=0.1, origin="baseline")
    add(db, 1, 0, island=0, fitness=0.8)
    add(db, 1, 1, island=1, fitness=0.4)
    assert {r.id for r in db.island_members(1, 1)} == {"base-00", "g001-s01"}
    moved = db.migrate(4, 2, 1)
    assert moved == [("g001-s00", 1), ("g001-s01", 0)]
    assert db.migrate(4, 2, 1) == moved and len(db.migration_rows()) == 2  # idempotent
    assert {r.id for r in db.island_members(1, 4)} == {"base-00", "g001-s01", "g001-s00"}
