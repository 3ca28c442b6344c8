"""MAP-Elites view of the archive: descriptors from stored probe curves, best per cell, resume-stable."""

from __future__ import annotations

import math
import random

import pytest

from discovery.archive import map_elites
from discovery.archive.candidate import Candidate
from discovery.archive.database import ProgramDatabase, candidate_id, sequence_number
from discovery.config import DatabaseConfig, config_from_dict
from discovery.errors import UserError

Z = [round(-5.0 + 0.125 * i, 6) for i in range(81)]
EDGES = DatabaseConfig()


def dpo_like(scale: float = 1.0) -> dict:
    return {"z": Z, "dloss_dz": [-scale / (1.0 + math.exp(z)) for z in Z]}


def hinge_like() -> dict:
    return {"z": Z, "dloss_dz": [-1.0 if z < 1.0 else 0.0 for z in Z]}


def ipo_like() -> dict:
    return {"z": Z, "dloss_dz": [2.0 * (z - 1.0) for z in Z]}


def add(db: ProgramDatabase, g: int, s: int, fitness: float | None, shape: dict, *, status: str = "evaluated") -> str:
    cid = candidate_id(g, s)
    db.add_candidate(Candidate(id=cid, seq=sequence_number(g, s), generation=g, slot=s, island=0, origin="proposal",
                               name=f"n{g}{s}", code=f"def f{g}{s}(): pass", code_hash=f"h{g}{s}", parent_ids=[],
                               proposer="t"))
    db.record_stage(cid, "probe", result={"ok": True, "shape": shape}, wall_time_s=0.0, updates={})
    db.update(cid, status=status, fitness=fitness)
    return cid


def test_descriptors_separate_logistic_hinge_and_squared_shapes():
    dpo, hinge, ipo = (map_elites.descriptors(s) for s in (dpo_like(), hinge_like(), ipo_like()))
    assert dpo[0] < -0.05 and dpo[1] > 0.95  # still pulls a won pair; full pull on a lost one
    assert hinge == (0.0, 1.0)  # nothing beyond the margin
    assert ipo[0] > 0 and ipo[1] < 0.95  # pushes a won pair back; bounded relative pull
    cells = {map_elites.cell_of(d, EDGES.pull_edges, EDGES.push_edges) for d in (dpo, hinge, ipo)}
    assert len(cells) == 3
    assert map_elites.descriptors({"z": Z, "dloss_dz": [0.0] * len(Z)}) is None


def test_each_cell_keeps_its_best_and_different_cells_survive(tmp_path):
    db = ProgramDatabase(f"sqlite:///{tmp_path / 'c.db'}")
    weak_dpo = add(db, 1, 0, 0.30, dpo_like())
    strong_dpo = add(db, 1, 1, 0.50, dpo_like(2.0))  # same cell (descriptors are scale-free)
    hinge = add(db, 1, 2, 0.10, hinge_like())  # much worse, but alone in its cell
    add(db, 1, 3, 0.90, ipo_like(), status="failed")  # not evaluated: never an elite
    add(db, 2, 0, 0.95, ipo_like())  # beyond the visible generation
    archive = map_elites.elites(db, 1, EDGES.pull_edges, EDGES.push_edges)
    assert sorted(e.candidate.id for e in archive.values()) == sorted([strong_dpo, hinge])
    assert weak_dpo not in {e.candidate.id for e in archive.values()}
    picks = {tuple(sorted(p.id for p in map_elites.select_parents(db, 1, random.Random(i), EDGES.pull_edges,
                                                                     EDGES.push_edges, k=2))) for i in range(20)}
    assert picks == {tuple(sorted([strong_dpo, hinge]))}  # two distinct cells, the weak hinge among them
    with_next = map_elites.elites(db, 2, EDGES.pull_edges, EDGES.push_edges)
    assert len(with_next) == 3
    db.close()


def test_a_resumed_database_rebuilds_the_same_archive_and_draws(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    db = ProgramDatabase(url)
    for s, (f, shape) in enumerate([(0.3, dpo_like()), (0.2, hinge_like()), (0.4, ipo_like()), (0.5, dpo_like(3))]):
        add(db, 1, s, f, shape)
    before = {c: (e.candidate.id, e.descriptors) for c, e in map_elites.elites(db, 1, EDGES.pull_edges,
                                                                                 EDGES.push_edges).items()}
    draws = [p.id for p in map_elites.select_parents(db, 1, random.Random(7), EDGES.pull_edges, EDGES.push_edges)]
    db.close()
    db = ProgramDatabase(url)
    after = {c: (e.candidate.id, e.descriptors) for c, e in map_elites.elites(db, 1, EDGES.pull_edges,
                                                                                EDGES.push_edges).items()}
    assert after == before and len(after) == 3
    assert [p.id for p in map_elites.select_parents(db, 1, random.Random(7), EDGES.pull_edges,
                                                    EDGES.push_edges)] == draws
    db.close()


def test_fit_stage_reprobe_is_the_descriptor_source_when_it_changed_the_code():
    fit = {"probe": {"ok": True, "shape": hinge_like()}}
    assert map_elites.latest_shape({"shape": dpo_like()}, fit) == hinge_like()
    assert map_elites.latest_shape({"shape": dpo_like()}, {**fit, "rejected": "probe failed"}) == dpo_like()
    assert map_elites.latest_shape({"shape": dpo_like()}, None) == dpo_like()


def test_config_rejects_unsorted_edges():
    with pytest.raises(UserError):
        config_from_dict({"database": {"kind": "map_elites", "push_edges": [0.5, 0.2]}})
    assert config_from_dict({"database": {"kind": "map_elites"}}).database.kind == "map_elites"
