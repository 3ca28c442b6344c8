"""Turn a reviewed loss (name, code, metadata) into code a user can ship: a TRL trainer module, a
plain function module, or a promoted entry of ``candidate_losses/discovered/``.

Nothing here executes the loss code: it is parsed (``ast``) and written out as real source, so the
exported file trusts only itself and the user reviews exactly what will run. The core functions take
(name, code, metadata) and know nothing about campaign databases; ``discovery.commands.export``
adapts a campaign candidate or a registry loss to them.
"""

from __future__ import annotations

import ast
import builtins
import datetime as dt
import json
import keyword
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

import prompts
from candidate_losses import source
from discovery.errors import UserError

# Names the loss contract promises to candidate code without an import (see load_loss_from_source).
PRELUDE_NAMES = frozenset({"torch", "F", "math"})
TRAINER_SOURCE = Path(__file__).resolve().parents[2] / "evaluators" / "hf_trainer.py"  # copied into exports
# ... after the granular-training helpers it imports (weights, group-robust objective, dimensions)
GRANULAR_SOURCE = TRAINER_SOURCE.with_name("granular.py")
TEMPLATES_DIR = Path(prompts.__file__).resolve().parent
# Metadata shown in headers and kept as provenance, in this order when present.
METADATA_KEYS = (
    "campaign", "candidate_id", "status", "suite", "fitness", "fitness_se", "heldout",
    "proposer", "parents", "generation", "created_at",
)


@dataclass
class ExportableLoss:
    """A loss ready to export: a safe identifier, its source code and what is known about it."""

    name: str
    code: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def function_name(self) -> str:
        return contract_function(self.code).name

    @property
    def loss_kwargs(self) -> dict[str, Any]:
        return dict(self.metadata.get("loss_kwargs") or {})


def safe_identifier(name: str) -> str:
    """A lower-case Python identifier for ``name`` ("LRML (tau=.05)" -> "lrml_tau_05")."""
    ident = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip()).strip("_").lower() or "loss"
    if ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"loss_{ident}"
    return ident


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in safe_identifier(name).split("_")) + "DPOTrainer"


def contract_function(code: str) -> ast.FunctionDef:
    """The one top-level function whose first five parameters are the contract's (never executed)."""
    try:
        return source.contract_function(code)
    except source.LossSourceError as exc:
        raise UserError(str(exc)) from None


def undefined_names(code: str) -> list[str]:
    """Names the code reads but neither defines, imports, nor gets from the prelude or builtins.

    A registry loss that calls a module-level helper would export as broken code; this catches it.
    """
    tree = source.parse_ast(code)
    defined: set[str] = set(PRELUDE_NAMES) | set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            defined.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return sorted(used - defined)


def formula_text(code: str) -> str:
    """The loss written out for a docstring: the function's own docstring, then its computation."""
    fn = contract_function(code)
    doc = ast.get_docstring(fn) or ""
    body = fn.body[1:] if doc else fn.body
    steps = "\n".join(ast.unparse(stmt) for stmt in body)
    text = (doc.strip() + "\n\n" if doc else "") + "Computation (from the code):\n\n" + _indent(steps, 4)
    return _docstring_safe(text)


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line.strip() else "" for line in text.splitlines())


def _docstring_safe(text: str) -> str:
    """Text that cannot end or alter the triple-quoted docstring it is placed in."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def provenance(loss: ExportableLoss, *, date: str | None = None) -> dict[str, Any]:
    """The JSON-able record kept with an exported or promoted loss: where it came from, its scores."""
    meta = _json_safe(loss.metadata)
    record = {k: meta[k] for k in METADATA_KEYS if k in meta}
    record.update({k: v for k, v in meta.items() if k not in record and k != "code"})
    record["name"] = loss.name
    record["date"] = date or dt.date.today().isoformat()
    return record


def _header_lines(record: dict[str, Any]) -> list[str]:
    extra = ("origin", "reference", "source_file", "loss_kwargs", "batch_coupled", "date")
    shown = [k for k in (*METADATA_KEYS, *extra) if k in record]
    return [_docstring_safe(f"{k}: {json.dumps(record[k])}") for k in shown]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - renders Python source, not HTML
    )


def _top_level_names(code: str) -> set[str]:
    names: set[str] = set()
    for node in source.parse_ast(code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _trainer_glue() -> tuple[list[str], str]:
    """The import lines and the code of evaluators/granular.py and evaluators/hf_trainer.py, read as
    text (not imported); the trainer's import of the granular helpers is dropped (they are inlined)."""
    imports: list[str] = []
    blocks: list[str] = []
    for path in (GRANULAR_SOURCE, TRAINER_SOURCE):
        _glue_from(path.read_text(), imports, blocks)
    return imports, "\n\n\n".join(blocks)


def _glue_from(text: str, imports: list[str], blocks: list[str]) -> None:
    tree = source.parse_ast(text)
    for node in tree.body:
        segment = ast.get_source_segment(text, node, padded=True) or ""
        if isinstance(node, ast.ImportFrom) and (node.module == "__future__"
                                                 or (node.module or "").startswith("evaluators")):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(segment)
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            decorators = getattr(node, "decorator_list", [])
            start = min([d.lineno for d in decorators] + [node.lineno])
            comments = _leading_comments(text, start)
            blocks.append(comments + "\n".join(text.splitlines()[start - 1:node.end_lineno]))


def _leading_comments(source: str, lineno: int) -> str:
    lines = source.splitlines()
    out: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].startswith("#"):
        out.insert(0, lines[i])
        i -= 1
    return "".join(line + "\n" for line in out)


def _merge_imports(*groups: list[str]) -> list[str]:
    """Deduplicated import lines, standard library first (then a blank line), then the rest."""
    unique = list(dict.fromkeys(line for group in groups for line in group))

    def third_party(line: str) -> bool:
        return line.split()[1].split(".")[0] not in sys.stdlib_module_names

    def module(line: str) -> str:
        return line.split()[1]

    stdlib = sorted((line for line in unique if not third_party(line)), key=module)
    others = sorted((line for line in unique if third_party(line)), key=module)
    return stdlib + ([""] if stdlib and others else []) + others


def _check_exportable(loss: ExportableLoss) -> None:
    contract_function(loss.code)
    missing = undefined_names(loss.code)
    if missing:
        raise UserError(
            f"loss {loss.name!r} uses names it does not define ({', '.join(missing)}); "
            "export a file that defines them"
        )


def _compiled(text: str, filename: str) -> str:
    compile(text, filename, "exec")  # syntax check only; nothing runs
    return text


def _context(loss: ExportableLoss, date: str | None) -> dict[str, Any]:
    record = provenance(loss, date=date)
    return {
        "name": loss.name,
        "code": loss.code.strip("\n"),
        "function_name": loss.function_name,
        "formula": formula_text(loss.code),
        "header_lines": _header_lines(record),
        "loss_kwargs": repr(_json_safe(loss.loss_kwargs)),
        "batch_coupled": bool(loss.metadata.get("batch_coupled", False)),
        "provenance": record,
    }


def render_function_module(loss: ExportableLoss, *, date: str | None = None) -> str:
    """A module holding just the loss function (``--to function``)."""
    _check_exportable(loss)
    text = _environment().get_template("export_function.py.j2").render(**_context(loss, date))
    return _compiled(text, f"{loss.name}.py")


def render_trl_module(loss: ExportableLoss, *, module_name: str | None = None, date: str | None = None) -> str:
    """A standalone module: the loss, TRL glue and a ``<Name>DPOTrainer`` subclass (``--to trl``)."""
    import trl  # version recorded in the header; only metadata is read

    _check_exportable(loss)
    glue_imports, glue = _trainer_glue()
    reserved = _top_level_names(glue) | {class_name(loss.name), "LOSS_KWARGS", "BATCH_COUPLED"}
    clashes = sorted(_top_level_names(loss.code) & reserved)
    if clashes:
        raise UserError(f"loss code defines {', '.join(clashes)}, which the exported module needs; rename them")
    loss_imports = ["import math", "import torch", "import torch.nn.functional as F"]
    text = _environment().get_template("export_trl.py.j2").render(
        **_context(loss, date),
        imports=_merge_imports(loss_imports, glue_imports),
        glue=glue,
        trainer_class=class_name(loss.name),
        module_name=module_name or f"{loss.name}_trl",
        trl_version=trl.__version__,
    )
    return _compiled(text, f"{loss.name}_trl.py")


def render_trl_test(loss: ExportableLoss, module_name: str) -> str:
    """A small pytest file for an exported TRL module (tiny offline model, a few steps)."""
    text = _environment().get_template("export_trl_test.py.j2").render(
        module_name=module_name,
        function_name=loss.function_name,
        trainer_class=class_name(loss.name),
    )
    return _compiled(text, f"test_{module_name}.py")


def render_promoted_module(loss: ExportableLoss) -> str:
    """A ``candidate_losses/discovered/`` module that registers the loss with its provenance."""
    _check_exportable(loss)
    text = _environment().get_template("promoted_loss.py.j2").render(**_context(loss, None))
    return _compiled(text, f"{loss.name}.py")


@dataclass
class ExportedFiles:
    """What an export wrote, for the CLI's --json output."""

    module: str
    test: str | None = None
    sidecar: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"module": self.module, "test": self.test, "sidecar": self.sidecar}


def _write(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def export_loss(loss: ExportableLoss, to: str, out: Path, *, force: bool = False) -> ExportedFiles:
    """Write ``loss`` as a TRL module plus its pytest file (``to="trl"``) or a bare function module.

    ``out`` is the module's path, or a directory to put ``<name>_trl.py`` / ``<name>.py`` in.
    """
    if to not in ("trl", "function"):
        raise UserError(f"--to must be 'trl' or 'function', not {to!r}")
    default_stem = f"{loss.name}_trl" if to == "trl" else loss.name
    path = out / f"{default_stem}.py" if out.is_dir() or out.suffix != ".py" else out
    if not path.stem.isidentifier():
        raise UserError(f"module file name {path.name!r} is not a Python identifier; pick e.g. {default_stem}.py")
    if to == "function":
        _write(path, render_function_module(loss), force)
        return ExportedFiles(module=str(path))
    _write(path, render_trl_module(loss, module_name=path.stem), force)
    test_path = path.with_name(f"test_{path.stem}.py")
    _write(test_path, render_trl_test(loss, path.stem), force)
    return ExportedFiles(module=str(path), test=str(test_path))


def promote_loss(loss: ExportableLoss, discovered_dir: Path, *, force: bool = False,
                 registered_names: set[str] | frozenset[str] = frozenset()) -> ExportedFiles:
    """Add ``loss`` to ``discovered_dir`` as ``<name>.py`` (self-registering) + ``<name>.json``."""
    module_path = discovered_dir / f"{loss.name}.py"
    if loss.name in registered_names and not module_path.exists():
        raise UserError(f"a loss named {loss.name!r} is already registered; pass --name to choose another")
    if module_path.exists() and not force:
        raise UserError(f"{module_path} exists; pass --force to overwrite it")
    text = render_promoted_module(loss)
    sidecar_path = discovered_dir / f"{loss.name}.json"
    discovered_dir.mkdir(parents=True, exist_ok=True)
    sidecar_path.write_text(json.dumps(provenance(loss), indent=2) + "\n")  # first: the module reads it
    _write(module_path, text, force=True)
    return ExportedFiles(module=str(module_path), sidecar=str(sidecar_path))
