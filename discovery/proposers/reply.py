"""Pull the candidate out of a proposer's reply: thought, name and code (JSON first, then a fence).

Nothing here executes candidate code; reading the code itself (contract function, hashing) is
``candidate_losses.source``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

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
