"""The campaign runner: propose -> record -> cascade -> record, generation by generation.

Determinism and resume rest on three rules:
1. Generation g's proposals see only the archive up to generation g-1-lag (lag=1 lets the workers
   evaluate generation g-1 while g is being proposed), and every random choice for slot s of
   generation g comes from a seed derived from (campaign seed, g, s).
2. Every proposal is recorded (under id g<g>-s<s>) before it is evaluated, and every finished
   stage is recorded in one transaction that refuses to run twice. A resumed run reuses recorded
   proposals (an LLM is never asked twice for a recorded slot) and continues each candidate from
   its last finished stage.
3. Order-dependent decisions (duplicate-by-fingerprint) are taken in id order after the whole
   generation's probes (and the previous generation's) are in.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import dataclasses
import hashlib
import math
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discovery import crashpoints
from discovery.cascade import Cascade, StageOutcome
from discovery.code_manipulation import code_hash
from discovery.config import CampaignConfig, config_from_dict, dump_config, resolve_paths
from discovery.database import ALL_ISLANDS, NewCandidate, ProgramDatabase, candidate_id, sequence_number
from discovery.errors import UserError
from discovery.progress import CampaignLog, ProgressView
from discovery.prompting import ProgramSummary, ProposalContext, RepairContext
from discovery.proposers import Proposal, Proposer, make_proposer

CONFIG_FILE = "config.resolved.yaml"
DB_FILE = "campaign.db"
LOG_FILE = "log.jsonl"
INFRASTRUCTURE = "infrastructure"  # a failure outside the candidate (sandbox, worker, packages)
REPAIRABLE = {"extraction", "syntax", "contract", "unsafe", "non_finite", "wrong_shape", "no_gradient",
              "mutates_input"}


def derive_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def baseline_code(source: str) -> str:
    """A registered baseline's source as standalone candidate code (decorators dropped)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            node.decorator_list = []
    return ast.unparse(tree) + "\n"


def summary_of(row: dict[str, Any]) -> ProgramSummary:
    """Archive row -> what a proposer may see. Held-out columns are deliberately not copied."""
    fitness_metrics = (row.get("metrics") or {}).get("fitness") or {}
    return ProgramSummary(
        id=row["id"], name=row["name"], code=row["code"] or "", fitness=row["fitness"],
        fitness_se=row["fitness_se"], screen_fitness=row["screen_fitness"],
        metrics={k: v for k, v in (fitness_metrics.get("per_task") or {}).items() if v is not None},
        behaviour=row.get("behaviour") or "", generation=row["generation"], proposer=row["proposer"],
        thought=(row.get("thought") or "")[:400],
    )


@dataclass
class CampaignResult:
    out_dir: Path
    candidates: int
    evaluated: int
    best_id: str | None
    best_fitness: float | None
    best_fitness_se: float | None
    dpo_fitness: float | None
    dpo_fitness_se: float | None
    stopped_by: str
    wall_time_s: float


class CampaignCannotEvaluate(UserError):
    """The baselines (DPO first) or the sandbox failed for a reason outside any candidate."""


class Campaign:
    """One campaign directory. Build with `Campaign.create(config, dir)` or `Campaign.resume(dir)`."""

    def __init__(self, config: CampaignConfig, out_dir: Path, *, pool: Any = None, proposer: Proposer | None = None,
                 validate: Any = None, progress: ProgressView | None = None):
        self.config = config
        self.out_dir = Path(out_dir)
        self.db = ProgramDatabase(config.database.url or f"sqlite:///{self.out_dir / DB_FILE}")
        self.log = CampaignLog(self.out_dir / LOG_FILE)
        self._own_pool = pool is None
        cascade_cfg = config.cascade
        if not cascade_cfg.cache_dir:  # resolve here: sandbox workers get a stripped environment
            cascade_cfg = dataclasses.replace(cascade_cfg)
            cascade_cfg.cache_dir = os.environ.get("PREFDISCO_CACHE") or str(Path.home() / ".cache" / "prefdisco")
        if pool is None:  # the config's executor: sandboxed workers here or on a Ray cluster
            from discovery.executors import make_executor
            from discovery.sandbox import SandboxLimits

            pool = make_executor(config.executor, num_workers=config.workers, ray_address=config.ray_address,
                                 num_gpus_per_worker=config.num_gpus_per_worker,
                                 limits=SandboxLimits(cache_dir=cascade_cfg.cache_dir))
        self.pool = pool
        self.proposer = proposer or make_proposer(config.proposer)
        self.cascade = Cascade(pool, cascade_cfg, validate=validate)
        self.progress = progress or ProgressView()
        self._stop = threading.Event()
        self._stages = cf.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="stage")
        self._generations = cf.ThreadPoolExecutor(max_workers=config.pipeline_lag + 2, thread_name_prefix="gen")
        self._probed: dict[int, threading.Event] = {}
        self._baseline_failures: dict[str, StageOutcome] = {}
        self._futures: dict[int, cf.Future] = {}
        self.started = time.time()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, config: CampaignConfig, out_dir: str | Path, **kwargs: Any) -> "Campaign":
        out = Path(out_dir)
        if (out / DB_FILE).exists() or (out / CONFIG_FILE).exists():
            raise UserError(f"{out} already holds a campaign; use `prefdisco run --resume {out}` or another --out")
        resolve_paths(config, Path.cwd())
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(dump_config(config))
        return cls(config, out, **kwargs)

    @classmethod
    def resume(cls, out_dir: str | Path, **kwargs: Any) -> "Campaign":
        import yaml

        out = Path(out_dir)
        if not (out / CONFIG_FILE).exists():
            raise UserError(f"{out} is not a campaign directory (no {CONFIG_FILE}); start one with `prefdisco run CONFIG`")
        return cls(config_from_dict(yaml.safe_load((out / CONFIG_FILE).read_text())), out, **kwargs)

    def close(self) -> None:
        """Stop threads and workers; on interrupt, kill in-flight jobs rather than wait for them."""
        self._stages.shutdown(wait=False, cancel_futures=True)
        self._generations.shutdown(wait=False, cancel_futures=True)
        if self._own_pool:
            if self._stop.is_set():
                for worker in list(getattr(self.pool, "workers", []) or []):
                    if worker is not None and hasattr(worker, "kill"):
                        worker.kill()
            self.pool.close()
        self.db.close()

    # ---- main loop ----------------------------------------------------------------------------
    def run(self) -> CampaignResult:
        cfg = self.config
        self.log.event("campaign_start", name=cfg.name, seed=cfg.seed, resumed=bool(self.db.all()))
        stopped_by = "budget: max_candidates"
        try:
            with self.progress:
                self._seed_baselines()
                self._launch(0)
                self._wait(0)
                self._check_baselines()
                g = 1
                while True:
                    slots = min(cfg.generation_size, cfg.budget.max_candidates - (g - 1) * cfg.generation_size)
                    if slots <= 0:
                        break
                    visible = max(0, g - 1 - cfg.pipeline_lag)
                    self._wait(visible)
                    reason = self._budget_exhausted()
                    if reason:
                        stopped_by = reason
                        break
                    if cfg.database.islands > 1 and g % cfg.database.migration_interval == 0:
                        for cid, to in self.db.migrate(g, cfg.database.islands, visible):
                            self.log.event("migration", generation=g, candidate=cid, to_island=to)
                    if not self._propose_generation(g, slots, visible):
                        stopped_by = self._budget_exhausted() or "budget"
                        self._launch(g)
                        break
                    self._launch(g)
                    self.progress.update(self.db.all(), generation=g)
                    g += 1
                for gen in sorted(self._futures):
                    self._wait(gen)
                self.progress.update(self.db.all(), generation=g, note="held-out suite for the finalists…")
                self._heldout()
                self.progress.update(self.db.all(), generation=g, note="done")
        except KeyboardInterrupt:
            self._stop.set()
            self.log.event("interrupted")
            self.progress.console.print(f"[yellow]interrupted; resume with: prefdisco run --resume {self.out_dir}")
            stopped_by = "interrupted"
            raise
        finally:
            self.close()
        result = self.result(stopped_by)
        self.log.event("campaign_end", stopped_by=stopped_by, best=result.best_id,
                       best_fitness=result.best_fitness, dpo_fitness=result.dpo_fitness,
                       wall_time_s=round(result.wall_time_s, 3))
        return result

    def _check_baselines(self) -> None:
        """Without a working DPO baseline there is nothing to compare with: stop loudly."""
        out = next((o for name, o in self._baseline_failures.items() if name.lower() == "dpo"), None)
        if out is not None:
            self._stop.set()
            raise CampaignCannotEvaluate(
                f"cannot evaluate: the DPO baseline failed its {out.stage} stage "
                f"[{out.failure_class}]: {' '.join(out.message.split())[:600]} (run `prefdisco "
                f"evaluate --loss dpo` to see why; resume with `prefdisco run --resume {self.out_dir}`)")

    def _wait(self, generation: int) -> None:
        future = self._futures.get(generation)
        if future is None:
            return
        while True:
            try:
                future.result(timeout=0.5)
                return
            except cf.TimeoutError:
                self.progress.update(self.db.all(), generation=generation)

    def _launch(self, generation: int) -> None:
        if generation not in self._futures:
            self._probed.setdefault(generation, threading.Event())
            self._futures[generation] = self._generations.submit(self._evaluate_generation, generation)

    def _budget_exhausted(self) -> str | None:
        b = self.config.budget
        if b.max_wall_time_s is not None and time.time() - self.started > b.max_wall_time_s:
            return "budget: wall time"
        rows = [r for r in self.db.all() if r["origin"] != "baseline"]
        if b.max_tokens is not None and sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) >= b.max_tokens:
            return "budget: tokens"
        if b.max_cost_usd is not None and sum(r["cost_usd"] for r in rows) >= b.max_cost_usd:
            return "budget: cost"
        return None

    # ---- proposals ----------------------------------------------------------------------------
    def _seed_baselines(self) -> None:
        from candidate_losses import get_loss

        for slot, name in enumerate(self.config.baselines):
            spec = get_loss(name)
            code = baseline_code(spec.source)
            mutable = not self.cascade.validate(code)
            self.db.add_candidate(NewCandidate(
                id=candidate_id(0, slot, origin="baseline"), seq=sequence_number(0, slot), generation=0,
                slot=slot, island=ALL_ISLANDS, origin="baseline", name=spec.name, code=code,
                code_hash=code_hash(code), parent_ids=[], proposer="baseline", thought=spec.summary,
                mutable=mutable))

    def _propose_generation(self, g: int, slots: int, visible: int) -> bool:
        """Record proposals for every slot of generation g (slots already recorded are kept)."""
        cfg = self.config
        existing = {r["slot"] for r in self.db.all(generation=g)}
        repairs = self._repair_targets(g, visible) if cfg.proposer.llm.repair else []
        dpo = next((r for r in self.db.all(generation=0) if r["name"].lower() == "dpo"), None)
        for slot in range(slots):
            if slot in existing:
                continue
            if self._stop.is_set():
                return False
            if self._budget_exhausted():
                return False
            seed = derive_seed(cfg.seed, g, slot)
            rng = random.Random(seed)
            island = slot % cfg.database.islands
            if slot < len(repairs):
                target = repairs[slot]
                proposals = self.proposer.repair(RepairContext(  # type: ignore[attr-defined]
                    generation=g, seed=seed, failed=summary_of(target),
                    failure_class=target["failure_class"], message=target["error"] or ""))
                origin = "repair"
                island = target["island"] if target["island"] != ALL_ISLANDS else island
            else:
                parents = self.db.select_parents(island, visible, g, rng, k=2, lam=cfg.database.selection_lambda)
                chosen = {p["id"] for p in parents}
                members = sorted(self.db.island_members(island, visible),
                                 key=lambda r: (-(r["fitness"] if r["fitness"] is not None else -math.inf), r["seq"]))
                inspirations = [summary_of(r) for r in members if r["id"] not in chosen][: cfg.proposer.inspirations]
                context = ProposalContext(
                    generation=g, island=island, slot=slot, seed=seed, parents=[summary_of(p) for p in parents],
                    inspirations=inspirations, dpo_fitness=dpo["fitness"] if dpo else None,
                    samples=cfg.proposer.llm.samples if cfg.proposer.kind == "llm" else 1)
                proposals = self.proposer.propose(context) if context.parents else []
                origin = "proposal"
            crashpoints.maybe_crash("proposal")
            for k, proposal in enumerate(proposals):
                self._record_proposal(g, slot, k, island, origin, proposal)
        return True

    def _repair_targets(self, g: int, visible: int) -> list[dict[str, Any]]:
        if not hasattr(self.proposer, "repair"):
            return []
        repaired = {pid for r in self.db.all(max_generation=g - 1) if r["origin"] == "repair" for pid in r["parent_ids"]}
        failed = [r for r in self.db.all(max_generation=visible, status="failed")
                  if r["origin"] == "proposal" and r["failure_class"] in REPAIRABLE and r["id"] not in repaired
                  and r["generation"] >= 1]
        return failed[: self.config.generation_size // 2]

    def _record_proposal(self, g: int, slot: int, k: int, island: int, origin: str, p: Proposal) -> None:
        cid = candidate_id(g, slot, k, origin=origin)
        seq = sequence_number(g, slot, k)
        h = code_hash(p.code) if p.code else None
        dup = self.db.first_with("code_hash", h, before_seq=seq) if h else None
        status, failure, error = "pending", None, p.error
        if dup is not None:
            status, error = "duplicate", f"same normalised code as {dup['id']}"
        inserted = self.db.add_candidate(NewCandidate(
            id=cid, seq=seq, generation=g, slot=slot, island=island, origin=origin, name=p.name, code=p.code,
            code_hash=h, parent_ids=p.parent_ids, proposer=p.proposer, thought=p.thought,
            prompt_tokens=p.prompt_tokens, completion_tokens=p.completion_tokens, cost_usd=p.cost_usd,
            status=status, failure_class=failure, error=error, duplicate_of=dup["id"] if dup else None))
        if inserted:
            self.log.event("proposed", id=cid, name=p.name, proposer=p.proposer, parents=p.parent_ids,
                           status=status, tokens=p.prompt_tokens + p.completion_tokens)

    # ---- evaluation ---------------------------------------------------------------------------
    def _evaluate_generation(self, g: int) -> None:
        try:
            rows = [r for r in self.db.all(generation=g) if r["status"] == "pending"]
            list(self._stages.map(self._early_stages, rows))
            if g > 0:
                self._probed.setdefault(g - 1, threading.Event()).wait()
                self._dedupe_by_fingerprint(g)
        finally:  # never leave the next generation waiting, even if this one failed
            self._probed.setdefault(g, threading.Event()).set()
        if self._stop.is_set():
            return
        rows = [r for r in self.db.all(generation=g) if r["status"] == "pending"]
        list(self._stages.map(self._late_stages, rows))
        self.log.event("generation_done", generation=g)

    def _record(self, row: dict[str, Any], out: StageOutcome, updates: dict[str, Any]) -> None:
        if self._stop.is_set():
            return  # results computed while shutting down are dropped, never half-recorded
        if out.failure_class == INFRASTRUCTURE:  # not the candidate's doing: stop, record nothing
            self._stop.set()
            raise CampaignCannotEvaluate(
                f"cannot evaluate candidates: {row['name']}'s {out.stage} stage failed outside the "
                f"candidate: {' '.join(out.message.split())[:600]} (fix that, then resume with "
                f"`prefdisco run --resume {self.out_dir}`)")
        if not out.ok and row["origin"] == "baseline" and row["name"].lower() == "dpo":
            self._baseline_failures.setdefault(row["name"], out)  # stop after generation 0;
            self._stop.set()                                      # unrecorded, so resume retries
            return
        if not out.ok and row["origin"] != "baseline":
            updates.update(status="failed", failure_class=out.failure_class, error=out.message[:4000])
        if out.metrics:
            updates["metrics"] = out.metrics
        if self.db.record_stage(row["id"], out.stage, result=out.result, wall_time_s=out.wall_time_s, updates=updates):
            self.log.event("stage_done", id=row["id"], stage=out.stage, ok=out.ok, failure_class=out.failure_class,
                           value=out.value, wall_time_s=round(out.wall_time_s, 4))
        row.update(updates, stage=out.stage)

    def _early_stages(self, row: dict[str, Any]) -> None:
        baseline = row["origin"] == "baseline"
        if row["stage"] == "" and not self._stop.is_set():
            out = StageOutcome("static", True) if baseline else self.cascade.static(row["code"])
            self._record(row, out, {})
        if row["status"] == "pending" and row["stage"] == "static" and not self._stop.is_set():
            out = self.cascade.probe(row["code"])
            self._record(row, out, {"fingerprint": out.fingerprint, "behaviour": out.behaviour})

    def _dedupe_by_fingerprint(self, g: int) -> None:
        if not self.config.database.fingerprint_dedupe:
            return
        for row in self.db.all(generation=g, status="pending"):
            if not row["fingerprint"]:
                continue
            first = self.db.first_with("fingerprint", row["fingerprint"], before_seq=row["seq"])
            if first is not None:
                self.db.update(row["id"], status="duplicate", duplicate_of=first["id"],
                               error=f"same behaviour fingerprint as {first['id']}")
                self.log.event("duplicate", id=row["id"], of=first["id"], by="fingerprint")

    def _dpo(self, column: str) -> float | None:
        dpo = next((r for r in self.db.all(generation=0) if r["name"].lower() == "dpo"), None)
        return dpo[column] if dpo else None

    def _late_stages(self, row: dict[str, Any]) -> None:
        baseline = row["origin"] == "baseline"
        code, name = (None, row["name"]) if baseline else (row["code"], row["name"])
        if row["status"] == "pending" and row["stage"] == "probe" and not self._stop.is_set():
            out = self.cascade.suite("screen", code, loss_name=name)
            updates: dict[str, Any] = {"screen_fitness": out.value}
            dpo = self._dpo("screen_fitness")
            if out.ok and not baseline and dpo is not None and not self.cascade.passes_screen(out.value, dpo):
                updates.update(status="gated", error=f"screen {out.value:.4f} below DPO gate (DPO {dpo:.4f})")
            self._record(row, out, updates)
        if row["status"] == "pending" and row["stage"] == "screen" and not self._stop.is_set():
            out = self.cascade.suite("fitness", code, loss_name=name)
            updates = {"fitness": out.value, "fitness_se": out.value_se}
            if out.ok or baseline:
                updates["status"] = "evaluated" if out.ok else "failed"
            self._record(row, out, updates)

    def _heldout(self) -> None:
        """Finalists (top-k discovered) and DPO get the held-out suite; never shown to proposers."""
        k = self.config.cascade.heldout_top_k
        if k <= 0:
            return
        rows = self.db.all(status="evaluated")
        finalists = sorted((r for r in rows if r["origin"] != "baseline" and r["fitness"] is not None),
                           key=lambda r: (-r["fitness"], r["seq"]))[:k]
        baselines = sorted((r for r in rows if r["origin"] == "baseline" and r["fitness"] is not None),
                           key=lambda r: (r["name"].lower() != "dpo", -r["fitness"], r["seq"]))[:2]
        self.evaluate_heldout(baselines + finalists)  # DPO and the best other baseline, for comparison

    def evaluate_heldout(self, rows: list[dict[str, Any]]) -> None:
        todo = [r for r in rows if self.db.stage_result(r["id"], "heldout") is None]

        def one(row: dict[str, Any]) -> None:
            baseline = row["origin"] == "baseline"
            out = self.cascade.suite("heldout", None if baseline else row["code"], loss_name=row["name"])
            if self._stop.is_set():
                return
            if out.failure_class == INFRASTRUCTURE:
                self._record(row, out, {})  # raises: stop loudly, record nothing
            if self.db.record_stage(row["id"], "heldout", result=out.result, wall_time_s=out.wall_time_s,
                                    updates={"heldout": out.value, "heldout_se": out.value_se,
                                             "metrics": out.metrics}):
                self.log.event("stage_done", id=row["id"], stage="heldout", ok=out.ok, value=out.value,
                               wall_time_s=round(out.wall_time_s, 4))

        list(self._stages.map(one, todo))

    # ---- summary ------------------------------------------------------------------------------
    def result(self, stopped_by: str) -> CampaignResult:
        rows = self.db.all()
        proposals = [r for r in rows if r["origin"] != "baseline"]
        best = max((r for r in proposals if r["fitness"] is not None and r["status"] == "evaluated"),
                   key=lambda r: (r["fitness"], -r["seq"]), default=None)
        dpo = next((r for r in rows if r["origin"] == "baseline" and r["name"].lower() == "dpo"), None)
        return CampaignResult(
            out_dir=self.out_dir, candidates=len(proposals),
            evaluated=sum(r["status"] == "evaluated" for r in proposals),
            best_id=best["id"] if best else None, best_fitness=best["fitness"] if best else None,
            best_fitness_se=best["fitness_se"] if best else None,
            dpo_fitness=dpo["fitness"] if dpo else None, dpo_fitness_se=dpo["fitness_se"] if dpo else None,
            stopped_by=stopped_by, wall_time_s=time.time() - self.started,
        )
