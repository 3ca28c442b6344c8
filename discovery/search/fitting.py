"""Per-candidate fitting of a proposal's literal constants and a beta multiplier (the ``fit`` stage).

A mutated or grammar-made loss often has the right shape with the wrong numbers (a margin of 3 where
0.3 works, a beta scale that saturates it); scoring it as proposed would throw the shape away. So,
when ``fit.trials > 0``, each proposal gets a small inner search before the screen: Optuna TPE over
its float literals (around their values) and a beta multiplier, trial 0 being the proposal as
written, each trial one evaluation of the fit suite through the campaign's sandboxed executor. The
best setting is written into the candidate's source (literals replaced, ``beta`` scaled in the code),
so the archive holds exactly the program that was scored; every trial is recorded.

The search space and its defaults are `prefdisco tune`'s (``discovery.search.search_space``): one
notion of "around a constant" in the code base. Code is only parsed and rewritten here.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from candidate_losses.source import contract_function, parse_ast
from discovery.archive.candidate import Candidate, Stage
from discovery.config import FitConfig
from discovery.search.search_space import default_params, suggest_params

BETA_FIT = "beta_fit"  # the local a fitted beta multiplier is written to


def _constant_nodes(fn: ast.FunctionDef) -> list[ast.Constant]:
    """Float literals worth fitting: non-zero, finite, not an index, not a keyword argument's value
    (``clamp(min=-20.0)``, ``dim=-1`` are guards and plumbing, not shape) and not the 1 of a complement
    (``1.0 - gate`` keeps a mixture a mixture; its weight is fitted instead)."""
    skip = {id(n) for s in ast.walk(fn) if isinstance(s, ast.Subscript) for n in ast.walk(s.slice)}
    skip |= {id(n) for k in ast.walk(fn) if isinstance(k, ast.keyword) for n in ast.walk(k.value)}
    skip |= {id(b.left) for b in ast.walk(fn) if isinstance(b, ast.BinOp) and isinstance(b.op, ast.Sub)
             and isinstance(b.left, ast.Constant) and b.left.value == 1.0}  # complements: (1 - w) * a + w * b
    scale = _beta_fit(fn)
    skip |= {id(n) for n in ast.walk(scale)} if scale is not None else set()  # the beta scale is fitted as such
    out = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Constant) and type(node.value) is float and id(node) not in skip \
                and node.value != 0.0 and math.isfinite(node.value) and abs(node.value) <= 1e3:
            out.append(node)
    return sorted(out, key=lambda n: (n.lineno, n.col_offset))


def _beta_fit(fn: ast.FunctionDef) -> ast.Assign | None:
    """An earlier fit's ``beta_fit = beta * s`` statement, if the code has one."""
    for stmt in fn.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and stmt.targets[0].id == BETA_FIT and isinstance(stmt.value, ast.BinOp) \
                and isinstance(stmt.value.right, ast.Constant) and type(stmt.value.right.value) is float:
            return stmt
    return None


def literal_constants(code: str, limit: int | None = None) -> list[float]:
    """The fittable literals of the contract function in `code`, in source order (at most `limit`)."""
    nodes = _constant_nodes(contract_function(parse_ast(code)))  # type: ignore[arg-type]
    return [float(n.value) for n in nodes[:limit]]


def with_constants(code: str, values: list[float], beta_scale: float = 1.0) -> str:
    """`code` with its first len(values) fittable literals replaced, and beta multiplied by
    `beta_scale` (as a local ``beta_fit = beta * s`` used wherever the body read ``beta``)."""
    tree = parse_ast(code)
    fn = contract_function(tree)  # type: ignore[arg-type]
    for node, value in zip(_constant_nodes(fn), values):
        node.value = float(f"{value:.4g}")
    previous = _beta_fit(fn)
    if beta_scale != 1.0 and previous is not None:  # refitting fitted code: fold the scales together
        const = previous.value.right  # type: ignore[attr-defined]
        const.value = float(f"{const.value * beta_scale:.4g}")
    elif beta_scale != 1.0:
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and node.id == "beta" and isinstance(node.ctx, ast.Load):
                node.id = BETA_FIT
        start = 1 if fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else 0
        fn.body.insert(start, parse_ast(f"{BETA_FIT} = beta * {float(f'{beta_scale:.4g}')!r}").body[0])  # type: ignore[attr-defined]
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


@dataclass
class FitTrial:
    number: int
    beta_scale: float
    constants: list[float]
    fitness: float | None  # None: the evaluation failed (scored as the suite's failure score)
    error: str = ""


@dataclass
class FitResult:
    constants: list[float]  # as proposed
    trials: list[FitTrial] = field(default_factory=list)
    best: int = 0  # number of the best trial (0: the proposal as written)
    code: str = ""  # the best trial's source

    @property
    def gain(self) -> float | None:
        base, best = self.trials[0].fitness if self.trials else None, self.trials[self.best].fitness if self.trials else None
        return None if base is None or best is None else best - base

    def to_dict(self) -> dict[str, Any]:
        return {"constants": self.constants, "best": self.best, "gain": self.gain,
                "trials": [asdict(t) for t in self.trials]}


Evaluate = Callable[[str], tuple[float | None, str]]  # code -> (fitness or None, error message)


def fit_constants(code: str, evaluate: Evaluate, cfg: FitConfig, *, seed: int, failure_score: float = 0.0,
                  recorded: list[dict[str, Any]] | None = None,
                  on_trial: Callable[[FitTrial], None] | None = None) -> FitResult:
    """Run ``cfg.trials`` trials (trial 0: as proposed) and return every trial and the best code.

    `on_trial` is told of each trial as it finishes (the campaign stores it); `recorded` are the trials
    an interrupted run stored: the seeded sampler proposes the same settings again, and a trial whose
    setting matches its record takes the recorded score instead of a new evaluation (resume redoes nothing).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    constants = literal_constants(code, cfg.max_constants)
    hyper = {f"c{i}": v for i, v in enumerate(constants)}
    sampler = optuna.samplers.TPESampler(seed=seed % 2**32, n_startup_trials=max(1, min(cfg.trials // 2, 5)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(default_params(hyper, 1.0, None))
    result = FitResult(constants=constants)
    codes: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, hyper, 1.0, None, beta_range=cfg.beta_range, lr_range=1.0,
                                hyper_range=cfg.constant_range)
        values = [float(params[f"hp_c{i}"]) for i in range(len(constants))]
        scale = float(params["beta"])
        trial_code = code if trial.number == 0 else with_constants(code, values, scale)
        setting = (round(scale, 6), [float(f"{v:.4g}") for v in values])
        old = (recorded or [])[trial.number] if trial.number < len(recorded or []) else None
        if old is not None and (old["beta_scale"], old["constants"]) == setting:
            record = FitTrial(**old)
        else:
            fitness, error = evaluate(trial_code)
            record = FitTrial(trial.number, *setting, fitness, error[:300])
            if on_trial is not None:
                on_trial(record)
        codes.append(trial_code)
        result.trials.append(record)
        return failure_score if record.fitness is None else record.fitness

    study.optimize(objective, n_trials=cfg.trials)
    scored = [t for t in result.trials if t.fitness is not None]
    best = max(scored, key=lambda t: (t.fitness, -t.number), default=None)
    result.best = best.number if best is not None else 0
    result.code = codes[result.best]
    return result


def fit_trials(c: Candidate) -> int:
    """Suite evaluations spent fitting this candidate's constants (0 where it was not fitted)."""
    return int(((c.metrics or {}).get(Stage.FIT.value) or {}).get("trials") or 0)


def suite_evaluations(c: Candidate) -> int:
    """Suite evaluations this candidate cost: its screen and fitness runs (not a no-op screen) and fit trials."""
    return sum(1 for s in (Stage.SCREEN.value, Stage.FITNESS.value) if (c.metrics or {}).get(s)) + fit_trials(c)


class FitTrialStore:
    """Finished fitting trials in the campaign database, so a resumed fit stage re-evaluates none."""

    def __init__(self, db: Any, stop: Any):
        self.db, self.stop = db, stop

    def load(self, cid: str) -> list[dict[str, Any]]:
        return self.db.fit_trials(cid)

    def save(self, cid: str, trial: Any) -> None:
        if not self.stop.is_set():  # a trial cut short by the shutdown is not a finished trial
            self.db.add_fit_trial(cid, asdict(trial))
