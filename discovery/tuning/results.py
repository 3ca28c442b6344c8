"""Where tuned scores live: the `tuned_results` table in the campaign database, and the claim.

The leaderboard and the report read `load_tuned_results(db_url)` to show tuned and untuned
scores side by side; `claim` states the winner's result against tuned DPO.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from discovery.archive.candidate import Origin, is_dpo

tuning_metadata = sa.MetaData()
tuned_results = sa.Table(
    "tuned_results", tuning_metadata,
    sa.Column("candidate_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("study_name", sa.String(256), nullable=False),
    sa.Column("result", sa.Text, nullable=False),  # TunedResult as JSON
    sa.Column("updated_at", sa.Float),
)


@dataclass
class TunedResult:
    candidate_id: str
    name: str
    origin: str
    study_name: str
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    defaults: dict[str, Any]
    params: dict[str, Any]  # best trial's parameters (beta and lr in the suite's units)
    untuned_fitness: float | None
    untuned_fitness_se: float | None
    default_trial_fitness: float | None  # trial 0 (untuned settings) as measured by the study
    tuned_fitness: float | None
    tuned_fitness_se: float | None
    untuned_heldout: float | None = None
    untuned_heldout_se: float | None = None
    tuned_heldout: float | None = None
    tuned_heldout_se: float | None = None
    heldout_params: dict[str, Any] = field(default_factory=dict)  # params the tuned held-out used


def save_tuned_result(engine: sa.engine.Engine, result: TunedResult) -> None:
    """Replace the candidate's tuned row (one transaction)."""
    row = {"candidate_id": result.candidate_id, "name": result.name, "origin": result.origin,
           "study_name": result.study_name, "result": json.dumps(asdict(result)), "updated_at": time.time()}
    with engine.begin() as conn:
        conn.execute(tuned_results.delete().where(tuned_results.c.candidate_id == result.candidate_id))
        conn.execute(tuned_results.insert().values(**row))


def load_tuned_result(engine: sa.engine.Engine, candidate_id: str) -> TunedResult | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(tuned_results.c.result).where(
            tuned_results.c.candidate_id == candidate_id)).first()
    return TunedResult(**json.loads(row.result)) if row else None


def claim(results: list[TunedResult]) -> dict[str, Any]:
    """The winner's claim, made against tuned DPO (not DPO at its default beta)."""
    dpo = next((r for r in results if is_dpo(r.origin, r.name)), None)
    found = [r for r in results if r.origin != Origin.BASELINE and r.tuned_fitness is not None]
    if dpo is None or dpo.tuned_fitness is None or not found:
        return {"winner": None, "text": "no tuned candidate to compare with tuned DPO"}
    w = max(found, key=lambda r: r.tuned_fitness)  # type: ignore[arg-type, return-value]
    delta = w.tuned_fitness - dpo.tuned_fitness  # type: ignore[operator]
    ses = [s for s in (w.tuned_fitness_se, dpo.tuned_fitness_se) if s is not None]
    se = math.sqrt(sum(s * s for s in ses)) if len(ses) == 2 else None
    if se:
        verdict = "beats" if delta > se else ("is within one SE of" if delta > -se else "loses to")
    else:
        verdict = "beats (no SE: single seed)" if delta > 0 else "does not beat"
    text = (f"{w.name} ({w.candidate_id}) tuned fitness {w.tuned_fitness:.4f} {verdict} tuned DPO "
            f"{dpo.tuned_fitness:.4f} (delta {delta:+.4f}" + (f", {delta / se:+.1f} SE)" if se else ")"))
    out = {"winner": w.candidate_id, "winner_name": w.name, "tuned_fitness": w.tuned_fitness,
           "tuned_dpo_fitness": dpo.tuned_fitness, "delta": delta, "se": se, "verdict": verdict}
    if w.tuned_heldout is not None and dpo.tuned_heldout is not None:
        out["heldout_delta"] = w.tuned_heldout - dpo.tuned_heldout
        text += f"; held-out at tuned settings: {w.tuned_heldout:.4f} vs DPO {dpo.tuned_heldout:.4f}"
    out["text"] = text
    return out


def load_tuned_results(db_url: str) -> dict[str, dict[str, Any]]:
    """candidate id -> TunedResult dict, for the leaderboard and report ({} if never tuned)."""
    engine = sa.create_engine(db_url)
    try:
        if not sa.inspect(engine).has_table("tuned_results"):
            return {}
        with engine.connect() as conn:
            return {r.candidate_id: json.loads(r.result) for r in conn.execute(sa.select(tuned_results))}
    finally:
        engine.dispose()
