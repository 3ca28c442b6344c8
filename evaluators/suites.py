"""Benchmark suites, declared in YAML (``evaluators/suites/*.yaml``), loaded into dataclasses.

A suite is a list of *groups*; each group names a tier and a task and the grid it is run on
(seeds x label-noise rates x betas) plus the tier's configuration. Every grid point is one
*instance* (one training run). Suites are data, not code, so the held-out split can be audited:
``instances()`` is what the "held-out shares no instance with fitness" test compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from evaluators.tiers import get_tier
from evaluators.typed_config import Config, build_dataclass

SUITES_DIR = Path(__file__).parent / "suites"
GROUP_KEYS = ("tier", "task", "seeds", "betas", "noise", "kl_budget", "task_params")  # + the tier's sections


@dataclass(frozen=True)
class Scoring(Config):
    """How runs become one fitness number (formula in ``evaluators.metrics``)."""

    kl_weight: float = 0.25        # score lost per multiple of kl_budget exceeded
    failure_score: float = -0.5    # score of a failed run (nan / diverged / error): worse than the reference (0)
    beta_aggregate: Literal["max", "mean"] = "max"  # max: best point of the beta sweep (frontier); mean: average


@dataclass(frozen=True)
class RunSpec:
    """One training run of a suite: everything a tier needs, nothing about the loss."""

    tier: str
    task: str
    seed: int
    noise: float
    beta: float
    kl_budget: float
    task_params: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    group: int = 0

    @property
    def instance(self) -> tuple:
        """Identity of the task instance (used for the fitness/held-out disjointness check)."""
        params = tuple(sorted((k, repr(v)) for k, v in self.task_params.items()))
        return (self.tier, self.task, params, self.seed, self.noise, self.beta)


@dataclass(frozen=True)
class RunGroup:
    tier: str
    task: str
    seeds: tuple[int, ...]
    betas: tuple[float, ...]
    noises: tuple[float, ...]
    kl_budget: float
    task_params: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.tier}/{self.task}"


@dataclass(frozen=True)
class Suite:
    name: str
    groups: tuple[RunGroup, ...]
    scoring: Scoring = Scoring()
    description: str = ""
    path: str = ""

    def instances(self) -> list[RunSpec]:
        """Every run of the suite, in a fixed order (group, seed, noise, beta)."""
        specs: list[RunSpec] = []
        for gi, g in enumerate(self.groups):
            for seed in g.seeds:
                for noise in g.noises:
                    for beta in g.betas:
                        specs.append(RunSpec(
                            tier=g.tier, task=g.task, seed=int(seed), noise=float(noise),
                            beta=float(beta), kl_budget=g.kl_budget, task_params=dict(g.task_params),
                            config=dict(g.config), group=gi,
                        ))
        return specs

    def with_overrides(
        self,
        *,
        seeds: int | None = None,
        betas: list[float] | float | None = None,
        lr: float | None = None,
    ) -> "Suite":
        """A copy with the first ``seeds`` seeds per group (extended past the declared ones if more
        are asked for), a replaced beta sweep, or a replaced preference-training learning rate."""
        groups = []
        for g in self.groups:
            new = g
            if seeds is not None:
                if seeds < 1:
                    raise ValueError("seeds must be >= 1")
                declared = list(g.seeds)
                extra = [max(declared) + 1 + i for i in range(max(0, seeds - len(declared)))]
                new = replace(new, seeds=tuple((declared + extra)[:seeds]))
            if betas is not None:
                bs = [betas] if isinstance(betas, (int, float)) else list(betas)
                new = replace(new, betas=tuple(float(b) for b in bs))
            if lr is not None:
                config = {k: dict(v) if isinstance(v, dict) else v for k, v in new.config.items()}
                config.setdefault("train", {})["lr"] = float(lr)
                new = replace(new, config=config)
            groups.append(new)
        return replace(self, groups=tuple(groups))


def _as_tuple(value: Any, cast: type) -> tuple:
    values = value if isinstance(value, (list, tuple)) else [value]
    return tuple(cast(v) for v in values)


def suite_from_dict(data: dict[str, Any], *, path: str = "") -> Suite:
    """Validate and build a Suite from its YAML mapping (unknown keys are errors, not ignored)."""
    known = {"name", "description", "scoring", "groups"}  # (`extends` and `set` are resolved by suite_data)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"suite {path or data.get('name')}: unknown keys {sorted(unknown)}")
    scoring = build_dataclass(Scoring, data.get("scoring"), f"suite {path or data.get('name')}: scoring")
    groups = []
    for raw in data.get("groups") or []:
        try:
            tier = get_tier(raw.get("tier"))
        except ValueError as exc:
            raise ValueError(f"suite {path}: {exc}") from None
        unknown = set(raw) - {*GROUP_KEYS, *tier.sections}
        if unknown:
            raise ValueError(f"suite {path}: group {raw.get('task')}: unknown keys {sorted(unknown)} "
                             f"(a {tier.name} group may hold {', '.join(tier.sections)})")
        config = {k: (dict(raw[k]) if raw[k] is not None else None) for k in tier.sections if k in raw}
        check = tier.check_function()
        if check is not None:  # the tier's typed config, checked when the suite loads
            try:
                check(config)
            except ValueError as exc:
                raise ValueError(f"suite {path or data.get('name')}: group {raw.get('task')}: {exc}") from None
        groups.append(RunGroup(
            tier=raw["tier"],
            task=str(raw.get("task", "bandit")),
            seeds=_as_tuple(raw.get("seeds", [0]), int),
            betas=_as_tuple(raw.get("betas", [0.1]), float),
            noises=_as_tuple(raw.get("noise", [0.0]), float),
            kl_budget=float(raw.get("kl_budget", 10.0)),
            task_params=dict(raw.get("task_params") or {}),
            config=config,
        ))
    if not groups:
        raise ValueError(f"suite {path or data.get('name')}: no groups")
    return Suite(name=str(data.get("name") or Path(path).stem), groups=tuple(groups),
                 scoring=scoring, description=str(data.get("description", "")), path=path)


def _merge(base: Any, update: Any) -> Any:
    """``update`` laid over ``base``: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(update, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in update.items()}}
    return update


def apply_settings(data: dict[str, Any], settings: dict[str, Any] | list[str]) -> dict[str, Any]:
    """A suite mapping with ``settings`` laid over every group: a mapping (``set:`` of a suite that
    ``extends`` another) or ``KEY.PATH=VALUE`` strings (``prefdisco evaluate --set``; VALUE is YAML)."""
    if isinstance(settings, list):
        parsed: dict[str, Any] = {}
        for item in settings:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. model.policy=/path/to/gpt2")
            node = parsed
            *parents, leaf = key.strip().split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = yaml.safe_load(raw)
        settings = parsed
    if not isinstance(settings, dict):
        raise ValueError("suite: `set` must be a mapping of group keys")
    return {**data, "groups": [_merge(g, settings) for g in data.get("groups") or []]}


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def suite_data(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """(YAML mapping, path) of a suite by name or path: what a sandboxed job is handed, since
    a suite file outside the project may not be visible inside the sandbox."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"unknown suite {str(name_or_path)!r}; known suites: {', '.join(list_suites())} "
            "(or give a path to a suite YAML file)")
    data = yaml.safe_load(path.read_text()) or {}
    if isinstance(data, dict) and "extends" in data:  # a shipped suite with some keys changed
        parent = str(data["extends"])
        local = path.parent / parent
        base, _ = suite_data(local if local.suffix in (".yaml", ".yml") and local.exists() else parent)
        merged = apply_settings(base, data.get("set") or {})
        merged.update({k: v for k, v in data.items() if k not in ("extends", "set")})
        data = merged
    return data, str(path)


def load_suite(name_or_path: str | Path, settings: list[str] | None = None) -> Suite:
    """A suite by name (``screen``, ``fitness``, ``heldout``...) or by path to a YAML file, with
    optional ``KEY.PATH=VALUE`` settings laid over every group."""
    data, path = suite_data(name_or_path)
    if settings:
        data = apply_settings(data, settings)
    return suite_from_dict(data, path=path)
