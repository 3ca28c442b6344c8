"""MutationProposer: offline evolution of loss programs by AST edits (no LLM, no key needed).

Children are made from archive programs by edits that mean something for a preference loss:
- perturb a constant (log-normal step: temperatures, margins, mixing weights),
- swap an op for a same-role alternative (logsigmoid -> hinge / exp / IPO-square shapes,
  sigmoid -> hard sigmoid, relu <-> softplus ...),
- transform the margin z = beta * rho (shift = target margin, scale = effective beta, soft clip),
- add a regularising term in z, or a focal re-weighting of hard pairs,
- crossover: gate-mix two parents as in the DiscoPOP family
  (``(1 - sigmoid(z / tau)) * loss_a + sigmoid(z / tau) * loss_b``) or mix them with a constant.
Selection pressure comes from the database (parents are drawn by fitness), so the edits only have
to make plausible neighbours; every choice is drawn from `random.Random(context.seed)`, so the same
context always yields the same child. Candidate code is only parsed, never executed, here.
"""

from __future__ import annotations

import ast
import math
import random
from typing import Callable

from candidate_losses.contract import CONTRACT_ARGS
from candidate_losses.source import code_hash, contract_function, count_nodes, parse_ast
from discovery.config import MutationConfig, ProposerConfig
from discovery.proposers import grammar
from discovery.proposers.base import Proposal
from discovery.proposers.prompting import ProposalContext
from discovery.proposers.reply import sanitize_name

Z_EXPR = ("beta * ((policy_chosen_logps - reference_chosen_logps)"
          " - (policy_rejected_logps - reference_rejected_logps))")

# Same-role replacements, keyed by the called function's last attribute name; {x} is the argument.
OP_ALTERNATIVES: dict[str, list[str]] = {
    "logsigmoid": [
        "-F.relu(1.0 - ({x}))",                        # hinge / SLiC shape
        "-torch.exp(-torch.clamp({x}, min=-20.0))",     # exponential (EXO-like) shape
        "-F.softplus(0.5 - ({x}))",                     # shifted logistic
        "-(({x}) - 1.0) ** 2",                          # IPO-like square
        "F.logsigmoid(2.0 * ({x}))",                    # sharper logistic
    ],
    "sigmoid": [
        "0.5 * (torch.tanh({x}) + 1.0)",
        "torch.clamp(0.25 * ({x}) + 0.5, 0.0, 1.0)",
        "torch.sigmoid(2.0 * ({x}))",
    ],
    "relu": ["F.softplus({x})", "F.relu({x}) ** 2", "F.elu({x}) + 1.0"],
    "softplus": ["F.relu({x})", "F.softplus(2.0 * ({x})) / 2.0", "torch.exp(torch.clamp({x}, max=20.0))"],
    "exp": ["F.softplus({x})", "torch.exp(0.5 * torch.clamp({x}, max=40.0))", "F.relu({x}) + 1.0"],
    "tanh": ["2.0 * torch.sigmoid({x}) - 1.0", "({x}) / (1.0 + torch.abs({x}))"],
}
MARGIN_TRANSFORMS = [
    ("shift", "({m}) - {c}", (0.05, 1.0)),                # target margin (SimPO-style gamma)
    ("scale", "({m}) * {c}", (0.5, 2.0)),                 # effective beta
    ("softclip", "{c} * torch.tanh(({m}) / {c})", (1.0, 8.0)),
    ("clamp", "torch.clamp({m}, -{c}, {c})", (1.0, 10.0)),
]
EXTRA_TERMS = [
    ("hinge", "F.relu({c} - z_extra)", (0.5, 2.0)),
    ("logistic", "-F.logsigmoid(z_extra - {c})", (0.0, 1.0)),
    ("square", "(z_extra - {c}) ** 2", (0.5, 2.0)),
    ("exp", "torch.exp(-torch.clamp(z_extra, min=-20.0) * {c})", (0.5, 1.5)),
]


def _num(x: float) -> str:
    return repr(float(f"{x:.4g}"))


def _expr(text: str) -> ast.expr:
    return parse_ast(text, mode="eval").body


class _Program:
    """A parsed single-function loss, with helpers to edit it in place."""

    def __init__(self, code: str):
        self.tree = parse_ast(code)
        self.fn = contract_function(self.tree)  # ValueError unless exactly one contract function
        self.fn.decorator_list = []

    def code(self) -> str:
        ast.fix_missing_locations(self.tree)
        return ast.unparse(self.tree) + "\n"

    def nodes(self, kind: type) -> list[ast.AST]:
        return [n for n in ast.walk(self.fn) if isinstance(n, kind)]

    def replace(self, old: ast.AST, new: ast.AST) -> bool:
        for parent in ast.walk(self.fn):
            for name, value in ast.iter_fields(parent):
                if value is old:
                    setattr(parent, name, new)
                    return True
                if isinstance(value, list):
                    for i, item in enumerate(value):
                        if item is old:
                            value[i] = new
                            return True
        return False

    def final_return(self) -> ast.Return | None:
        returns = self.nodes(ast.Return)
        last = self.fn.body[-1] if self.fn.body else None
        if len(returns) == 1 and last is returns[0] and last.value is not None:
            return last
        return None


def _tunable_constants(prog: _Program) -> list[ast.Constant]:
    slices = {id(n) for s in prog.nodes(ast.Subscript) for n in ast.walk(s.slice)}
    out = []
    for node in prog.nodes(ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or id(node) in slices:
            continue
        if v == 0 or (isinstance(v, int) and abs(v) > 100):
            continue
        out.append(node)
    return out


def perturb_constant(prog: _Program, rng: random.Random, cfg: MutationConfig) -> str | None:
    consts = _tunable_constants(prog)
    if not consts:
        return None
    node = rng.choice(consts)
    old = float(node.value)
    new = old * math.exp(rng.gauss(0.0, cfg.constant_sigma))
    node.value = float(f"{new:.4g}")
    return f"constant {old:g} -> {node.value:g}"


def swap_op(prog: _Program, rng: random.Random, cfg: MutationConfig) -> str | None:
    calls = [c for c in prog.nodes(ast.Call)
             if isinstance(c.func, ast.Attribute) and c.func.attr in OP_ALTERNATIVES and len(c.args) == 1]
    if not calls:
        return None
    call = rng.choice(calls)
    template = rng.choice(OP_ALTERNATIVES[call.func.attr])
    arg = ast.unparse(call.args[0])
    prog.replace(call, _expr(template.format(x=arg)))
    return f"op {call.func.attr}(.) -> {template.format(x='x')}"


def _beta_products(prog: _Program) -> list[ast.BinOp]:
    def is_beta(n: ast.AST) -> bool:
        return isinstance(n, ast.Name) and n.id == "beta"

    return [b for b in prog.nodes(ast.BinOp)
            if isinstance(b.op, ast.Mult) and (is_beta(b.left) or is_beta(b.right))]


def transform_margin(prog: _Program, rng: random.Random, cfg: MutationConfig) -> str | None:
    products = _beta_products(prog)
    if not products:
        return None
    node = rng.choice(products)
    label, template, (lo, hi) = rng.choice(MARGIN_TRANSFORMS)
    c = _num(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    prog.replace(node, _expr(template.format(m=ast.unparse(node), c=c)))
    return f"margin {label} ({c})"


def _ensure_z(prog: _Program) -> None:
    ret = prog.final_return()
    if not any(isinstance(n, ast.Name) and n.id == "z_extra" for n in prog.nodes(ast.Name)):
        stmt = parse_ast(f"z_extra = {Z_EXPR}").body[0]
        prog.fn.body.insert(prog.fn.body.index(ret), stmt)


def add_term(prog: _Program, rng: random.Random, cfg: MutationConfig) -> str | None:
    ret = prog.final_return()
    if ret is None:
        return None
    _ensure_z(prog)
    label, template, (lo, hi) = rng.choice(EXTRA_TERMS)
    c = _num(rng.uniform(lo, hi))
    w = _num(math.exp(rng.uniform(math.log(0.05), math.log(0.5))))
    term = template.format(c=c)
    ret.value = _expr(f"({ast.unparse(ret.value)}) + {w} * {term}")
    return f"add {w} * {label} term"


def focal_weight(prog: _Program, rng: random.Random, cfg: MutationConfig) -> str | None:
    ret = prog.final_return()
    if ret is None:
        return None
    _ensure_z(prog)
    gamma = _num(rng.uniform(0.5, 2.0))
    if rng.random() < 0.5:
        weight = f"(1.0 + {gamma} * torch.sigmoid(-z_extra)).detach()"
        label = "up-weight misordered pairs"
    else:
        weight = f"torch.sigmoid(-z_extra).detach() ** {gamma} * 2.0"
        label = "focal weighting"
    ret.value = _expr(f"({ast.unparse(ret.value)}) * {weight}")
    return f"{label} (gamma {gamma})"


MUTATIONS: list[tuple[str, Callable[[_Program, random.Random, MutationConfig], str | None], float]] = [
    ("const", perturb_constant, 0.35),
    ("swap", swap_op, 0.2),
    ("margin", transform_margin, 0.2),
    ("term", add_term, 0.15),
    ("focal", focal_weight, 0.1),
]


def _inline_body(code: str, prefix: str) -> tuple[list[ast.stmt], ast.expr] | None:
    """Body statements (locals prefixed) and the returned expression, or None if not inlinable."""
    try:
        prog = _Program(code)
    except (SyntaxError, ValueError):
        return None
    fn = prog.fn
    ret = prog.final_return()
    if ret is None or fn.args.vararg or fn.args.kwarg or any(
        isinstance(n, (ast.FunctionDef, ast.Lambda, ast.Global, ast.Nonlocal, ast.ClassDef))
        for n in ast.walk(fn) if n is not fn
    ):
        return None
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    defaults = dict(zip([a.arg for a in fn.args.args][::-1], fn.args.defaults[::-1]))
    defaults.update({a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
    extra = [p for p in params if p not in CONTRACT_ARGS]
    if any(p not in defaults for p in extra):
        return None
    local = {p for p in extra} | {
        n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id in local:
            node.id = prefix + node.id
    header = [ast.Assign(targets=[ast.Name(prefix + p, ast.Store())], value=defaults[p]) for p in extra]
    body = [s for s in fn.body[:-1]
            if not (isinstance(s, ast.Expr) and isinstance(getattr(s, "value", None), ast.Constant))]
    return header + body, ret.value


def crossover(code_a: str, code_b: str, name: str, rng: random.Random) -> tuple[str, str] | None:
    a = _inline_body(code_a, "a_")
    b = _inline_body(code_b, "b_")
    if a is None or b is None:
        return None
    params = ", ".join(CONTRACT_ARGS)
    fn = parse_ast(f"def {name}({params}):\n    pass").body[0]
    body: list[ast.stmt] = [*a[0], ast.Assign([ast.Name("loss_a", ast.Store())], a[1]),
                            *b[0], ast.Assign([ast.Name("loss_b", ast.Store())], b[1])]
    if rng.random() < 0.6:
        tau = _num(math.exp(rng.uniform(math.log(0.05), math.log(2.0))))
        body += parse_ast(f"z_mix = {Z_EXPR}\ngate = torch.sigmoid(z_mix / {tau})\n"
                          f"return (1.0 - gate) * loss_a + gate * loss_b").body
        how = f"gate-mixed by sigmoid(z / {tau})"
    else:
        w = _num(rng.uniform(0.2, 0.8))
        body += parse_ast(f"return {w} * loss_a + (1.0 - {w}) * loss_b").body
        how = f"mixed with weight {w}"
    fn.body = body
    module = ast.Module(body=[fn], type_ignores=[])
    ast.fix_missing_locations(module)
    return ast.unparse(module) + "\n", how


def _root(name: str) -> str:
    return name.split("__")[0][:20]


class MutationProposer:
    """Offline proposer: mutation of one parent or crossover of two (see module docstring)."""

    name = "mutation"

    def __init__(self, config: MutationConfig | None = None, max_attempts: int = 12):
        self.config = config or MutationConfig()
        self.max_attempts = max_attempts

    def propose(self, context: ProposalContext) -> list[Proposal]:
        rng = random.Random(context.seed)
        out = []
        for _ in range(max(1, context.samples)):
            proposal = self._one(context, rng)
            if proposal is not None:
                out.append(proposal)
        return out

    def _one(self, ctx: ProposalContext, rng: random.Random) -> Proposal | None:
        if not ctx.parents:
            return None
        for _ in range(self.max_attempts):
            parents = list(ctx.parents)
            if self.config.grammar_rate > 0 and rng.random() < self.config.grammar_rate:
                made_g = self._grammar(ctx, rng)
                if made_g is None:
                    continue
                code, chosen, ops = made_g
            elif len(parents) >= 2 and rng.random() < self.config.crossover_rate:
                a, b = parents[0], parents[1]
                name = sanitize_name(f"{_root(a.name)}_x_{_root(b.name)}"[:40] + f"__g{ctx.generation}s{ctx.slot}")
                made = crossover(a.code, b.code, name, rng)
                if made is None:
                    continue
                code, how = made
                chosen, ops = [a, b], [f"crossover of {a.name} and {b.name}, {how}"]
            else:
                a = parents[0]
                try:
                    prog = _Program(a.code)
                except (SyntaxError, ValueError):
                    return None
                ops = []
                for _ in range(rng.randint(1, max(1, self.config.max_edits))):
                    names = [m for m in MUTATIONS]
                    label, op, _w = rng.choices(names, weights=[w for *_, w in names])[0]
                    note = op(prog, rng, self.config)
                    if note:
                        ops.append(note)
                if not ops:
                    continue
                prog.fn.name = sanitize_name(f"{_root(a.name)}__g{ctx.generation}s{ctx.slot}")
                code, chosen = prog.code(), [a]
            if count_nodes(code) > self.config.max_nodes:
                continue
            if any(code_hash(code) == code_hash(p.code) for p in ctx.parents):
                continue
            fn_name = parse_ast(code).body[0].name
            return Proposal(
                thought="; ".join(ops),
                name=fn_name,
                code=code,
                parent_ids=[p.id for p in chosen],
                proposer=self.name,
                meta={"ops": ops},
            )
        return None

    def _grammar(self, ctx: ProposalContext, rng: random.Random) -> tuple[str, list, list[str]] | None:
        """One typed structural move (``discovery.proposers.grammar``) on the context's parents."""
        parents = list(ctx.parents)
        move = grammar.random_move(rng, len(parents))
        chosen = parents[: move.arity]
        stem = "_x_".join(_root(p.name) for p in chosen)[:40]
        name = sanitize_name(f"{stem}__g{ctx.generation}s{ctx.slot}")
        code = move.render([p.code for p in chosen], name)
        if code is None:
            return None
        return code, chosen, [f"grammar: {move.describe()}"]


def from_config(config: ProposerConfig, campaign_dir: object = None) -> MutationProposer:
    """``proposer.kind: mutation`` in a campaign config."""
    return MutationProposer(config.mutation)
