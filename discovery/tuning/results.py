"""Where tuned scores live: the `tuned_results` table in the campaign database, and the claim.

The leaderboard and the report read `load_tuned_results(db_url)` to show tuned and untuned
scores side by side; `claim` gives the held-out verdict of tuned finalists against tuned DPO.
"""

from __future__ import annotations

import json
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
    params: dict[str, Any]  # best trial's parameters (beta and lr in the held-out suite's units)
    untuned_fitness: float | None
    untuned_fitness_se: float | None
    default_trial_fitness: float | None  # trial 0 (untuned settings) on the training split
    tuned_fitness: float | None  # best trial on the training split (the study's objective)
    tuned_fitness_se: float | None
    untuned_heldout: float | None = None
    untuned_heldout_se: float | None = None
    tuned_heldout: float | None = None
    tuned_heldout_se: float | None = None
    heldout_params: dict[str, Any] = field(default_factory=dict)  # params the tuned held-out used
    tuning_suite: str = ""  # what the study tuned on: the held-out tier's training split
    tuned_heldout_result: dict[str, Any] | None = None  # compact SuiteResult of the tuned held-out runs


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


def compact_result(value: dict[str, Any]) -> dict[str, Any]:
    """A stored SuiteResult dict without training curves: what a paired comparison needs, kept small."""
    return {**value, "runs": [{**r, "curve": []} for r in value.get("runs") or []]}


def claim(results: list[TunedResult], scoring: Any = None) -> dict[str, Any]:
    """The winner's claim: tuned finalists against tuned DPO on the held-out suite, paired by seed
    (each loss at its own tuned beta; seeds, data, labels and noise common)."""
    from discovery.archive.verdict import heldout_verdict
    from evaluators.suites import Scoring

    dpo = next((r for r in results if is_dpo(r.origin, r.name)), None)
    finalists = [(r.candidate_id, r.name, r.tuned_heldout_result) for r in results if r.origin != Origin.BASELINE]
    verdict = heldout_verdict(finalists, dpo.tuned_heldout_result if dpo else None, scoring or Scoring(), tuned=True)
    out = verdict.to_dict()
    out["winner"] = verdict.best_id if verdict.beats else None
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
