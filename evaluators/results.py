"""Plain result records returned by every tier and by `evaluate_loss`.

They are JSON-able through ``to_dict`` (non-finite floats become ``None``) so they can cross the
sandbox process boundary and be stored by the program database unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def finite_or_none(x: Any) -> Any:
    """``x`` with every non-finite float (at any depth of dicts/lists) replaced by ``None``: valid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    return x


def _none_to_nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


@dataclass
class RunResult:
    """One training run: one (tier, task, seed, noise, beta) instance of a suite.

    ``gold_reward`` is the mean gold reward of samples from the trained policy; ``kl`` the
    sequence-level KL(pi || pi_ref) in nats; ``win_rate`` the probability that a policy sample
    beats a reference sample on the same prompt under the gold reward (ties count 1/2);
    ``accuracy`` the held-out preference accuracy of the implicit reward beta*log(pi/pi_ref).
    ``extra`` carries the reference reward, the run's normalised ``score`` and tier details.
    """

    task: str
    tier: str
    seed: int
    beta: float
    noise: float
    gold_reward: float
    kl: float
    win_rate: float
    accuracy: float
    flags: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    curve: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """A failed run (non-finite training, divergence, loss error) is scored as a failure."""
        return bool(set(self.flags) & FAILURE_FLAGS)

    def to_dict(self) -> dict[str, Any]:
        return finite_or_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunResult":
        d = dict(d)
        for key in ("gold_reward", "kl", "win_rate", "accuracy"):
            d[key] = _none_to_nan(d.get(key))
        return cls(**d)


# Flags that make a run count as a failure in the fitness score (see metrics.run_score).
FAILURE_FLAGS = frozenset({"nan", "diverged", "error", "wrong_shape"})


@dataclass
class SuiteResult:
    """A loss scored on a suite: the scalar fitness (with its standard error over seeds) and runs."""

    loss: str
    suite: str
    fitness: float
    fitness_se: float
    runs: list[RunResult]
    wall_time_s: float = 0.0
    per_task: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return finite_or_none({
            "loss": self.loss,
            "suite": self.suite,
            "fitness": self.fitness,
            "fitness_se": self.fitness_se,
            "runs": [r.to_dict() for r in self.runs],
            "wall_time_s": self.wall_time_s,
            "per_task": dict(self.per_task),
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SuiteResult":
        return cls(
            loss=d["loss"],
            suite=d["suite"],
            fitness=_none_to_nan(d.get("fitness")),
            fitness_se=_none_to_nan(d.get("fitness_se")),
            runs=[RunResult.from_dict(r) for r in d.get("runs", [])],
            wall_time_s=float(d.get("wall_time_s") or 0.0),
            per_task={k: _none_to_nan(v) for k, v in (d.get("per_task") or {}).items()},
        )
