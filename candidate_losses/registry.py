"""Name -> LossSpec registry over the library modules and the promoted (discovered) losses.

Every module of this package other than the machinery (``contract``, ``registry``, ``source``) is a
library module whose ``@register`` functions are loaded on first use: adding a loss is adding a
decorated function to one of them, or a new module beside them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import textwrap
from pathlib import Path
from typing import Any, Callable

from candidate_losses.contract import LossFn, LossSpec, Origin, hyperparameters_of
from candidate_losses.source import strip_decorators

_REGISTRY: dict[str, LossSpec] = {}
_LOADED = False
PACKAGE_DIR = Path(__file__).parent
MACHINERY = frozenset({"contract", "registry", "source"})  # modules of this package that define no loss
DISCOVERED_DIR = PACKAGE_DIR / "discovered"
# Other names people use for the same losses (TRL loss_type names, paper names).
ALIASES: dict[str, str] = {"sigmoid": "dpo", "discopop": "lrml", "slic": "hinge", "rdpo": "robust"}


def function_source(fn: LossFn) -> str:
    """The function's own source without decorators: standalone code for the sandbox and the archive."""
    return strip_decorators(textwrap.dedent(inspect.getsource(fn))).rstrip() + "\n"


def spec_from_function(
    fn: LossFn,
    *,
    name: str | None = None,
    origin: Origin = "baseline",
    reference: str = "",
    batch_coupled: bool = False,
    provenance: dict[str, Any] | None = None,
) -> LossSpec:
    """Build a ``LossSpec`` from a contract function defined in a module."""
    doc = inspect.getdoc(fn) or ""
    return LossSpec(
        name=name or fn.__name__.removesuffix("_loss"),
        fn=fn,
        source=function_source(fn),
        origin=origin,
        reference=reference,
        hyperparameters=hyperparameters_of(fn),
        batch_coupled=batch_coupled,
        summary=doc.splitlines()[0] if doc else "",
        provenance=dict(provenance or {}),
    )


def register(
    *,
    name: str | None = None,
    reference: str = "",
    batch_coupled: bool = False,
    origin: Origin = "baseline",
    provenance: dict[str, Any] | None = None,
) -> Callable[[LossFn], LossFn]:
    """Decorator: add a contract function to the registry (the function itself is returned)."""

    def wrap(fn: LossFn) -> LossFn:
        spec = spec_from_function(
            fn, name=name, origin=origin, reference=reference,
            batch_coupled=batch_coupled, provenance=provenance,
        )
        if spec.name in _REGISTRY and _REGISTRY[spec.name].fn is not fn:
            raise ValueError(f"loss name {spec.name!r} registered twice")
        _REGISTRY[spec.name] = spec
        return fn

    return wrap


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in sorted(pkgutil.iter_modules([str(PACKAGE_DIR)]), key=lambda i: i.name):
        if not info.ispkg and info.name not in MACHINERY:
            importlib.import_module(f"candidate_losses.{info.name}")
    # Promoted winners: each a module in candidate_losses/discovered/ that registers itself,
    # with its provenance (campaign, scores, date) in a sidecar JSON of the same stem.
    if DISCOVERED_DIR.is_dir():
        for info in pkgutil.iter_modules([str(DISCOVERED_DIR)]):
            importlib.import_module(f"candidate_losses.discovered.{info.name}")


def get_loss(name: str) -> LossSpec:
    """The registered loss called ``name`` (case-insensitive; '-' and '_' are the same)."""
    _load()
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    for spec_name, spec in _REGISTRY.items():
        if spec_name.lower().replace("-", "_") == key:
            return spec
    known = ", ".join(sorted(_REGISTRY))
    raise KeyError(f"unknown loss {name!r}; known losses: {known}")


def list_losses(origin: Origin | None = None) -> list[LossSpec]:
    """Every registered loss (optionally only baselines or only discovered), sorted by name."""
    _load()
    specs = sorted(_REGISTRY.values(), key=lambda s: s.name)
    return [s for s in specs if origin is None or s.origin == origin]


def discovered_provenance(stem: str) -> dict[str, Any]:
    """Read the provenance sidecar written by `prefdisco promote` for a discovered loss module."""
    path = DISCOVERED_DIR / f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else {}
