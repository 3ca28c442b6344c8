"""A quality-diversity view of the archive: MAP-Elites cells on two behaviour descriptors.

Fitness-proportional parent choice lets one family (say, logistic losses) crowd out every other
shape after a few generations, and a shape that needs its constants fixed never gets another try.
MAP-Elites keeps the best program of each behaviour cell and draws parents uniformly from the
occupied cells, so a hinge-like or a bounded loss stays a parent even while it is not the best.

The descriptors come from the sandbox probe's numbers (``dloss_dz`` on its z = beta * margin grid,
stored with the probe stage, or with the fit stage's re-probe of fitted code): nothing is executed
here. ``pull`` is the signed gradient at z = +2 over the largest |gradient| (< 0: still pulls a won
pair apart, 0: saturated or hinge, > 0: pushes it back, IPO-like); ``push`` is |gradient| at z = -4
over the largest (1: a lost pair gets the full pull, < 1: bounded or exponential shapes).
The archive is a function of the stored rows, so a resumed campaign rebuilds exactly the same one.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import Any

from discovery.archive.candidate import Candidate, Stage, Status

PULL_Z = 2.0
PUSH_Z = -4.0
Cell = tuple[int, int]


def _at(z: list[float], g: list[float | None], where: float) -> float | None:
    i = min(range(len(z)), key=lambda j: abs(z[j] - where))
    return g[i]


def descriptors(shape: dict[str, Any] | None) -> tuple[float, float] | None:
    """(pull, push) from a probe's shape curves, or None when it has no usable gradient curve."""
    if not shape:
        return None
    z, g = shape.get("z"), shape.get("dloss_dz")
    if not (isinstance(z, list) and isinstance(g, list) and len(z) == len(g) and z):
        return None
    finite = [abs(x) for x in g if x is not None and math.isfinite(x)]
    scale = max(finite, default=0.0)
    pull, push = _at(z, g, PULL_Z), _at(z, g, PUSH_Z)
    if scale <= 0 or pull is None or push is None:
        return None
    return pull / scale, abs(push) / scale


def cell_of(desc: tuple[float, float], pull_edges: list[float], push_edges: list[float]) -> Cell:
    return bisect.bisect_right(pull_edges, desc[0]), bisect.bisect_right(push_edges, desc[1])


@dataclass
class Elite:
    cell: Cell
    candidate: Candidate
    descriptors: tuple[float, float]


def latest_shape(probe: dict[str, Any] | None, fit: dict[str, Any] | None) -> dict[str, Any] | None:
    """The shape of the code that was scored: the fit stage's re-probe when fitting changed it."""
    refit = (fit or {}).get("probe") or {}
    if refit.get("ok") and refit.get("shape") and not (fit or {}).get("rejected"):
        return refit["shape"]
    return (probe or {}).get("shape")


def elites(db: Any, max_generation: int, pull_edges: list[float], push_edges: list[float]) -> dict[Cell, Elite]:
    """Each occupied cell's best evaluated, mutable program up to `max_generation` (ties: the earlier)."""
    rows = [r for r in db.all(max_generation=max_generation, status=Status.EVALUATED)
            if r.mutable and r.code and r.fitness is not None]
    ids = [r.id for r in rows]
    probes, fits = db.stage_results(ids, Stage.PROBE), db.stage_results(ids, Stage.FIT)
    out: dict[Cell, Elite] = {}
    for r in rows:
        desc = descriptors(latest_shape(probes.get(r.id), fits.get(r.id)))
        if desc is None:
            continue
        cell = cell_of(desc, pull_edges, push_edges)
        held = out.get(cell)
        if held is None or (r.fitness, -r.seq) > (held.candidate.fitness, -held.candidate.seq):
            out[cell] = Elite(cell, r, desc)
    return out


def select_parents(db: Any, max_generation: int, rng: random.Random, pull_edges: list[float],
                   push_edges: list[float], *, k: int = 2) -> list[Candidate]:
    """k elites of distinct occupied cells, drawn uniformly (cells in sorted order, so `rng` decides)."""
    archive = elites(db, max_generation, pull_edges, push_edges)
    cells = sorted(archive)
    return [archive[c].candidate for c in rng.sample(cells, min(k, len(cells)))]
