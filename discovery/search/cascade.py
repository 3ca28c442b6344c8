"""The evaluation cascade: cheap checks first, so a bad candidate costs milliseconds, not minutes.

    static validation (AST, in-process) -> sandbox probe (numerics + fingerprint)
      -> screen suite (optional)  -- gated: >= DPO's screen score - margin
      -> fitness suite (tinylm tier) -> [held-out suite, finalists only, never shown to proposers]

The cascade owns the stage machine: `next_stage` says what a candidate runs next, and `run` runs
it and returns the `StageOutcome` together with the candidate's new state (status, scores); the
campaign records both in one transaction. The cascade holds no state of its own besides the pool,
so any stage can be (re)run after a resume. Candidate code reaches only `validate_source` (parse,
never exec) and the sandbox pool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from discovery.archive.candidate import Candidate, FailureClass, Stage, Status
from discovery.config import CascadeConfig, FitConfig
from discovery.crashpoints import maybe_crash

EVALUATE_JOB = "evaluators.jobs:evaluate_job"
SEARCH_STAGES = (Stage.STATIC, Stage.PROBE, Stage.SCREEN, Stage.FITNESS)  # every candidate, in order
FIT_STAGES = (Stage.STATIC, Stage.PROBE, Stage.FIT, Stage.SCREEN, Stage.FITNESS)  # with fit.trials > 0


def next_stage(candidate: Candidate, stages: tuple[Stage, ...] = SEARCH_STAGES) -> Stage | None:
    """The stage a candidate runs next: the one after its last finished stage, while it is pending."""
    if candidate.status is not Status.PENDING:
        return None
    if candidate.stage is Stage.NONE:
        return stages[0]
    if candidate.stage not in stages or candidate.stage is stages[-1]:
        return None
    return stages[stages.index(candidate.stage) + 1]


class Pool(Protocol):
    def probe(self, code: str) -> Any: ...
    def run_job(self, code: str | None, job: str, kwargs: dict, timeout_s: float | None = None) -> Any: ...


@dataclass
class StageOutcome:
    stage: Stage
    ok: bool
    failure_class: str | None = None
    message: str = ""
    value: float | None = None  # the stage's score (fitness) where it has one
    value_se: float | None = None
    fingerprint: str | None = None
    behaviour: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  # small summary for the candidate row
    result: dict[str, Any] = field(default_factory=dict)  # raw result for the evaluations table
    wall_time_s: float = 0.0


def describe_shape(shape: dict[str, Any] | None) -> str:
    """One line about the loss as a function of z = beta * margin (from the probe's grid)."""
    if not shape:
        return ""
    z = shape.get("z") or shape.get("grid")
    loss = shape.get("loss")
    grad = shape.get("dloss_dz") or shape.get("grad") or shape.get("dloss")
    if not (isinstance(z, list) and isinstance(loss, list) and len(z) == len(loss) and z):
        return ""
    picks = sorted({0, len(z) // 4, len(z) // 2, (3 * len(z)) // 4, len(z) - 1})
    parts = [f"L({z[i]:+.1f})={_fmt(loss[i])}" for i in picks]
    text = "loss vs z=beta*margin: " + ", ".join(parts)
    if isinstance(grad, list) and len(grad) == len(z):
        mid = len(z) // 2
        text += f"; slope at z={z[mid]:+.1f}: {_fmt(grad[mid])}"
        if all(g is not None and g <= 0 for g in grad):
            text += " (monotone decreasing)"
    return text


def _fmt(x: Any) -> str:
    return "nan" if x is None else f"{float(x):.3g}"


def suite_summary(value: dict[str, Any]) -> dict[str, Any]:
    """The part of a suite result worth keeping on the candidate row (no curves)."""
    runs = value.get("runs") or []
    flags: dict[str, int] = {}
    for run in runs:
        for flag in run.get("flags") or []:
            flags[flag] = flags.get(flag, 0) + 1
    def mean(key: str) -> float | None:
        xs = [r.get(key) for r in runs if r.get(key) is not None]
        return sum(xs) / len(xs) if xs else None
    return {
        "suite": value.get("suite"),
        "fitness": value.get("fitness"),
        "fitness_se": value.get("fitness_se"),
        "per_task": value.get("per_task") or {},
        "runs": len(runs),
        "flags": flags,
        "mean_kl": mean("kl"),
        "mean_win_rate": mean("win_rate"),
        "mean_accuracy": mean("accuracy"),
        "train_time_s": sum(float(r.get("wall_time_s") or 0.0) for r in runs),
    }


class _Infrastructure(Exception):
    """A fitting trial failed outside the candidate (the sandbox itself): the whole stage stops."""

    def __init__(self, outcome: StageOutcome):
        super().__init__(outcome.message)
        self.outcome = outcome


class Cascade:
    """Runs one stage at a time for one candidate; the campaign decides what runs next."""

    def __init__(self, pool: Pool, config: CascadeConfig, *,
                 validate: Callable[[str], list[Any]] | None = None, job: str = EVALUATE_JOB,
                 checkpoint_dir: str | None = None, fit: FitConfig | None = None, seed: int = 0,
                 fit_trials: Any = None):
        if validate is None:
            from discovery.sandbox import validate_source as validate
        self.pool = pool
        self.config = config
        self.validate = validate
        self.job = job
        self.checkpoint_dir = checkpoint_dir  # finished runs of split_runs evaluations
        self.fit_config = fit if fit is not None and fit.trials > 0 else None
        self.seed = seed
        self.fit_trials = fit_trials  # where finished fit trials are kept (load(cid), save(cid, trial)); None: nowhere
        self.stages = FIT_STAGES if self.fit_config else SEARCH_STAGES

    def static(self, code: str | None) -> StageOutcome:
        start = time.perf_counter()
        if not code:
            return StageOutcome(Stage.STATIC, False, FailureClass.EXTRACTION, "no code could be extracted from the reply",
                                wall_time_s=time.perf_counter() - start)
        errors = self.validate(code)
        took = time.perf_counter() - start
        if errors:
            first = errors[0]
            kind = getattr(first, "kind", None) or getattr(first, "failure_class", None) or "contract"
            message = "; ".join(str(e) for e in errors[:3])
            return StageOutcome(Stage.STATIC, False, str(kind), message, result={"errors": [str(e) for e in errors]},
                                wall_time_s=took)
        return StageOutcome(Stage.STATIC, True, wall_time_s=took)

    def probe(self, code: str) -> StageOutcome:
        start = time.perf_counter()
        res = self.pool.probe(code)
        took = getattr(res, "wall_time_s", None) or (time.perf_counter() - start)
        raw = res.to_dict() if hasattr(res, "to_dict") else dict(res.__dict__)
        return StageOutcome(
            Stage.PROBE, bool(res.ok), None if res.ok else (res.failure_class or "crash"), res.message or "",
            fingerprint=res.fingerprint, behaviour=describe_shape(res.shape),
            metrics={"fingerprint": res.fingerprint}, result=raw, wall_time_s=float(took),
        )

    def fit_suite(self) -> tuple[str, int | None]:
        """The suite (and seed count) fitting trials are scored on: fit.suite, else the screen, else fitness."""
        cfg, fit = self.config, self.fit_config or FitConfig()
        if fit.suite:
            return fit.suite, fit.seeds
        if cfg.screen_suite:
            return cfg.screen_suite, fit.seeds if fit.seeds is not None else cfg.screen_seeds
        return cfg.fitness_suite, fit.seeds if fit.seeds is not None else cfg.fitness_seeds

    def suite(self, stage: Stage, code: str | None, *, loss_name: str = "candidate") -> StageOutcome:
        """Evaluate on the suite for `stage` (screen | fitness | heldout | fit) in the sandbox."""
        cfg = self.config
        if stage is Stage.FIT:
            suite, seeds = self.fit_suite()
        else:
            suite = {Stage.SCREEN: cfg.screen_suite, Stage.FITNESS: cfg.fitness_suite, Stage.HELDOUT: cfg.heldout_suite}[stage]
            seeds = {Stage.SCREEN: cfg.screen_seeds, Stage.FITNESS: cfg.fitness_seeds, Stage.HELDOUT: cfg.heldout_seeds}[stage]
        kwargs: dict[str, Any] = {"suite": suite, "loss_name": loss_name}
        if seeds is not None:
            kwargs["seeds"] = seeds
        if cfg.cache_dir:
            kwargs["cache_dir"] = cfg.cache_dir
        start = time.perf_counter()
        if cfg.split_runs and self.checkpoint_dir and self.job == EVALUATE_JOB and hasattr(self.pool, "submit_job"):
            from discovery.search.run_checkpoints import evaluate_run_by_run

            res = evaluate_run_by_run(self.pool, code, self.job, kwargs, cfg.job_timeout_s,
                                      self.checkpoint_dir, stage.value)
        elif hasattr(self.pool, "submit_job"):
            future = self.pool.submit_job(code, self.job, kwargs, timeout_s=cfg.job_timeout_s)
            maybe_crash("evaluation")  # test hook: die while the job is in flight
            res = future.result()
        else:
            maybe_crash("evaluation")
            res = self.pool.run_job(code, self.job, kwargs, timeout_s=cfg.job_timeout_s)
        took = time.perf_counter() - start
        if not res.ok or not res.value:
            return StageOutcome(stage, False, res.failure_class or "crash", (res.message or "")[:2000],
                                result={"message": res.message, "stdout_tail": getattr(res, "stdout_tail", "")},
                                wall_time_s=took)
        value = res.value
        fitness = value.get("fitness")
        summary = suite_summary(value)
        if fitness is None:
            return StageOutcome(stage, False, FailureClass.NON_FINITE, f"{suite} suite fitness is not finite",
                                metrics=summary, result=value, wall_time_s=took)
        return StageOutcome(stage, True, value=float(fitness), value_se=value.get("fitness_se"),
                            metrics=summary, result=value, wall_time_s=took)

    def fit(self, c: Candidate) -> tuple[StageOutcome, dict[str, Any]]:
        """Fit the proposal's constants and beta scale (``fit`` stage); the best code is re-probed in the
        sandbox so its fingerprint and shape (the MAP-Elites descriptors) describe what will be scored."""
        from discovery.search.fitting import fit_constants
        from discovery.search.proposing import derive_seed

        start = time.perf_counter()

        def evaluate(code: str) -> tuple[float | None, str]:
            out = self.suite(Stage.FIT, code, loss_name=c.name)
            if out.failure_class == FailureClass.INFRASTRUCTURE:  # not the trial's doing: stop the stage
                raise _Infrastructure(out)
            return (out.value if out.ok else None), ("" if out.ok else f"{out.failure_class}: {out.message}")

        assert self.fit_config is not None
        store = self.fit_trials
        recorded = store.load(c.id) if store is not None else None
        on_trial = (lambda t: store.save(c.id, t)) if store is not None else None
        try:
            fitted = fit_constants(c.code or "", evaluate, self.fit_config, seed=derive_seed(self.seed, "fit", c.id),
                                   recorded=recorded, on_trial=on_trial)
        except _Infrastructure as exc:
            return exc.outcome, {}
        result: dict[str, Any] = {**fitted.to_dict(), "proposed_code": c.code, "suite": self.fit_suite()[0]}
        updates: dict[str, Any] = {}
        if fitted.best != 0:
            probe = self.probe(fitted.code)
            result["probe"] = probe.result
            if probe.ok:
                from candidate_losses.source import code_hash

                updates.update(code=fitted.code, code_hash=code_hash(fitted.code), fingerprint=probe.fingerprint,
                               behaviour=probe.behaviour)
            else:  # the fitted constants break the contract somewhere the suite did not reach: keep the proposal
                result["best"] = 0
                result["rejected"] = f"fitted code failed the probe [{probe.failure_class}]: {probe.message[:300]}"
        summary = {"trials": len(fitted.trials), "best": result["best"], "gain": fitted.gain if result["best"] else 0.0,
                   "constants": len(fitted.constants)}
        return StageOutcome(Stage.FIT, True, value=None, metrics=summary, result=result,
                            wall_time_s=time.perf_counter() - start), updates

    def passes_screen(self, value: float, dpo_value: float) -> bool:
        """Relative gate: at least DPO's screen score minus `screen_margin` x |DPO's score|."""
        return value >= dpo_value - self.config.screen_margin * max(abs(dpo_value), 1e-6)

    def run(self, c: Candidate, stage: Stage, dpo: Candidate | None = None) -> tuple[StageOutcome, dict[str, Any]]:
        """Run ``stage`` for ``c``; return its outcome and the candidate's new state (the transition).

        Baselines run the suites by name (their registered code, never the stored text) and are never
        failed for the search's sake; a discovered candidate that fails any search stage is ``failed``
        with the stage's failure class, one below DPO's screen gate is ``gated``, one with a fitness
        is ``evaluated``. ``dpo`` is the DPO baseline as recorded so far (the screen gate needs it).
        """
        baseline = c.is_baseline
        updates: dict[str, Any] = {}
        if stage is Stage.STATIC:
            out = StageOutcome(Stage.STATIC, True) if baseline else self.static(c.code)
        elif stage is Stage.PROBE:
            out = self.probe(c.code or "")
            updates.update(fingerprint=out.fingerprint, behaviour=out.behaviour)
        elif stage is Stage.FIT and baseline:  # baselines run by name, as registered: nothing to fit
            out = StageOutcome(Stage.FIT, True, message="baselines are not fitted")
        elif stage is Stage.FIT:
            out, fitted = self.fit(c)
            updates.update(fitted)
        elif stage is Stage.SCREEN and self.config.screen_suite is None:
            out = StageOutcome(Stage.SCREEN, True, message="no screen configured")
        elif stage is Stage.SCREEN:
            out = self.suite(stage, None if baseline else c.code, loss_name=c.name)
            updates["screen_fitness"] = out.value
            gate = dpo.screen_fitness if dpo is not None else None
            if out.ok and not baseline and gate is not None and not self.passes_screen(out.value, gate):
                updates.update(status=Status.GATED, error=f"screen {out.value:.4f} below DPO gate (DPO {gate:.4f})")
        elif stage is Stage.FITNESS:
            out = self.suite(stage, None if baseline else c.code, loss_name=c.name)
            updates.update(fitness=out.value, fitness_se=out.value_se)
            if out.ok or baseline:
                updates["status"] = Status.EVALUATED if out.ok else Status.FAILED
        elif stage is Stage.HELDOUT:  # finalists only; a failure leaves the candidate's status alone
            out = self.suite(stage, None if baseline else c.code, loss_name=c.name)
            return out, {"heldout": out.value, "heldout_se": out.value_se, "metrics": out.metrics}
        else:
            raise ValueError(f"no stage {stage!r}")
        if not out.ok and not baseline:
            updates.update(status=Status.FAILED, failure_class=out.failure_class, error=out.message[:4000])
        if out.metrics:
            updates["metrics"] = out.metrics
        return out, updates
