"""The program database: every candidate, its lineage, its stage results, islands and migration.

SQLAlchemy Core over SQLite by default (one file in the campaign dir); any SQLAlchemy URL works,
so a PostgreSQL server can hold a multi-machine campaign. Every write is a small transaction that
moves one candidate from one state to the next and is keyed by deterministic ids, so replaying a
step after a crash is a no-op (``record_stage`` refuses to record a stage twice). That is what
makes ``kill -9`` + ``--resume`` lose nothing and redo nothing.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from typing import Any

import sqlalchemy as sa

from discovery.archive.candidate import ALL_ISLANDS, Candidate, Origin, Status, find_dpo
from discovery.crashpoints import maybe_crash

metadata = sa.MetaData()
candidates = sa.Table(
    "candidates", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False, index=True),  # deterministic global order
    sa.Column("generation", sa.Integer, nullable=False, index=True),
    sa.Column("slot", sa.Integer, nullable=False),
    sa.Column("island", sa.Integer, nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),  # baseline | proposal | repair
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("code", sa.Text),
    sa.Column("code_hash", sa.String(64), index=True),
    sa.Column("fingerprint", sa.String(128), index=True),
    sa.Column("parent_ids", sa.Text, nullable=False, default="[]"),
    sa.Column("proposer", sa.String(64), nullable=False),
    sa.Column("thought", sa.Text, default=""),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # a Status value
    sa.Column("stage", sa.String(16), nullable=False, default=""),  # last finished stage
    sa.Column("failure_class", sa.String(32)),
    sa.Column("error", sa.Text, default=""),
    sa.Column("duplicate_of", sa.String(64)),
    sa.Column("behaviour", sa.Text, default=""),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),  # per-stage summary JSON
    sa.Column("timings", sa.Text, nullable=False, default="{}"),  # per-stage seconds JSON
    sa.Column("screen_fitness", sa.Float),
    sa.Column("fitness", sa.Float),
    sa.Column("fitness_se", sa.Float),
    sa.Column("heldout", sa.Float),
    sa.Column("heldout_se", sa.Float),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cost_usd", sa.Float, nullable=False, default=0.0),
    sa.Column("mutable", sa.Boolean, nullable=False, default=True),  # usable as parent code
    sa.Column("created_at", sa.Float),
    sa.Column("updated_at", sa.Float),
)
evaluations = sa.Table(  # raw stage results; the PK makes each stage happen at most once
    "evaluations", metadata,
    sa.Column("candidate_id", sa.String(64), primary_key=True),
    sa.Column("stage", sa.String(16), primary_key=True),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("wall_time_s", sa.Float, nullable=False),
)
migrations = sa.Table(
    "migrations", metadata,
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("candidate_id", sa.String(64), primary_key=True),
    sa.Column("to_island", sa.Integer, primary_key=True),
)
replies = sa.Table(  # an LLM candidate's reply as received (a conversation shows it back to the model)
    "replies", metadata,
    sa.Column("candidate_id", sa.String(64), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
)
meta = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
JSON_COLUMNS = ("parent_ids", "metrics", "timings")


def candidate_id(generation: int, slot: int, sample: int = 0, origin: str = Origin.PROPOSAL) -> str:
    if origin == Origin.BASELINE:
        return f"base-{slot:02d}"
    return f"g{generation:03d}-s{slot:02d}" + (f"-{sample}" if sample else "") + ("-r" if origin == Origin.REPAIR else "")


def sequence_number(generation: int, slot: int, sample: int = 0) -> int:
    return generation * 1_000_000 + slot * 100 + sample


def _decode(row: Any) -> Candidate:
    d = dict(row._mapping)
    for key in JSON_COLUMNS:
        if key in d and isinstance(d[key], str):
            d[key] = json.loads(d[key])
    return Candidate.from_row(d)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Column values as the database stores them (enums as their strings, JSON columns as text)."""
    out = {k: (v.value if hasattr(v, "value") and not isinstance(v, (int, float)) else v) for k, v in values.items()}
    for key in JSON_COLUMNS:
        if key in out:
            out[key] = json.dumps(out[key])
    return out


class ProgramDatabase:
    """Candidates, stage results, islands. Thread-safe through SQLAlchemy's pool + short transactions."""

    def __init__(self, url: str):
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.url = url
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # durable and concurrent-reader friendly
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.close()
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- writes -------------------------------------------------------------------------------
    def add_candidate(self, c: Candidate, reply: str = "") -> bool:
        """Insert a newly proposed (or seeded) candidate, with the LLM reply it came from if any, unless
        present (idempotent); True if this call inserted it."""
        now = time.time()
        row = _plain({**c.__dict__, "stage": "", "metrics": {}, "timings": {}, "created_at": now, "updated_at": now})
        with self.engine.begin() as conn:
            if conn.execute(sa.select(candidates.c.id).where(candidates.c.id == c.id)).first():
                return False
            conn.execute(candidates.insert().values(**row))
            if reply:
                conn.execute(replies.insert().values(candidate_id=c.id, text=reply))
            maybe_crash("db_write")
        return True

    def record_stage(self, cid: str, stage: str, *, result: dict[str, Any], wall_time_s: float,
                     updates: dict[str, Any] | None = None) -> bool:
        """Atomically store one finished stage and the candidate's new state.

        Returns False (and changes nothing) if this stage was already recorded: replay-safe.
        """
        updates = dict(updates or {})
        with self.engine.begin() as conn:
            done = conn.execute(sa.select(evaluations.c.stage).where(
                evaluations.c.candidate_id == cid, evaluations.c.stage == stage)).first()
            if done:
                return False
            cur = conn.execute(sa.select(candidates.c.metrics, candidates.c.timings)
                               .where(candidates.c.id == cid)).first()
            if cur is None:
                raise KeyError(cid)
            metrics_json = json.loads(cur.metrics)
            timings = json.loads(cur.timings)
            if "metrics" in updates:
                metrics_json[stage] = updates.pop("metrics")
            timings[stage] = round(wall_time_s, 4)
            conn.execute(evaluations.insert().values(candidate_id=cid, stage=stage,
                                                     result=json.dumps(result), wall_time_s=wall_time_s))
            conn.execute(candidates.update().where(candidates.c.id == cid).values(
                stage=str(stage), metrics=json.dumps(metrics_json), timings=json.dumps(timings),
                updated_at=time.time(), **_plain(updates)))
            maybe_crash("db_write")
        return True

    def update(self, cid: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(candidates.update().where(candidates.c.id == cid).values(updated_at=time.time(),
                                                                                   **_plain(values)))

    def set_meta(self, key: str, value: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(meta.delete().where(meta.c.key == key))
            conn.execute(meta.insert().values(key=key, value=json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).first()
        return json.loads(row.value) if row else default

    def fit_trials(self, cid: str) -> list[dict[str, Any]]:
        """The fit-stage trials of `cid` finished so far (kept until the stage is recorded, for resume)."""
        return list(self.get_meta(f"fit_trials/{cid}", []))

    def add_fit_trial(self, cid: str, trial: dict[str, Any]) -> None:
        """Store one finished fit trial (in trial order: one candidate's trials run one at a time)."""
        self.set_meta(f"fit_trials/{cid}", [*self.fit_trials(cid), trial])

    # ---- reads --------------------------------------------------------------------------------
    def get(self, cid: str) -> Candidate | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(candidates).where(candidates.c.id == cid)).first()
        return _decode(row) if row else None

    def stage_result(self, cid: str, stage: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(evaluations.c.result).where(
                evaluations.c.candidate_id == cid, evaluations.c.stage == stage)).first()
        return json.loads(row.result) if row else None

    def all(self, *, generation: int | None = None, max_generation: int | None = None,
            status: str | tuple[str, ...] | None = None) -> list[Candidate]:
        q = sa.select(candidates).order_by(candidates.c.seq)
        if generation is not None:
            q = q.where(candidates.c.generation == generation)
        if max_generation is not None:
            q = q.where(candidates.c.generation <= max_generation)
        if status is not None:
            q = q.where(candidates.c.status.in_([status] if isinstance(status, str) else list(status)))
        with self.engine.connect() as conn:
            return [_decode(r) for r in conn.execute(q)]

    def first_with(self, column: str, value: str, before_seq: int) -> Candidate | None:
        """The earliest candidate (by seq) before `before_seq` with this hash/fingerprint."""
        col = candidates.c[column]
        q = (sa.select(candidates).where(col == value, candidates.c.seq < before_seq)
             .order_by(candidates.c.seq).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return _decode(row) if row else None

    def stage_results(self, ids: list[str], stage: str) -> dict[str, dict[str, Any]]:
        """The recorded results of one stage for these candidates (those that have one)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(evaluations.c.candidate_id, evaluations.c.result).where(
                evaluations.c.stage == str(stage), evaluations.c.candidate_id.in_(list(ids)))).all()
        return {r.candidate_id: json.loads(r.result) for r in rows}

    def replies(self, ids: list[str]) -> dict[str, str]:
        """The stored LLM replies of these candidates (those that have one)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(replies).where(replies.c.candidate_id.in_(list(ids)))).all()
        return {r.candidate_id: r.text for r in rows}

    def count_evaluations(self, stage: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(evaluations)
        if stage:
            q = q.where(evaluations.c.stage == stage)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    # ---- islands, selection, migration --------------------------------------------------------
    def island_members(self, island: int, max_generation: int) -> list[Candidate]:
        """Evaluated programs visible on `island` up to `max_generation` (own, baselines, migrants)."""
        rows = self.all(max_generation=max_generation, status=Status.EVALUATED)
        with self.engine.connect() as conn:
            migrants = {r.candidate_id for r in conn.execute(sa.select(migrations.c.candidate_id).where(
                migrations.c.to_island == island, migrations.c.generation <= max_generation))}
        return [r for r in rows if r.island in (island, ALL_ISLANDS) or r.id in migrants]

    def select_parents(self, island: int, max_generation: int, child_generation: int,
                       rng: random.Random, *, k: int = 2, lam: float = 1.0) -> list[Candidate]:
        """Draw k distinct parents: weight sigmoid(lam*(s - median)/MAD) / (1 + children).

        The sigmoid rewards good programs without letting one dominate; dividing by the number of
        children already made spreads effort to under-explored programs (ShinkaEvolve's rule).
        """
        pool = [r for r in self.island_members(island, max_generation)
                if r.mutable and r.code and r.fitness is not None]
        if not pool:
            return []
        scores = [r.fitness for r in pool]
        med = statistics.median(scores)
        mad = statistics.median([abs(s - med) for s in scores]) or (statistics.pstdev(scores) or 1.0)
        children = self._children_counts(child_generation)
        weights = [1.0 / (1.0 + math.exp(-lam * (r.fitness - med) / mad)) / (1 + children.get(r.id, 0))
                   for r in pool]
        chosen: list[Candidate] = []
        for _ in range(min(k, len(pool))):
            pick = rng.choices(range(len(pool)), weights=weights)[0]
            chosen.append(pool[pick])
            weights[pick] = 0.0
            if sum(weights) <= 0:
                break
        return chosen

    def _children_counts(self, before_generation: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(candidates.c.parent_ids).where(
                    candidates.c.generation < before_generation)):
                for pid in json.loads(row.parent_ids):
                    counts[pid] = counts.get(pid, 0) + 1
        return counts

    def migrate(self, generation: int, islands: int, max_generation: int) -> list[tuple[str, int]]:
        """Ring migration: each island's best own program joins the next island (idempotent)."""
        moved = []
        with self.engine.begin() as conn:
            for island in range(islands):
                own = [r for r in self.island_members(island, max_generation)
                       if r.island == island and r.fitness is not None]
                if not own:
                    continue
                best = max(own, key=lambda r: (r.fitness, -r.seq))
                to = (island + 1) % islands
                exists = conn.execute(sa.select(migrations).where(
                    migrations.c.generation == generation, migrations.c.candidate_id == best.id,
                    migrations.c.to_island == to)).first()
                if not exists:
                    conn.execute(migrations.insert().values(generation=generation, candidate_id=best.id,
                                                            to_island=to))
                moved.append((best.id, to))
        return moved

    def migration_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(migrations).order_by(
                migrations.c.generation, migrations.c.candidate_id))]

    def leaderboard(self) -> list[Candidate]:
        """Every candidate, best fitness first (unevaluated ones after, in order)."""
        rows = self.all()
        return sorted(rows, key=lambda r: (r.fitness is None, -(r.fitness or 0.0), r.seq))

    def dpo(self) -> Candidate | None:
        """The DPO baseline, against which every gate and claim is made."""
        return find_dpo(self.all(generation=0))
