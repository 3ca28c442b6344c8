"""Text and AST plumbing for candidate code: pull code out of replies, normalise it, hash it.

Nothing here executes candidate code: parsing with `ast` is safe, exec is not (that happens only
inside sandbox workers).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass

from candidate_losses.contract import CONTRACT_ARGS as CONTRACT_PARAMS
_FENCE = re.compile(r"```([a-zA-Z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


@dataclass
class ExtractedReply:
    """What a proposer reply contained; `code` is None when nothing usable was found."""

    thought: str
    name: str
    code: str | None
    problem: str = ""  # why extraction failed (shown to the repair prompt / recorded)


def _json_objects(text: str) -> list[dict]:
    """Every top-level JSON object embedded in `text` (tolerates prose and fences around it)."""
    decoder = json.JSONDecoder()
    found: list[dict] = []
    i = 0
    while True:
        start = text.find("{", i)
        if start < 0:
            return found
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        if isinstance(obj, dict):
            found.append(obj)
        i = end


def extract_reply(text: str) -> ExtractedReply:
    """Find thought/name/code in an LLM reply: JSON first, then a fenced python block."""
    text = text or ""
    for obj in _json_objects(text):
        code = obj.get("code")
        if isinstance(code, str) and "def " in code:
            return ExtractedReply(
                thought=str(obj.get("thought", "")).strip(),
                name=sanitize_name(str(obj.get("name", "candidate"))),
                code=strip_fences(code).strip() + "\n",
            )
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    for lang, body in blocks:
        if lang in ("python", "py", "") and "def " in body:
            thought = _FENCE.sub("", text).strip()
            name = _function_name(body) or "candidate"
            return ExtractedReply(thought=thought[:2000], name=sanitize_name(name), code=body.strip() + "\n")
    if text.lstrip().startswith("def ") or "\ndef " in text:
        start = text.find("def ")
        body = text[start:]
        return ExtractedReply(thought="", name=sanitize_name(_function_name(body) or "candidate"),
                              code=body.strip() + "\n")
    problem = "reply had no JSON object with a 'code' field and no ```python block"
    if "{" in text:
        problem = "reply looked like JSON but could not be parsed (malformed JSON) and had no ```python block"
    return ExtractedReply(thought="", name="unparsed", code=None, problem=problem)


def strip_fences(code: str) -> str:
    m = _FENCE.search(code)
    return m.group(2) if m else code


def sanitize_name(name: str) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9_]+", "_", name.strip()).strip("_").lower()
    return (cleaned or "candidate")[:60]


def _function_name(code: str) -> str | None:
    m = re.search(r"def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", code)
    return m.group(1) if m else None


class _Canonicalise(ast.NodeTransformer):
    """Rename the function and its local names to positional placeholders, drop docstrings."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _rename(self, name: str) -> str:
        if name in CONTRACT_PARAMS:
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
    """A formatting-, comment-, docstring- and naming-insensitive form of `code` (for hashing).

    Unparseable code normalises to itself with whitespace collapsed, so it still hashes stably.
    """
    try:
        tree = ast.parse(code)
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


def single_function(code: str) -> ast.FunctionDef | None:
    """The module's one top-level function, or None if the code is not of that shape."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    others = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom, ast.Expr))]
    if len(funcs) != 1 or others:
        return None
    return funcs[0]


def count_nodes(code: str) -> int:
    try:
        return sum(1 for _ in ast.walk(ast.parse(code)))
    except SyntaxError:
        return 0
