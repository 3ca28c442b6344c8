"""Static validation of candidate loss source: AST only, never executed, < 5 ms.

Defence in depth, not the boundary (that is the worker process). It rejects early, with a
message an LLM can act on, code that breaks the contract or reaches for anything beyond
tensor maths: imports outside torch / torch.nn.functional / math, dynamic code and attribute
tricks, private or dunder attributes, and the parts of torch that touch files, processes,
native libraries or global state.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from candidate_losses.contract import CONTRACT_ARGS

MAX_SOURCE_CHARS = 20_000
ALLOWED_MODULES = frozenset({"torch", "torch.nn.functional", "math"})

# Names that must not appear at all (as variables, calls or targets).
BANNED_NAMES = frozenset({
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "breakpoint", "input", "help", "exit", "quit", "memoryview",
    "__builtins__", "__loader__", "__spec__",
    # modules (and what a builtins trick would reach for)
    "os", "sys", "subprocess", "socket", "builtins", "importlib", "ctypes", "shutil", "pathlib",
    "io", "pickle", "marshal", "signal", "resource", "posix", "pty", "multiprocessing",
    "threading", "inspect", "gc", "platform", "tempfile", "glob", "urllib", "http", "asyncio",
    "select", "selectors", "mmap", "fcntl", "code", "codeop", "runpy", "zipimport", "pkgutil",
    "shelve", "dbm", "sqlite3", "requests", "httpx", "numpy", "np", "weakref",
})

# Attribute names that reach files, processes, native code, serialisation or global state.
BANNED_ATTRIBUTES = BANNED_NAMES | frozenset({
    "load", "save", "hub", "ops", "utils", "from_file", "classes", "library", "jit", "compile",
    "package", "backends", "distributed", "profiler", "fx", "export", "onnx", "serialization",
    "storage", "untyped_storage", "UntypedStorage", "TypedStorage", "Storage", "cpp_extension",
    "tofile", "fromfile", "format", "format_map", "set_default_dtype", "set_default_tensor_type",
    "set_default_device", "set_num_threads", "set_num_interop_threads", "set_flush_denormal",
    "use_deterministic_algorithms", "set_printoptions", "cuda", "mps", "xpu", "random",
    "gi_frame", "gi_code", "f_globals", "f_locals", "f_back", "f_builtins", "f_code",
    "tb_frame", "tb_next", "cr_frame", "ag_frame", "co_code", "func_globals", "mro",
    "register_forward_hook", "register_module_forward_hook", "set_", "share_memory_",
})


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


def _check_import(node: ast.Import | ast.ImportFrom) -> list[ValidationError]:
    if isinstance(node, ast.Import):
        return [
            _unsafe(node, f"import of {alias.name!r} is not allowed; only torch, "
                          "torch.nn.functional and math may be imported")
            for alias in node.names if alias.name not in ALLOWED_MODULES
        ]
    module = node.module or ""
    errors = []
    if node.level or module not in ALLOWED_MODULES | {"torch.nn"}:
        return [_unsafe(node, f"import from {module or '.'!r} is not allowed; only torch, "
                              "torch.nn.functional and math may be imported")]
    for alias in node.names:
        full = f"{module}.{alias.name}"
        if alias.name == "*":
            errors.append(_unsafe(node, "star imports are not allowed"))
        elif module == "torch.nn" and full not in ALLOWED_MODULES:
            errors.append(_unsafe(node, f"{full!r} is not allowed; use torch.nn.functional"))
        elif alias.name in BANNED_ATTRIBUTES or alias.name.startswith("_"):
            errors.append(_unsafe(node, f"importing {alias.name!r} from {module} is not allowed"))
    return errors


def _check_node(node: ast.AST) -> list[ValidationError]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return _check_import(node)
    if isinstance(node, ast.Name) and node.id in BANNED_NAMES:
        return [_unsafe(node, f"the name {node.id!r} is not allowed in a loss function")]
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            return [_unsafe(node, f"private/dunder attribute '.{node.attr}' is not allowed")]
        if node.attr in BANNED_ATTRIBUTES:
            return [_unsafe(node, f"attribute '.{node.attr}' is not allowed in a loss function "
                                  "(files, processes, native code or global state)")]
    if isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
        return [_unsafe(node, "assigning or deleting attributes is not allowed (it would patch "
                              "shared modules); use local variables")]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and "__" in node.value:
        return [_unsafe(node, "string constants containing '__' are not allowed")]
    if isinstance(node, (ast.ClassDef, ast.AsyncFunctionDef, ast.Await, ast.AsyncFor,
                         ast.AsyncWith, ast.Global)):
        return [_unsafe(node, f"{type(node).__name__} is not allowed in a loss function")]
    if isinstance(node, ast.FunctionDef | ast.Lambda) and getattr(node, "decorator_list", None):
        return [_unsafe(node, "decorators are not allowed")]
    return []


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
    n_defaults = len(args.defaults)
    extra = positional[len(CONTRACT_ARGS):]
    if len(extra) > n_defaults:
        errors.append(ValidationError("contract", line,
                                      "extra arguments after beta must have default values"))
    if args.vararg is not None:
        errors.append(ValidationError("contract", line, "*args is not allowed; use keyword "
                                                        "hyper-parameters with defaults"))
    if any(d is None for d in args.kw_defaults):
        errors.append(ValidationError("contract", line,
                                      "keyword-only hyper-parameters must have default values"))
    return errors


def validate_source(code: str) -> list[ValidationError]:
    """Every static reason to reject ``code`` (most important first); [] means it may run."""
    if not isinstance(code, str) or not code.strip():
        return [ValidationError("contract", 0, "empty source: define one loss function")]
    if len(code) > MAX_SOURCE_CHARS:
        return [ValidationError("contract", 0,
                                f"source is {len(code)} characters; the limit is {MAX_SOURCE_CHARS}")]
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as exc:
        return [ValidationError("syntax", exc.lineno or 0, f"SyntaxError: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [ValidationError("syntax", 0, f"unparsable source: {type(exc).__name__}")]

    errors: list[ValidationError] = []
    functions = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            functions.append(stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)):
            pass
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                and isinstance(stmt.value.value, str):
            pass  # module docstring
        else:
            errors.append(ValidationError(
                "contract", stmt.lineno, f"top-level {type(stmt).__name__} is not allowed; the "
                "module may hold only imports, constants and one function"))
    if len(functions) != 1:
        errors.append(ValidationError(
            "contract", functions[1].lineno if len(functions) > 1 else 1,
            f"expected exactly one top-level function, found {len(functions)}"))
    else:
        errors.extend(_check_signature(functions[0]))
    for node in ast.walk(tree):
        errors.extend(_check_node(node))
    return sorted(errors, key=_priority)


def _priority(error: ValidationError) -> tuple[int, int]:
    return {"syntax": 0, "unsafe": 1, "contract": 2}.get(error.kind, 3), error.line


def first_error(errors: list[ValidationError]) -> ValidationError | None:
    """The error to report: syntax before unsafe before contract, then by line."""
    return min(errors, key=_priority) if errors else None
