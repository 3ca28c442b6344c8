"""The campaign runner: propose -> record -> cascade -> record, generation by generation.

Determinism and resume rest on three rules:
1. Generation g's proposals see only the archive up to generation g-1-lag (lag=1 lets the workers
   evaluate generation g-1 while g is being proposed), and every random choice for slot s of
   generation g comes from a seed derived from (campaign seed, g, s).
   The slots of one generation may be asked in parallel (`proposer.llm.concurrency`); they are
   recorded in slot order whatever order the replies come in (`discovery.search.proposing`).
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candidate_losses.source import code_hash, parse_ast, strip_decorators
from discovery.archive.campaign_dir import CampaignDir
from discovery.archive.candidate import ALL_ISLANDS, Candidate, FailureClass, Origin, Stage, Status, find_dpo
from discovery.archive.database import candidate_id, sequence_number
from discovery.config import CampaignConfig, resolve_paths
from discovery.errors import UserError
from discovery.proposers import Proposer, make_proposer
from discovery.proposers.prompting import BetaSweep
from discovery.search.cascade import Cascade, StageOutcome, next_stage
from discovery.search.fitting import FitTrialStore, fit_trials, suite_evaluations
from discovery.search.progress import ProgressView
from discovery.search.proposing import GenerationProposer, derive_seed, summary_of

__all__ = ["Campaign", "CampaignResult", "baseline_code", "derive_seed", "summary_of"]


def baseline_code(source: str) -> str:
    """A registered baseline's source as standalone candidate code (decorators dropped, reformatted)."""
    return ast.unparse(parse_ast(strip_decorators(source))) + "\n"


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
    fitness_vs_dpo: dict[str, Any] | None = None  # best's paired difference with DPO on the search suite
    verdict: dict[str, Any] | None = None  # the held-out verdict against DPO (discovery.review.verdict)
    suite_evaluations: int = 0  # proposals' screen + fitness evaluations + fitting trials (budget.max_evaluations)
    fit_evaluations: int = 0  # of which fitting trials (fit.trials per proposal that reached the fit stage)


def beta_sweep(config: CampaignConfig) -> BetaSweep | None:
    """The fitness suite's beta sweep, for prompts that state it (LLM campaigns only)."""
    if config.proposer.kind != "llm":
        return None
    from evaluators.suites import load_suite

    try:
        suite = load_suite(config.cascade.fitness_suite)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"cascade.fitness_suite: {exc}") from None
    betas = sorted({b for group in suite.groups for b in group.betas})
    return BetaSweep(betas=tuple(betas), aggregate=suite.scoring.beta_aggregate)


class CampaignCannotEvaluate(UserError):
    """The baselines (DPO first) or the sandbox failed for a reason outside any candidate."""


def sandbox_limits(cascade_cfg: Any, gpu: bool, fit_suite: str | None = None) -> Any:
    """The sandbox limits for this cascade's suites: the cache read-only, plus whatever real-model
    (``hf``) suites read outside it (local models, the hub cache), with room for their address space."""
    from discovery.sandbox import SandboxLimits
    from evaluators.jobs import sandbox_read_paths

    suites = [cascade_cfg.screen_suite, cascade_cfg.fitness_suite, cascade_cfg.heldout_suite]
    suites += [fit_suite] if fit_suite else []
    paths = tuple(sandbox_read_paths(suites))
    if not paths:
        return SandboxLimits(cache_dir=cascade_cfg.cache_dir)
    # torch + transformers + TRL reserve far more virtual memory than the tinylm tiers; CUDA maps
    # terabytes of address space, which an RLIMIT_AS would refuse (the GPU bounds memory there).
    return SandboxLimits(cache_dir=cascade_cfg.cache_dir, readonly_dirs=paths,
                         address_space_mb=(1 << 22) if gpu else 16384)


class Campaign:
    """One campaign directory. Build with `Campaign.create(config, dir)` or `Campaign.resume(dir)`."""

    def __init__(self, directory: CampaignDir, *, pool: Any = None, proposer: Proposer | None = None,
                 validate: Any = None, progress: ProgressView | None = None):
        config = directory.config()
        self.dir = directory
        self.config = config
        self.out_dir = directory.path
        self.db = directory.database()
        self.log = directory.log()
        self._own_pool = pool is None
        cascade_cfg = dataclasses.replace(config.cascade, cache_dir=directory.cache_dir())
        if pool is None:  # the config's executor: sandboxed workers here or on a Ray cluster
            from discovery.executors import make_executor

            pool = make_executor(config.executor, num_workers=config.workers, ray_address=config.ray_address,
                                 num_gpus_per_worker=config.num_gpus_per_worker,
                                 limits=sandbox_limits(cascade_cfg, config.num_gpus_per_worker > 0,
                                                      config.fit.suite if config.fit.trials else None))
        self.pool = pool
        self.proposer = proposer or make_proposer(config.proposer, directory.path)
        self._stop = threading.Event()
        self.cascade = Cascade(pool, cascade_cfg, validate=validate,
                               checkpoint_dir=str(Path(self.out_dir) / "run_checkpoints"), fit=config.fit, seed=config.seed,
                               fit_trials=FitTrialStore(self.db, self._stop))
        self.progress = progress or ProgressView()
        self._stages = cf.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="stage")
        self._generations = cf.ThreadPoolExecutor(max_workers=config.pipeline_lag + 2, thread_name_prefix="gen")
        self._probed: dict[int, threading.Event] = {}
        self._baseline_failures: dict[str, StageOutcome] = {}
        self._futures: dict[int, cf.Future] = {}
        self.proposing = GenerationProposer(config, self.db, self.log, self.proposer, self._stop,
                                            self._budget_exhausted, sweep=beta_sweep(config))
        self.started = time.time()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, config: CampaignConfig, out_dir: str | Path, **kwargs: Any) -> "Campaign":
        resolve_paths(config, Path.cwd())
        if config.fit.trials and config.fit.suite:  # a misspelt fit suite would fail every trial: say so now
            from evaluators.suites import load_suite

            try:
                load_suite(config.fit.suite)
            except (FileNotFoundError, ValueError) as exc:
                raise UserError(f"fit.suite: {exc}") from None
        return cls(CampaignDir.create(out_dir, config), **kwargs)

    @classmethod
    def resume(cls, out_dir: str | Path, **kwargs: Any) -> "Campaign":
        return cls(CampaignDir.open(out_dir), **kwargs)

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
                    reason = self.proposing.run(g, slots, visible)
                    if reason:
                        stopped_by = reason
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
        rows = [r for r in self.db.all() if not r.is_baseline]
        if b.max_tokens is not None and sum(r.tokens for r in rows) >= b.max_tokens:
            return "budget: tokens"
        if b.max_cost_usd is not None and sum(r.cost_usd for r in rows) >= b.max_cost_usd:
            return "budget: cost"
        if b.max_evaluations is not None and sum(suite_evaluations(r) for r in rows) >= b.max_evaluations:
            return "budget: evaluations"
        return None

    # ---- proposals ----------------------------------------------------------------------------
    def _seed_baselines(self) -> None:
        from candidate_losses import get_loss

        for slot, name in enumerate(self.config.baselines):
            spec = get_loss(name)
            code = baseline_code(spec.source)
            mutable = not self.cascade.validate(code)
            self.db.add_candidate(Candidate(
                id=candidate_id(0, slot, origin=Origin.BASELINE), seq=sequence_number(0, slot), generation=0,
                slot=slot, island=ALL_ISLANDS, origin=Origin.BASELINE, name=spec.name, code=code,
                code_hash=code_hash(code), parent_ids=[], proposer="baseline", thought=spec.summary,
                mutable=mutable))

    # ---- evaluation ---------------------------------------------------------------------------
    def _evaluate_generation(self, g: int) -> None:
        try:
            rows = self.db.all(generation=g, status=Status.PENDING)
            list(self._stages.map(lambda c: self._advance(c, through=Stage.PROBE), rows))
            if g > 0:
                self._probed.setdefault(g - 1, threading.Event()).wait()
                self._dedupe_by_fingerprint(g)
        finally:  # never leave the next generation waiting, even if this one failed
            self._probed.setdefault(g, threading.Event()).set()
        if self._stop.is_set():
            return
        rows = self.db.all(generation=g, status=Status.PENDING)
        list(self._stages.map(lambda c: self._advance(c, through=Stage.FITNESS), rows))
        self.log.event("generation_done", generation=g)

    def _advance(self, c: Candidate, *, through: Stage) -> None:
        """Run the candidate's next stages, as the cascade decides, up to ``through``; each is
        recorded before the next starts (so a resume continues from the last recorded one)."""
        while not self._stop.is_set():
            stages = self.cascade.stages
            stage = next_stage(c, stages)
            if stage is None or stages.index(stage) > stages.index(through):
                return
            out, updates = self.cascade.run(c, stage, self.db.dpo() if stage is Stage.SCREEN else None)
            self._record(c, out, updates)

    def _record(self, c: Candidate, out: StageOutcome, updates: dict[str, Any]) -> None:
        if self._stop.is_set():
            return  # results computed while shutting down are dropped, never half-recorded
        if out.failure_class == FailureClass.INFRASTRUCTURE:  # not the candidate's doing: stop, record nothing
            self._stop.set()
            raise CampaignCannotEvaluate(
                f"cannot evaluate candidates: {c.name}'s {out.stage} stage failed outside the "
                f"candidate: {' '.join(out.message.split())[:600]} (fix that, then resume with "
                f"`prefdisco run --resume {self.out_dir}`)")
        if not out.ok and c.is_dpo:
            self._baseline_failures.setdefault(c.name, out)  # stop after generation 0;
            self._stop.set()                                 # unrecorded, so resume retries
            return
        if self.db.record_stage(c.id, out.stage, result=out.result, wall_time_s=out.wall_time_s, updates=updates):
            self.log.event("stage_done", id=c.id, stage=out.stage, ok=out.ok, failure_class=out.failure_class,
                           value=out.value, wall_time_s=round(out.wall_time_s, 4))
        metrics = updates.pop("metrics", None)
        if metrics is not None:
            c.metrics = {**c.metrics, out.stage.value: metrics}
        for key, value in updates.items():
            setattr(c, key, value)
        c.stage = out.stage

    def _dedupe_by_fingerprint(self, g: int) -> None:
        if not self.config.database.fingerprint_dedupe:
            return
        for row in self.db.all(generation=g, status=Status.PENDING):
            if not row.fingerprint:
                continue
            first = self.db.first_with("fingerprint", row.fingerprint, before_seq=row.seq)
            if first is not None:
                self.db.update(row.id, status=Status.DUPLICATE, duplicate_of=first.id,
                               error=f"same behaviour fingerprint as {first.id}")
                self.log.event("duplicate", id=row.id, of=first.id, by="fingerprint")

    def _heldout(self) -> None:
        """Finalists (top-k discovered) and DPO get the held-out suite; never shown to proposers."""
        k = self.config.cascade.heldout_top_k
        if k <= 0:
            return
        rows = self.db.all(status=Status.EVALUATED)
        finalists = sorted((r for r in rows if not r.is_baseline and r.fitness is not None),
                           key=lambda r: (-r.fitness, r.seq))[:k]
        baselines = sorted((r for r in rows if r.is_baseline and r.fitness is not None),
                           key=lambda r: (not r.is_dpo, -r.fitness, r.seq))[:2]
        self.evaluate_heldout(baselines + finalists)  # DPO and the best other baseline, for comparison

    def evaluate_heldout(self, rows: list[Candidate]) -> None:
        todo = [r for r in rows if self.db.stage_result(r.id, Stage.HELDOUT) is None]

        def one(c: Candidate) -> None:
            out, updates = self.cascade.run(c, Stage.HELDOUT)
            if self._stop.is_set():
                return
            if out.failure_class == FailureClass.INFRASTRUCTURE:
                self._record(c, out, {})  # raises: stop loudly, record nothing
            if self.db.record_stage(c.id, Stage.HELDOUT, result=out.result, wall_time_s=out.wall_time_s,
                                    updates=updates):
                self.log.event("stage_done", id=c.id, stage=Stage.HELDOUT, ok=out.ok, value=out.value,
                               wall_time_s=round(out.wall_time_s, 4))

        list(self._stages.map(one, todo))

    # ---- summary ------------------------------------------------------------------------------
    def result(self, stopped_by: str) -> CampaignResult:
        rows = self.db.all()
        proposals = [r for r in rows if not r.is_baseline]
        best = max((r for r in proposals if r.fitness is not None and r.status is Status.EVALUATED),
                   key=lambda r: (r.fitness, -r.seq), default=None)
        dpo = find_dpo(rows)
        from discovery.archive.verdict import campaign_heldout_verdict, paired_vs
        from evaluators.suites import load_suite

        paired = None
        if best is not None and dpo is not None:
            scoring = load_suite(self.config.cascade.fitness_suite).scoring
            d = paired_vs(self.db.stage_result(best.id, Stage.FITNESS), self.db.stage_result(dpo.id, Stage.FITNESS),
                          scoring)
            paired = d.to_dict() if d is not None else None
        return CampaignResult(
            out_dir=self.out_dir, candidates=len(proposals),
            evaluated=sum(r.status is Status.EVALUATED for r in proposals),
            best_id=best.id if best else None, best_fitness=best.fitness if best else None,
            best_fitness_se=best.fitness_se if best else None,
            dpo_fitness=dpo.fitness if dpo else None, dpo_fitness_se=dpo.fitness_se if dpo else None,
            stopped_by=stopped_by, wall_time_s=time.time() - self.started, fitness_vs_dpo=paired,
            verdict=campaign_heldout_verdict(self.db, self.config.cascade.heldout_suite).to_dict(),
            suite_evaluations=sum(suite_evaluations(r) for r in proposals),
            fit_evaluations=sum(fit_trials(r) for r in proposals),
        )
