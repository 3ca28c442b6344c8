"""Static validation of candidate loss source against the allow-list: AST only, never executed.

The same check runs in the parent (a fast, readable rejection for the LLM) and again inside the
sandbox child right before the code is executed (so no caller can skip it). It accepts code that
uses only what ``namespace.py`` provides: the ``torch`` / ``F`` / ``math`` facades, tensor
methods, a few builtins and imports of those same modules. It rejects, with a message an LLM can
act on: other imports, dunder and private names, attributes outside the allow-list, attribute
assignment, ``match``, classes, decorators, generators, async code and format strings that
reach attributes. Everything else (a module-level ``name = lambda ...`` alias, type hints,
docstrings, debug prints) is ordinary loss code and passes.
"""

from __future__ import annotations

import ast
import builtins
import string
from dataclasses import dataclass

from candidate_losses.contract import CONTRACT_ARGS
from candidate_losses.source import parse_ast
from discovery.sandbox.namespace import (
    ALIAS_FACADE,
    FACADE_MEMBERS,
    FROM_IMPORTABLE,
    IMPORTABLE,
    PRELOADED,
    SAFE_BUILTINS,
    VALUE_ATTRIBUTES,
)

MAX_SOURCE_CHARS = 20_000
FORBIDDEN_NODES: dict[type, str] = {
    ast.ClassDef: "class definitions", ast.AsyncFunctionDef: "async functions",
    ast.Await: "await", ast.AsyncFor: "async for", ast.AsyncWith: "async with",
    ast.Global: "global statements", ast.Nonlocal: "nonlocal statements",
    ast.Yield: "generators (yield)", ast.YieldFrom: "generators (yield from)",
    ast.Match: "match statements",
}
if hasattr(ast, "TryStar"):
    FORBIDDEN_NODES[ast.TryStar] = "except* blocks"
UNAVAILABLE_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_")) - SAFE_BUILTINS
IMPORT_HINT = "loss code may import only torch, torch.nn.functional and math (torch, F and math " \
              "are already there)"


@dataclass(frozen=True)
class ValidationError:
    """One reason the candidate was rejected. ``kind`` is a FailureClass value."""

    kind: str  # "syntax" | "contract" | "unsafe"
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.kind} (line {self.line}): {self.message}"


def _unsafe(node: ast.AST, message: str) -> ValidationError:
    return ValidationError("unsafe", getattr(node, "lineno", 0), message)


def _is_dunder(name: str | None) -> bool:
    return bool(name) and name.startswith("__") and name.endswith("__")  # type: ignore[union-attr]


class _Checker(ast.NodeVisitor):
    """Walks the tree once; knows which local names are bound to which facade."""

    def __init__(self, bound: set[str]) -> None:
        self.errors: list[ValidationError] = []
        self.facades: dict[str, str] = dict(PRELOADED)
        self.bound = bound

    def error(self, node: ast.AST, message: str) -> None:
        self.errors.append(_unsafe(node, message))

    # ---- generic ------------------------------------------------------------------------------
    def generic_visit(self, node: ast.AST) -> None:
        for kind, what in FORBIDDEN_NODES.items():
            if isinstance(node, kind):
                self.error(node, f"{what} are not allowed in a loss function")
                return
        super().generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            self.error(node, "decorators are not allowed")
        self._identifier(node, node.name)
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        self._identifier(node, node.arg)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        self._identifier(node, node.arg)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self._identifier(node, node.name)
        self.generic_visit(node)

    def _identifier(self, node: ast.AST, name: str | None) -> None:
        if _is_dunder(name):
            self.error(node, f"the name {name!r} is not allowed (dunder names reach interpreter "
                             "internals)")

    # ---- names and attributes -----------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if _is_dunder(node.id):
            self.error(node, f"the name {node.id!r} is not allowed (dunder names reach "
                             "interpreter internals)")
        elif node.id in UNAVAILABLE_BUILTINS and node.id not in self.bound:
            self.error(node, f"the builtin {node.id!r} is not available to loss code (no files, "
                             "introspection or dynamic code)")

    def _facade_of(self, node: ast.AST) -> str | None:
        """The facade an expression denotes statically (``torch``, ``torch.nn``, ``F``...)."""
        if isinstance(node, ast.Name):
            return self.facades.get(node.id)
        if isinstance(node, ast.Attribute):
            parent = self._facade_of(node.value)
            if parent == "torch" and node.attr == "nn":
                return "torch.nn"
            if parent == "torch.nn" and node.attr == "functional":
                return "F"
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if not isinstance(node.ctx, ast.Load):
            self.error(node, "assigning or deleting attributes is not allowed (it would patch "
                             "shared objects); use local variables")
        elif attr.startswith("_"):
            self.error(node, f"private/dunder attribute '.{attr}' is not allowed")
        else:
            facade = self._facade_of(node.value)
            if facade is not None:
                if attr not in FACADE_MEMBERS[facade]:
                    shown = "torch.nn.functional" if facade == "F" else facade
                    self.error(node, f"{shown}.{attr} is not available to loss code; use tensor "
                                     "operations of torch, F (torch.nn.functional) and math")
            elif attr == "format":
                self.error(node, "'.format' is allowed only directly on a string literal, e.g. "
                                 "\"{:.3f}\".format(x)")
            elif attr not in VALUE_ATTRIBUTES:
                self.error(node, f"attribute '.{attr}' is not allowed in a loss function (only "
                                 "tensor methods and properties are)")
        self.visit(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "format"
                and isinstance(func.value, ast.Constant) and isinstance(func.value.value, str)):
            problem = _format_problem(func.value.value)
            if problem:
                self.error(node, problem)
            for arg in [*node.args, *node.keywords]:
                self.visit(arg)
            return
        self.generic_visit(node)

    # ---- imports ------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in IMPORTABLE or alias.name == "__future__":
                self.error(node, f"import of {alias.name!r} is not allowed; {IMPORT_HINT}")
                continue
            self._identifier(node, alias.asname)
            if alias.asname:  # import torch.nn.functional as F -> F
                self.facades[alias.asname] = ALIAS_FACADE[alias.name]
            else:  # import torch.nn -> binds torch
                self.facades[alias.name.split(".")[0]] = IMPORTABLE[alias.name]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module not in FROM_IMPORTABLE:
            self.error(node, f"import from {module or '.'!r} is not allowed; {IMPORT_HINT}")
            return
        facade = FROM_IMPORTABLE[module]
        for alias in node.names:
            self._identifier(node, alias.asname)
            if alias.name == "*":
                self.error(node, "star imports are not allowed")
            elif alias.name not in FACADE_MEMBERS[facade]:
                self.error(node, f"importing {alias.name!r} from {module} is not allowed; "
                                 f"{IMPORT_HINT}")
            else:
                nested = {("torch", "nn"): "torch.nn", ("torch.nn", "functional"): "F"}
                if (facade, alias.name) in nested:
                    self.facades[alias.asname or alias.name] = nested[(facade, alias.name)]


def _format_problem(template: str) -> str | None:
    """Why ``template.format(...)`` could reach attributes or items, or None if it cannot."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return "malformed format string"
    for _, field, spec, _ in fields:
        if field is None:
            continue
        if "." in field or "[" in field or _is_dunder(field):
            return (f"format field {{{field}}} reaches into an object; use positional fields "
                    "like \"{}\" or \"{:.3f}\"")
        if spec and "{" in spec:
            nested = _format_problem(spec)
            if nested:
                return nested
    return None


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the source binds somewhere (so a local called ``input`` is not a builtin)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _check_signature(fn: ast.FunctionDef) -> list[ValidationError]:
    args = fn.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    line = fn.lineno
    expected = ", ".join(CONTRACT_ARGS)
    if tuple(positional[: len(CONTRACT_ARGS)]) != CONTRACT_ARGS:
        return [ValidationError("contract", line,
                                f"the function must take ({expected}, **hyper) positionally; "
                                f"got ({', '.join(positional)})")]
    errors = []
    extra = positional[len(CONTRACT_ARGS):]
    if len(extra) > len(args.defaults):
        errors.append(ValidationError("contract", line,
                                      "extra arguments after beta must have default values"))
    if args.vararg is not None:
        errors.append(ValidationError("contract", line, "*args is not allowed; use keyword "
                                                        "hyper-parameters with defaults"))
    if any(d is None for d in args.kw_defaults):
        errors.append(ValidationError("contract", line,
                                      "keyword-only hyper-parameters must have default values"))
    return errors


def _top_level(tree: ast.Module) -> tuple[list[ast.FunctionDef], list[ValidationError]]:
    functions, errors = [], []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            functions.append(stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            pass
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if not all(isinstance(t, (ast.Name, ast.Tuple)) for t in targets):
                errors.append(ValidationError("contract", stmt.lineno, "module-level assignments "
                                              "may only bind names (constants, aliases)"))
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                and isinstance(stmt.value.value, str):
            pass  # module docstring
        else:
            errors.append(ValidationError(
                "contract", stmt.lineno, f"top-level {type(stmt).__name__} is not allowed; the "
                "module may hold only imports, constants and one function"))
    return functions, errors


def validate_source(code: str) -> list[ValidationError]:
    """Every static reason to reject ``code`` (most important first); [] means it may run."""
    if not isinstance(code, str) or not code.strip():
        return [ValidationError("contract", 0, "empty source: define one loss function")]
    if len(code) > MAX_SOURCE_CHARS:
        return [ValidationError("contract", 0,
                                f"source is {len(code)} characters; the limit is {MAX_SOURCE_CHARS}")]
    try:
        tree = parse_ast(code, mode="exec")
    except SyntaxError as exc:
        return [ValidationError("syntax", exc.lineno or 0, f"SyntaxError: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [ValidationError("syntax", 0, f"unparsable source: {type(exc).__name__}")]

    functions, errors = _top_level(tree)
    if len(functions) != 1:
        errors.append(ValidationError(
            "contract", functions[1].lineno if len(functions) > 1 else 1,
            f"expected exactly one top-level function, found {len(functions)}"))
    else:
        errors.extend(_check_signature(functions[0]))
    checker = _Checker(_bound_names(tree))
    try:
        checker.visit(tree)
    except RecursionError:
        return [ValidationError("syntax", 0, "the source is nested too deeply")]
    errors.extend(checker.errors)
    return sorted(errors, key=_priority)


def _priority(error: ValidationError) -> tuple[int, int]:
    return {"syntax": 0, "unsafe": 1, "contract": 2}.get(error.kind, 3), error.line


def first_error(errors: list[ValidationError]) -> ValidationError | None:
    """The error to report: syntax before unsafe before contract, then by line."""
    return min(errors, key=_priority) if errors else None
