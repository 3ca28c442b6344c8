"""A typed grammar of structural moves on contract losses (offline search that can change shape).

AST edits (``mutation``) make near neighbours; these moves change what kind of loss a program is:
- ``MarginTransform``: z = beta * margin -> T(z) (scale, shift, clip, tanh soft-clip, softsign),
  applied to any parent by re-expressing its chosen log-prob so that its margin becomes T(z)/beta;
- ``Link``: the parent's logistic link (``F.logsigmoid``) or an earlier grammar link -> another link
  (tempered logistic, hinge, squared / IPO-like, exponential, smooth hinge);
- ``GateMix`` / ``Mixture``: two parents mixed by a sigmoid gate on z (DiscoPOP) or a constant;
- ``LabelSmoothing``: (1 - eps) * L(chosen, rejected) + eps * L(rejected, chosen) (conservative);
- ``Regulariser``: an NLL term on the chosen response, or hinges keeping the chosen / rejected
  log-ratio above a floor.
Every move is a frozen dataclass with typed parameters whose ``render`` returns the child's source
(or None where the move does not apply). Parent code is only parsed and rewritten, never run.
"""

from __future__ import annotations

import ast
import math
import random
from dataclasses import dataclass
from typing import Literal

from candidate_losses.contract import CONTRACT_ARGS
from candidate_losses.source import contract_function, parse_ast

PC, PR, RC, RR, BETA = CONTRACT_ARGS
Z = f"beta * (({PC} - {RC}) - ({PR} - {RR}))"
SWAPPED = {PC: PR, PR: PC, RC: RR, RR: RC, BETA: BETA}


def _num(x: float) -> str:
    return repr(float(f"{x:.4g}"))


def _expr(text: str) -> ast.expr:
    return parse_ast(text, mode="eval").body  # type: ignore[attr-defined]


def inline_loss(code: str, prefix: str, args: dict[str, str] | None = None) -> tuple[list[ast.stmt], ast.expr] | None:
    """The parent's body statements (locals renamed with `prefix`, contract arguments renamed by
    `args`) and its returned expression; None when the function cannot be inlined (several returns,
    nested functions, hyper-parameters without defaults, or a contract argument re-bound)."""
    try:
        fn = contract_function(parse_ast(code))  # type: ignore[arg-type]
    except (SyntaxError, ValueError):
        return None
    last = fn.body[-1] if fn.body else None
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return)]
    if not (isinstance(last, ast.Return) and last.value is not None and returns == [last]):
        return None
    if fn.args.vararg or fn.args.kwarg or any(
            isinstance(n, (ast.FunctionDef, ast.Lambda, ast.Global, ast.Nonlocal, ast.ClassDef))
            for n in ast.walk(fn) if n is not fn):
        return None
    mapping = {a: (args or {}).get(a, a) for a in CONTRACT_ARGS}
    stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    if stored & set(CONTRACT_ARGS):
        return None
    positional = fn.args.args
    defaults = dict(zip([a.arg for a in positional][::-1], fn.args.defaults[::-1]))
    defaults.update({a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
    extra = [a.arg for a in positional + fn.args.kwonlyargs if a.arg not in CONTRACT_ARGS]
    if any(p not in defaults for p in extra):
        return None
    local = set(extra) | stored
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            if node.id in local:
                node.id = prefix + node.id
            elif node.id in mapping:
                node.id = mapping[node.id]
    header: list[ast.stmt] = [ast.Assign(targets=[ast.Name(prefix + p, ast.Store())], value=defaults[p])
                              for p in extra]
    body = [s for s in fn.body[:-1] if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return header + body, last.value  # type: ignore[union-attr]


def _module(name: str, body: list[ast.stmt]) -> str:
    fn = parse_ast(f"def {name}({', '.join(CONTRACT_ARGS)}):\n    pass").body[0]  # type: ignore[attr-defined]
    fn.body = body
    module = ast.Module(body=[fn], type_ignores=[])
    ast.fix_missing_locations(module)
    return ast.unparse(module) + "\n"


def _wrap(code: str, name: str, before: str, after: str, args: dict[str, str] | None = None) -> str | None:
    """``before``; the parent's body with its result bound to ``loss_p``; ``after`` (ends in a return)."""
    inlined = inline_loss(code, "p_", args)
    if inlined is None:
        return None
    stmts, value = inlined
    head = parse_ast(before).body if before else []  # type: ignore[attr-defined]
    tail = parse_ast(after).body  # type: ignore[attr-defined]
    return _module(name, [*head, *stmts, ast.Assign([ast.Name("loss_p", ast.Store())], value), *tail])


@dataclass(frozen=True)
class MarginTransform:
    """z -> T(z): scale (effective beta), shift (target margin), clip / tanh / softsign (saturation)."""

    kind: Literal["scale", "shift", "clip", "tanh", "softsign"]
    c: float
    arity = 1

    def z_expr(self, z: str) -> str:
        c = _num(self.c)
        return {"scale": f"{z} * {c}", "shift": f"{z} - {c}", "clip": f"torch.clamp({z}, -{c}, {c})",
                "tanh": f"{c} * torch.tanh({z} / {c})", "softsign": f"{c} * F.softsign({z} / {c})"}[self.kind]

    def render(self, parents: list[str], name: str) -> str | None:
        before = f"z_in = {Z}\nz_t = {self.z_expr('z_in')}\nchosen_t = {PC} + (z_t - z_in) / beta"
        return _wrap(parents[0], name, before, "return loss_p", {PC: "chosen_t"})

    def describe(self) -> str:
        return f"margin transform z -> {self.z_expr('z')}"


LINKS = {  # log-likelihood of the pair as a function of the margin m; the loss is its negative
    "logistic": "F.logsigmoid({c} * {m}) / {c}",
    "hinge": "-F.relu({c} - {m})",
    "squared": "-({m} - {c}) ** 2",
    "exp": "-torch.exp(-{c} * torch.clamp({m}, min=-20.0))",
    "smooth_hinge": "-torch.where(F.relu({c} - {m}) < 1.0, 0.5 * F.relu({c} - {m}) ** 2, F.relu({c} - {m}) - 0.5)",
}


@dataclass(frozen=True)
class Link:
    """Replace the parent's link: its ``F.logsigmoid(m)`` (or an earlier grammar link) by another."""

    kind: Literal["logistic", "hinge", "squared", "exp", "smooth_hinge"]
    c: float
    arity = 1

    def link_expr(self, m: str) -> str:
        return LINKS[self.kind].format(c=_num(self.c), m=m)

    def render(self, parents: list[str], name: str) -> str | None:
        try:
            tree = parse_ast(parents[0])
            fn = contract_function(tree)  # type: ignore[arg-type]
        except (SyntaxError, ValueError):
            return None
        fn.name, fn.decorator_list = name, []
        for i, stmt in enumerate(fn.body):  # an earlier grammar link: swap its expression
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                    and stmt.targets[0].id.endswith("link_ll") and i > 0:
                m = stmt.targets[0].id[: -len("link_ll")] + "link_m"
                stmt.value = _expr(self.link_expr(m))
                return ast.unparse(tree) + "\n"
        for i, stmt in enumerate(fn.body):  # else the first logistic link, hoisted into two statements
            if any(isinstance(n, (ast.Lambda, ast.comprehension)) for n in ast.walk(stmt)):
                continue
            calls = [n for n in ast.walk(stmt) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                     and n.func.attr == "logsigmoid" and len(n.args) == 1 and not n.keywords]
            if not calls:
                continue
            call = calls[0]
            hoisted = parse_ast(f"link_m = {ast.unparse(call.args[0])}\n"
                                f"link_ll = {self.link_expr('link_m')}").body  # type: ignore[attr-defined]
            for parent in ast.walk(stmt):
                for field, value in ast.iter_fields(parent):
                    if value is call:
                        setattr(parent, field, ast.Name("link_ll", ast.Load()))
                    elif isinstance(value, list) and call in value:
                        value[value.index(call)] = ast.Name("link_ll", ast.Load())
            fn.body[i:i] = hoisted
            ast.fix_missing_locations(tree)
            return ast.unparse(tree) + "\n"
        return None

    def describe(self) -> str:
        return f"link -> {self.kind}: loss = -({self.link_expr('m')})"


def _two_parents(parents: list[str], name: str, tail_source: str) -> str | None:
    """A loss that computes both parents' losses inline (``loss_a``, ``loss_b``), then ``tail_source``."""
    a, b = inline_loss(parents[0], "a_"), inline_loss(parents[1], "b_")
    if a is None or b is None:
        return None
    tail = parse_ast(tail_source).body  # type: ignore[attr-defined]
    return _module(name, [*a[0], ast.Assign([ast.Name("loss_a", ast.Store())], a[1]),
                          *b[0], ast.Assign([ast.Name("loss_b", ast.Store())], b[1]), *tail])


@dataclass(frozen=True)
class GateMix:
    """DiscoPOP's gate: (1 - sigmoid(z / tau)) * loss_a + sigmoid(z / tau) * loss_b."""

    tau: float
    arity = 2

    def render(self, parents: list[str], name: str) -> str | None:
        return _two_parents(parents, name, f"z_mix = {Z}\ngate = torch.sigmoid(z_mix / {_num(self.tau)})\n"
                                           "return (1.0 - gate) * loss_a + gate * loss_b")

    def describe(self) -> str:
        return f"gate-mix of two parents by sigmoid(z / {_num(self.tau)})"


@dataclass(frozen=True)
class Mixture:
    """A constant mixture w * loss_a + (1 - w) * loss_b."""

    w: float
    arity = 2

    def render(self, parents: list[str], name: str) -> str | None:
        return _two_parents(parents, name, f"w_mix = {_num(self.w)}\nreturn w_mix * loss_a + (1.0 - w_mix) * loss_b")

    def describe(self) -> str:
        return f"mixture {_num(self.w)} * a + {_num(1 - self.w)} * b"


@dataclass(frozen=True)
class LabelSmoothing:
    """(1 - eps) * L(chosen, rejected) + eps * L(rejected, chosen): robust to flipped labels."""

    eps: float
    arity = 1

    def render(self, parents: list[str], name: str) -> str | None:
        fwd = inline_loss(parents[0], "f_")
        rev = inline_loss(parents[0], "r_", SWAPPED)
        if fwd is None or rev is None:
            return None
        e = _num(self.eps)
        tail = parse_ast(f"eps = {e}\nreturn (1.0 - eps) * loss_fwd + eps * loss_rev").body  # type: ignore[attr-defined]
        return _module(name, [*fwd[0], ast.Assign([ast.Name("loss_fwd", ast.Store())], fwd[1]),
                              *rev[0], ast.Assign([ast.Name("loss_rev", ast.Store())], rev[1]), *tail])

    def describe(self) -> str:
        return f"label smoothing eps={_num(self.eps)} (swapped pair mixed in)"


REGULARISERS = {
    "chosen_nll": f"-{{w}} * {PC}",  # SFT-like NLL of the chosen response
    "chosen_floor": f"{{w}} * F.relu({{floor}} - ({PC} - {RC}))",  # DPOP: keep the chosen log-ratio up
    "rejected_floor": f"{{w}} * F.relu({{floor}} - ({PR} - {RR}))",  # do not push rejected below a floor
}


@dataclass(frozen=True)
class Regulariser:
    """loss + a term on the chosen / rejected log-ratio (see ``REGULARISERS``)."""

    kind: Literal["chosen_nll", "chosen_floor", "rejected_floor"]
    w: float
    floor: float = 0.0

    arity = 1

    def term(self) -> str:
        return REGULARISERS[self.kind].format(w=_num(self.w), floor=f"({_num(self.floor)})")

    def render(self, parents: list[str], name: str) -> str | None:
        return _wrap(parents[0], name, "", f"return loss_p + {self.term()}")

    def describe(self) -> str:
        return f"regulariser {self.kind}: + {self.term()}"


Move = MarginTransform | Link | GateMix | Mixture | LabelSmoothing | Regulariser
MOVE_WEIGHTS: dict[str, float] = {"margin": 0.2, "link": 0.25, "gate": 0.15, "mixture": 0.05,
                                  "smoothing": 0.15, "regulariser": 0.2}


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return float(_num(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def random_move(rng: random.Random, parents: int) -> Move:
    """One move with its parameters drawn from `rng` (two-parent moves only when two are given)."""
    kinds = [k for k in MOVE_WEIGHTS if parents >= 2 or k not in ("gate", "mixture")]
    kind = rng.choices(kinds, weights=[MOVE_WEIGHTS[k] for k in kinds])[0]
    if kind == "margin":
        t = rng.choice(["scale", "shift", "clip", "tanh", "softsign"])
        lo, hi = {"scale": (0.3, 3.0), "shift": (0.05, 2.0)}.get(t, (0.5, 8.0))
        return MarginTransform(t, _log_uniform(rng, lo, hi))  # type: ignore[arg-type]
    if kind == "link":
        t = rng.choice(list(LINKS))
        lo, hi = {"logistic": (0.5, 3.0), "exp": (0.5, 2.0)}.get(t, (0.3, 3.0))
        return Link(t, _log_uniform(rng, lo, hi))  # type: ignore[arg-type]
    if kind == "gate":
        return GateMix(_log_uniform(rng, 0.05, 2.0))
    if kind == "mixture":
        return Mixture(float(_num(rng.uniform(0.2, 0.8))))
    if kind == "smoothing":
        return LabelSmoothing(_log_uniform(rng, 0.02, 0.3))
    reg = rng.choice(list(REGULARISERS))
    w = _log_uniform(rng, 0.002, 0.05) if reg == "chosen_nll" else _log_uniform(rng, 0.05, 1.0)
    floor = {"chosen_nll": 0.0, "chosen_floor": 0.0, "rejected_floor": -_log_uniform(rng, 1.0, 20.0)}[reg]
    return Regulariser(reg, w, floor)  # type: ignore[arg-type]
