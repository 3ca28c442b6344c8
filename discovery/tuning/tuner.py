"""Fair comparisons: an equal-budget Optuna study per finalist *and* per baseline, then held-out.

A loss that beats DPO at DPO's beta may lose to a tuned DPO, so every loss in the comparison gets
the same number of trials over beta, learning rate and its own keyword constants. Design:

* Where. Studies run on a training split of the tier where the verdict is given: the held-out
  suite's groups (tier, task, regime, betas, noise) on seeds after its own (``training_split_seeds``),
  so the tuned held-out evaluation uses settings tuned for that tier and shares no instance with
  the split. Factors tuned on another tier (the search fitness) never reach the held-out suite.

* Search space. `beta` and `lr` multiply the suite's declared beta sweep and training learning
  rates (shown in the units of the held-out suite's first group), log-uniform within x/÷ `beta_range` /
  `lr_range`; keyword constants (``LossSpec.hyperparameters`` for baselines, the signature's
  numeric defaults read with `ast` for candidates -- never executed here) are searched around
  their defaults. Trial 0 is always the untuned setting, so a study can only match or improve on
  the untuned score on the split.
* Pruning. Every trial is evaluated seed by seed on the same seeds (common random numbers); the
  running mean is reported per seed and a MedianPruner stops trials that are clearly worse.
* Storage. Studies live in the campaign's own database URL (Optuna RDBStorage, SQLite or
  PostgreSQL); heartbeats + RetryFailedTrialCallback turn a killed run's RUNNING trial into a
  failed one plus a retry with the same parameters, so a resumed run loses no trial.
  Results go to the `tuned_results` table (read by the leaderboard/report), the claim to meta.
* Candidate code runs only in the executor's sandboxes (`discovery.tuning.scaled_suite`).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from candidate_losses.source import keyword_hyperparameters
from discovery.archive.candidate import Status, is_dpo
from discovery.crashpoints import maybe_crash
from discovery.search.search_space import default_params as default_space_params
from discovery.search.search_space import suggest_params
from discovery.tuning.config import TuningConfig
from discovery.tuning.scaled_suite import TUNE_JOB, training_split_seeds
from discovery.tuning.results import (TunedResult, claim, compact_result, load_tuned_result,  # noqa: F401
                                      load_tuned_results, save_tuned_result, tuning_metadata)



@dataclass
class TuningTarget:
    candidate_id: str
    name: str
    origin: str
    code: str | None  # None: a registered baseline, evaluated by name
    hyperparameters: dict[str, float | int]
    untuned_fitness: float | None
    untuned_fitness_se: float | None
    untuned_heldout: float | None
    untuned_heldout_se: float | None


def suite_reference(suite: Any) -> tuple[float, float | None]:
    """(first group's first beta, first group's train.lr or None): the units `beta`/`lr` are shown in."""
    g = suite.groups[0]
    lr = (g.config.get("train") or {}).get("lr")
    lrs = {(gr.config.get("train") or {}).get("lr") is not None for gr in suite.groups}
    return float(g.betas[0]), (float(lr) if lr is not None and lrs == {True} else None)


def suggest(trial: Any, target: TuningTarget, ref_beta: float, ref_lr: float | None,
            cfg: TuningConfig) -> dict[str, Any]:
    return suggest_params(trial, target.hyperparameters, ref_beta, ref_lr, beta_range=cfg.beta_range,
                          lr_range=cfg.lr_range, hyper_range=cfg.hyper_range)


def default_params(target: TuningTarget, ref_beta: float, ref_lr: float | None) -> dict[str, Any]:
    return default_space_params(target.hyperparameters, ref_beta, ref_lr)


def combine_seeds(per_seed: list[dict[str, Any]]) -> tuple[float, float]:
    """Suite fitness and SE from per-seed results, exactly as `evaluators.metrics.suite_fitness` does:
    mean over groups of (mean over seeds of the seed's beta-max score); SE from per-group SEs."""
    labels = sorted(per_seed[0].get("per_task") or {})
    if not labels:
        xs = [float(r["fitness"]) for r in per_seed]
        return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan)
    means, ses = [], []
    for label in labels:
        xs = [float(r["per_task"][label]) for r in per_seed]
        means.append(statistics.fmean(xs))
        ses.append(statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan)
    return statistics.fmean(means), math.sqrt(sum(s * s for s in ses)) / len(ses)


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


class Tuner:
    """Tunes the finalists and baselines of one campaign directory through an executor."""

    def __init__(self, campaign_dir: str | Path, config: TuningConfig, executor: Any):
        from discovery.archive.campaign_dir import CampaignDir
        from evaluators.suites import load_suite

        campaign = CampaignDir.open(campaign_dir)
        self.dir = campaign.path
        self.config = config
        self.executor = executor
        self.campaign = campaign.config()
        self.db = campaign.database()
        tuning_metadata.create_all(self.db.engine)
        cascade = self.campaign.cascade
        self.heldout_suite = cascade.heldout_suite
        self.heldout_seeds = cascade.heldout_seeds
        self.cache_dir = campaign.cache_dir()
        declared = load_suite(self.heldout_suite)  # the verdict's tier: tune there, on its own training split
        suite = declared.with_overrides(seeds=self.heldout_seeds) if self.heldout_seeds else declared
        self.heldout_scoring = suite.scoring
        self.split_seeds = training_split_seeds(suite, config.split_seeds, avoid=declared)
        self.tuning_suite = f"{suite.name} on seeds {self.split_seeds[0]}-{self.split_seeds[-1]}"
        self.failure_score = float(suite.scoring.failure_score)
        self.ref_beta, self.ref_lr = suite_reference(suite)
        self.steps = len(self.split_seeds)  # one per-seed step each (pruning on running means)
        self._storage: Any = None

    # ---- what to tune ---------------------------------------------------------------------------
    def targets(self) -> list[TuningTarget]:
        from candidate_losses import get_loss

        rows = [r for r in self.db.all(status=Status.EVALUATED) if r.fitness is not None]
        wanted = None if self.config.baselines is None else {b.lower() for b in self.config.baselines} | {"dpo"}
        baselines = [r for r in rows if r.is_baseline and (wanted is None or r.name.lower() in wanted)]
        finalists = sorted((r for r in rows if not r.is_baseline),
                           key=lambda r: (-r.fitness, r.seq))[: self.config.top_k]
        out = []
        for r in baselines + finalists:
            hyper = dict(get_loss(r.name).hyperparameters) if r.is_baseline else keyword_hyperparameters(r.code)
            out.append(TuningTarget(r.id, r.name, str(r.origin), None if r.is_baseline else r.code, hyper,
                                    r.fitness, r.fitness_se, r.heldout, r.heldout_se))
        if not any(is_dpo(t.origin, t.name) for t in out):
            from discovery.errors import UserError

            raise UserError(f"{self.dir}: DPO has no fitness in this campaign; run or resume the campaign first")
        return out

    # ---- one study --------------------------------------------------------------------------------
    def storage(self) -> Any:
        """One RDBStorage shared by every study thread (creating it migrates the schema once)."""
        if self._storage is None:
            self._storage = self._make_storage()
        return self._storage

    def _make_storage(self) -> Any:
        import warnings

        import optuna

        kwargs: dict[str, Any] = {}
        if self.db.url.startswith("sqlite"):
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's terms
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
            if retry_cls is not None:  # Optuna >= 4.9
                kwargs["heartbeat_stale_trial_callback"] = retry_cls(max_retry=self.config.max_retry)
            else:
                kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(
                    max_retry=self.config.max_retry)
            return optuna.storages.RDBStorage(
                self.db.url, heartbeat_interval=self.config.heartbeat_interval_s,
                grace_period=self.config.grace_period_s, **kwargs)

    def study_name(self, target: TuningTarget) -> str:
        return f"{self.campaign.name}/tune/{Path(self.heldout_suite).stem}-split/{target.candidate_id}"

    def _job(self, target: TuningTarget, suite: str, params: dict[str, Any], *, seeds: int | None,
             seed_index: int | None, split: bool = False) -> Any:
        """One sandboxed evaluation; `beta`/`lr` become multipliers of the suite's own values."""
        kwargs: dict[str, Any] = {
            "suite": suite, "loss_name": target.name, "cache_dir": self.cache_dir,
            "beta_scale": params["beta"] / self.ref_beta,
            "lr_scale": params["lr"] / self.ref_lr if "lr" in params and self.ref_lr else 1.0,
            "loss_kwargs": {k[3:]: v for k, v in params.items() if k.startswith("hp_")},
            "seeds": seeds, "seed_index": seed_index, "split_seeds": self.split_seeds if split else None}
        return self.executor.run_job(target.code, TUNE_JOB, kwargs, self.config.job_timeout_s)

    def _objective(self, target: TuningTarget) -> Any:
        import optuna

        def objective(trial: optuna.Trial) -> float:
            params = suggest(trial, target, self.ref_beta, self.ref_lr, self.config)
            per_seed: list[dict[str, Any]] = []
            for i in range(self.steps):
                res = self._job(target, self.heldout_suite, params, seeds=None, seed_index=i, split=True)
                if not res.ok or not res.value or res.value.get("fitness") is None:
                    trial.set_user_attr("error", f"{res.failure_class}: {(res.message or '')[:300]}")
                    return self.failure_score  # a setting that breaks the loss is a bad setting
                per_seed.append(res.value)
                running = statistics.fmean(float(v["fitness"]) for v in per_seed)
                trial.report(running, i)
                maybe_crash("tuning_seed")  # test hook: die mid-trial (kill -9 + resume test)
                if self.config.pruning and i + 1 < self.steps and trial.should_prune():
                    raise optuna.TrialPruned()
            fitness, se = combine_seeds(per_seed)
            trial.set_user_attr("fitness_se", _finite(se))
            return fitness

        return objective

    def run_study(self, target: TuningTarget) -> TunedResult:
        import optuna
        from optuna.trial import TrialState

        from discovery.search.campaign import derive_seed

        cfg = self.config
        sampler = optuna.samplers.TPESampler(seed=derive_seed(cfg.seed, target.candidate_id) % 2**32,
                                             n_startup_trials=min(10, max(2, cfg.trials // 3)))
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0) if cfg.pruning
                  else optuna.pruners.NopPruner())
        study = optuna.create_study(study_name=self.study_name(target), storage=self.storage(),
                                    direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True)
        defaults = default_params(target, self.ref_beta, self.ref_lr)
        if not study.trials:
            study.enqueue_trial(defaults, user_attrs={"untuned": True})
        self._recover_stale(study)
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        remaining = cfg.trials - len(study.get_trials(deepcopy=False, states=finished))
        if remaining > 0:
            study.optimize(self._objective(target), n_trials=remaining,
                           callbacks=[optuna.study.MaxTrialsCallback(cfg.trials, states=finished)])
        return self._summarise(study, target, defaults)

    def _recover_stale(self, study: Any) -> None:
        """Fail (and so retry) trials left RUNNING by a killed process, once their heartbeat is stale.

        A live driver keeps its trials' heartbeats fresh, so only dead ones are touched."""
        import optuna
        from optuna.trial import TrialState

        deadline = time.monotonic() + self.config.grace_period_s + 2 * self.config.heartbeat_interval_s
        while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) and time.monotonic() < deadline:
            optuna.storages.fail_stale_trials(study)
            if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                time.sleep(min(1.0, self.config.heartbeat_interval_s))

    def _summarise(self, study: Any, target: TuningTarget, defaults: dict[str, Any]) -> TunedResult:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        default_trial = next((t for t in complete if t.user_attrs.get("untuned") or t.params == defaults), None)
        best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
        return TunedResult(
            candidate_id=target.candidate_id, name=target.name, origin=target.origin,
            study_name=study.study_name, trials_complete=len(complete),
            trials_pruned=sum(t.state == TrialState.PRUNED for t in trials),
            trials_failed=sum(t.state == TrialState.FAIL for t in trials), defaults=defaults,
            params=dict(best.params) if best else {}, untuned_fitness=target.untuned_fitness,
            untuned_fitness_se=target.untuned_fitness_se,
            default_trial_fitness=default_trial.value if default_trial else None,
            tuned_fitness=best.value if best else None,
            tuned_fitness_se=best.user_attrs.get("fitness_se") if best else None,
            untuned_heldout=target.untuned_heldout, untuned_heldout_se=target.untuned_heldout_se,
            tuning_suite=self.tuning_suite)

    # ---- held-out at the tuned settings ------------------------------------------------------------
    def heldout(self, target: TuningTarget, result: TunedResult) -> TunedResult:
        """Held-out suite at the tuned multipliers (and untuned, if the campaign did not run it)."""
        previous = self.load_result(target.candidate_id)
        if previous and previous.heldout_params == result.params and previous.tuned_heldout_result:
            result.tuned_heldout, result.tuned_heldout_se = previous.tuned_heldout, previous.tuned_heldout_se
            result.heldout_params = previous.heldout_params
            result.tuned_heldout_result = previous.tuned_heldout_result
        elif result.params:
            res = self._job(target, self.heldout_suite, result.params,
                            seeds=self.heldout_seeds, seed_index=None)
            ok = res.ok and res.value and res.value.get("fitness") is not None
            result.tuned_heldout = float(res.value["fitness"]) if ok else self.failure_score
            result.tuned_heldout_se = _finite(res.value.get("fitness_se")) if ok else None
            result.heldout_params = dict(result.params)
            result.tuned_heldout_result = compact_result(res.value) if ok else None
        if result.untuned_heldout is None:
            if previous and previous.untuned_heldout is not None:
                result.untuned_heldout = previous.untuned_heldout
                result.untuned_heldout_se = previous.untuned_heldout_se
            else:
                res = self._job(target, self.heldout_suite, result.defaults,
                                seeds=self.heldout_seeds, seed_index=None)
                if res.ok and res.value and res.value.get("fitness") is not None:
                    result.untuned_heldout = float(res.value["fitness"])
                    result.untuned_heldout_se = _finite(res.value.get("fitness_se"))
        return result

    def save_result(self, result: TunedResult) -> None:
        save_tuned_result(self.db.engine, result)

    def load_result(self, candidate_id: str) -> TunedResult | None:
        return load_tuned_result(self.db.engine, candidate_id)

    # ---- everything -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Tune every target (studies in parallel, one trial at a time each), held-out, claim."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        targets = self.targets()
        self.storage()

        def one(target: TuningTarget) -> TunedResult:
            result = self.run_study(target)
            if self.config.heldout:
                result = self.heldout(target, result)
            self.save_result(result)
            return result

        workers = max(1, min(len(targets), getattr(self.executor, "num_workers", 1)))
        with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="study") as pool:
            results = list(pool.map(one, targets))
        verdict = claim(results, self.heldout_scoring)
        self.db.set_meta("tuning_claim", verdict)
        return {"results": [asdict(r) for r in results], "claim": verdict}

    def close(self) -> None:
        self.db.close()
