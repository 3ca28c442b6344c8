"""`prefdisco tune` knobs (light: the CLI derives its flags from this dataclass at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluators.typed_config import Config


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TuningConfig(Config):
    """Equal-budget tuning of a campaign's finalists and baselines; the defaults are a fair, modest budget."""

    top_k: int = field(default=3, metadata=_help("Discovered finalists to tune (best untuned fitness first)."))
    trials: int = field(default=20, metadata=_help("Optuna trials per loss (the same for every loss)."))
    baselines: list[str] | None = field(default=None, metadata=_help(
        "Baselines to tune besides the finalists; None: every campaign baseline with a fitness (dpo always)."))
    heldout: bool = field(default=True, metadata=_help("Held-out suite at the tuned settings."))
    split_seeds: int | None = field(default=None, metadata=_help(
        "Seeds of the training split tuned on (the held-out tier on seeds after its own); None: as many as it has."))
    seed: int = field(default=0, metadata=_help("Sampler seed (per study: derived from this and the candidate id)."))
    beta_range: float = field(default=5.0, metadata=_help(
        "beta searched log-uniformly between b/R and R*b around the suite's betas."))
    lr_range: float = field(default=5.0, metadata=_help("Learning rate searched between lr/R and R*lr (log scale)."))
    hyper_range: float = field(default=4.0, metadata=_help(
        "Positive loss constants searched between c/R and R*c (log); a zero default in 0..0.25."))
    pruning: bool = field(default=True, metadata=_help("Median pruning on per-seed running means."))
    heartbeat_interval_s: int = field(default=10, metadata=_help(
        "Seconds between trial heartbeats; a killed run's trial is retried after the grace period."))
    grace_period_s: int | None = field(default=None, metadata=_help(
        "A RUNNING trial without heartbeat this long is failed and retried; None: 3x the heartbeat."))
    max_retry: int = field(default=2, metadata=_help("Retries of a trial whose process died."))
    job_timeout_s: float = field(default=600.0, metadata=_help("Wall limit of one sandboxed evaluation (s)."))

    def check(self) -> None:
        if self.top_k < 0 or self.trials < 1 or self.heartbeat_interval_s < 1:
            raise ValueError("top_k must be >= 0, trials >= 1 and heartbeat_interval_s >= 1")
        if self.split_seeds is not None and self.split_seeds < 2:
            raise ValueError("split_seeds must be >= 2 (a paired s.e. needs two seeds)")
        if self.grace_period_s is None:
            self.grace_period_s = 3 * self.heartbeat_interval_s
