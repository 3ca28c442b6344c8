"""Tiers: how one run of a suite trains a policy with a loss and measures it.

A tier has a name (what a suite group's ``tier:`` says), the config sections a group of that tier
may carry (any other section is an error when the suite loads), the function that runs one
``RunSpec``: ``run(spec, loss_fn, loss_kwargs, cache_dir, device) -> RunResult``, and optionally
the function listing the cached references a run needs, ``references(spec, cache_dir) ->
[(task, seed, TinyLMConfig)]``: the trusted parent builds those before a sandboxed job starts,
because the sandbox sees the cache read-only.

The built-in tiers (``bandit``, ``tinylm``, ``calibrated_lm``, ``hf``) are declared here. Tiers that live in a higher layer
(the ``spa`` and ``pluralistic`` tiers need preference data) register themselves through the
``prefdisco.tiers`` entry-point group (see pyproject.toml), so this package never names them:
adding a tier is one module with its runner plus one ``Tier`` object and one entry-point line.
Runners are imported only when a run starts (tiers pull in torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

ENTRY_POINT_GROUP = "prefdisco.tiers"


@dataclass(frozen=True)
class Tier:
    """A named way to train and score one run; ``runner`` is "module:function", imported lazily."""

    name: str
    runner: str
    sections: tuple[str, ...]   # config mappings a suite group of this tier may hold
    description: str = ""
    references: str | None = None  # "module:function" listing the cached references a run needs
    group_runner: str | None = None  # "module:function" training all instances of a group at once
    prepare: str | None = None  # "module:function" ``prepare(spec, cache_dir, device)``: loss-independent
    # data the trusted parent builds into the cache before sandboxed runs read it
    read_paths: str | None = None  # "module:function" ``read_paths(spec) -> [path]``: what a sandboxed run
    # must read outside the project and the cache (local models, the hub cache)
    check: str | None = None  # "module:function" ``check(group_config)``: raise ValueError on a bad config

    def run_function(self) -> Callable[..., Any]:
        return _load(self.runner)

    def group_function(self) -> Callable[..., Any] | None:
        """``run_group(specs, loss_fn, loss_kwargs, cache_dir, device) -> [RunResult]`` (same numbers
        as running the specs one by one), or None when the tier runs instances singly."""
        return _load(self.group_runner) if self.group_runner else None

    def references_function(self) -> Callable[..., Any] | None:
        return _load(self.references) if self.references else None

    def check_function(self) -> Callable[..., Any] | None:
        return _load(self.check) if self.check else None

    def prepare_function(self) -> Callable[..., Any] | None:
        return _load(self.prepare) if self.prepare else None

    def read_paths_function(self) -> Callable[..., Any] | None:
        return _load(self.read_paths) if self.read_paths else None


def _load(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


BUILTIN_TIERS: dict[str, Tier] = {
    "bandit": Tier("bandit", "evaluators.bandit:run_bandit", ("bandit", "train"),
                   "contextual bandit with exact metrics (screening)"),
    "tinylm": Tier("tinylm", "evaluators.tinylm:run_tinylm", ("model", "sft", "data", "train"),
                   "tiny GPT-2 on a gold-reward text task", "evaluators.tinylm:reference_specs"),
    "calibrated_lm": Tier("calibrated_lm", "evaluators.calibrated_lm:run_calibrated_lm",
                          ("model", "sft", "data", "train"),
                          "tinylm protocol in the converged regime, a group's runs in one vectorised pass",
                          "evaluators.calibrated_lm:reference_specs",
                          "evaluators.calibrated_lm:run_calibrated_group"),
    "hf": Tier("hf", "evaluators.hf_run:run_hf_suite", ("model", "data", "train", "generation", "reward", "judge"),
               "a Hugging Face causal LM trained through TRL, scored by a reward model and/or an LLM judge",
               prepare="evaluators.hf_data:prepare_spec", read_paths="evaluators.hf_data:read_paths",
               check="evaluators.hf_suite_config:check_group"),
}
_registered: dict[str, Tier] | None = None


def registered_tiers() -> dict[str, Tier]:
    """Every tier by name: the built-ins, then those other packages declare as entry points."""
    global _registered
    if _registered is None:
        tiers = dict(BUILTIN_TIERS)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            tier = ep.load()
            if not isinstance(tier, Tier) or tier.name != ep.name:
                raise TypeError(f"entry point {ep.name} = {ep.value} must be a Tier named {ep.name!r}")
            tiers.setdefault(tier.name, tier)
        _registered = tiers
    return _registered


def get_tier(name: str) -> Tier:
    if name in BUILTIN_TIERS:  # no entry-point scan (~0.1 s) for the tiers every campaign uses
        return BUILTIN_TIERS[name]
    tiers = registered_tiers()
    if name not in tiers:
        raise ValueError(f"tier must be one of {tuple(tiers)}, got {name!r} (tiers outside evaluators register "
                         f"through the {ENTRY_POINT_GROUP!r} entry points: reinstall with `pip install -e .`)")
    return tiers[name]
