"""Reading loss code without running it: the one place that parses candidate and library source.

Everything here works on the text with ``ast`` (parsing is safe; exec happens only in sandbox
workers): find the contract function, read its keyword hyper-parameters, strip decorators, and a
normal form of the code for hashing (so spelling, comments and names do not make a new candidate).
Used by the mutation proposer, export, tuning, the campaign and the library itself.
"""

from __future__ import annotations

import ast
import hashlib
import math
import threading

from candidate_losses.contract import CONTRACT_ARGS


class LossSourceError(ValueError):
    """The code is not one parseable contract function; the message names what is wrong."""


_AST_LOCK = threading.Lock()


def parse_ast(code: str, mode: str = "exec") -> ast.AST:
    """``ast.parse`` under one process-wide lock. CPython 3.11 keeps the AST constructor's recursion
    depth in state shared by all threads, so parses on two threads at once (the campaign proposes
    and validates on thread pools) can fail with "SystemError: AST constructor recursion depth
    mismatch" (python/cpython gh-106905). Every parse of loss code in prefdisco goes through here."""
    with _AST_LOCK:
        return ast.parse(code, mode=mode)


def parse(code: str) -> ast.Module:
    try:
        return parse_ast(code)  # type: ignore[return-value]
    except SyntaxError as exc:
        raise LossSourceError(f"loss code does not parse (line {exc.lineno}: {exc.msg}); fix the source") from None


def contract_function(code: str | ast.Module) -> ast.FunctionDef:
    """The one top-level function whose first five parameters are the contract's."""
    tree = parse(code) if isinstance(code, str) else code
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    matching = [f for f in functions if tuple(a.arg for a in f.args.args[:5]) == CONTRACT_ARGS]
    if len(matching) != 1:
        raise LossSourceError(
            f"expected one top-level function taking ({', '.join(CONTRACT_ARGS)}, ...), found {len(matching)}")
    return matching[0]


def keyword_hyperparameters(code: str) -> dict[str, float | int]:
    """Numeric keyword defaults (beyond the contract's five arguments) of the loss function in ``code``.

    The contract function if there is one, else the first top-level function; {} when there is none.
    """
    tree = parse_ast(code)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    fn = next((f for f in functions if [a.arg for a in f.args.args[:5]] == list(CONTRACT_ARGS)),
              functions[0] if functions else None)
    if fn is None:
        return {}
    out: dict[str, float | int] = {}
    positional = fn.args.args[len(fn.args.args) - len(fn.args.defaults):] if fn.args.defaults else []
    pairs = list(zip(positional, fn.args.defaults)) + [
        (a, d) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None]
    for arg, default in pairs:
        if arg.arg in CONTRACT_ARGS:
            continue
        try:
            value = ast.literal_eval(default)
        except ValueError:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[arg.arg] = value
    return out


def strip_decorators(code: str) -> str:
    """``code`` without the decorators of its top-level functions (``@register`` in the library);
    every other line is kept as written."""
    tree = parse(code)
    lines = code.splitlines(keepends=True)
    drop: set[int] = set()
    for fn in tree.body:
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.decorator_list:
            first = min(d.lineno for d in fn.decorator_list)
            drop.update(range(first - 1, fn.lineno - 1))
    return "".join(line for i, line in enumerate(lines) if i not in drop) if drop else code


class _Canonicalise(ast.NodeTransformer):
    """Rename the function and its local names to positional placeholders, drop docstrings."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _rename(self, name: str) -> str:
        if name in CONTRACT_ARGS:
            return name
        if name not in self.names:
            self.names[name] = f"v{len(self.names)}"
        return self.names[name]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = "loss"
        node.decorator_list = []
        node.returns = None
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(
            getattr(node.body[0], "value", None), ast.Constant
        ) and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
        self.generic_visit(node)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._rename(node.arg)
        node.annotation = None
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Store) or node.id in self.names:
            node.id = self._rename(node.id)
        return node


def normalize_code(code: str) -> str:
    """A formatting-, comment-, docstring- and naming-insensitive form of ``code`` (for hashing).

    Unparseable code normalises to itself with whitespace collapsed, so it still hashes stably.
    """
    try:
        tree = parse_ast(code)
    except SyntaxError:
        return " ".join(code.split())
    # Module docstring and type-only statements do not change behaviour.
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(getattr(n, "value", None), ast.Constant))]
    tree.body = body
    tree = _Canonicalise().visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def code_hash(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()[:32]


def count_nodes(code: str) -> int:
    try:
        return sum(1 for _ in ast.walk(parse_ast(code)))
    except SyntaxError:
        return 0
