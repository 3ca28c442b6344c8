"""One notion of "around a setting" for every inner search: `prefdisco tune` and the fit stage.

beta (and lr) are searched log-uniformly within x/÷ a range of a reference value; each numeric loss
constant around its default: log-uniform within x/÷ `hyper_range` when positive, the mirrored range
when negative, 0..0.25 for a zero default, and integers over halving/doubling. Parameter names are
``beta``, ``lr`` and ``hp_<name>``; `default_params` is the untuned point in the same names.
"""

from __future__ import annotations

from typing import Any


def suggest_params(trial: Any, hyperparameters: dict[str, float | int], ref_beta: float, ref_lr: float | None, *,
                   beta_range: float, lr_range: float, hyper_range: float) -> dict[str, Any]:
    """Ask an Optuna trial for one setting (the order of the asks is part of a seeded study's result)."""
    params: dict[str, Any] = {"beta": trial.suggest_float("beta", ref_beta / beta_range, ref_beta * beta_range, log=True)}
    if ref_lr is not None:
        params["lr"] = trial.suggest_float("lr", ref_lr / lr_range, ref_lr * lr_range, log=True)
    for name, default in sorted(hyperparameters.items()):
        key = f"hp_{name}"
        if isinstance(default, int):
            lo, hi = (max(1, default // 2), max(2, default * 2)) if default > 0 else (default - 2, default + 2)
            params[key] = trial.suggest_int(key, lo, hi)
        elif default > 0:
            params[key] = trial.suggest_float(key, default / hyper_range, default * hyper_range, log=True)
        elif default < 0:
            params[key] = trial.suggest_float(key, default * hyper_range, default / hyper_range)
        else:
            params[key] = trial.suggest_float(key, 0.0, 0.25)
    return params


def default_params(hyperparameters: dict[str, float | int], ref_beta: float, ref_lr: float | None) -> dict[str, Any]:
    """The untuned setting, named as `suggest_params` names it."""
    params: dict[str, Any] = {"beta": ref_beta}
    if ref_lr is not None:
        params["lr"] = ref_lr
    params.update({f"hp_{k}": v for k, v in hyperparameters.items()})
    return params
