"""Raw judgments (the annotation export format) -> typed records -> atomic pairwise comparisons.

Every aggregation method works on the same atom, "annotator A preferred response W to L on item I
for dimension D in judgment J", so pairwise, ranking and Likert answers can be mixed and every
output pair can point back at the judgments behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass(frozen=True)
class Response:
    response_id: str
    text: str
    model: str = ""
    settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Judgment:
    """One export row (the format is in the preference_data.annotation.store docstring)."""

    judgment_id: str
    project: str
    item_id: str
    prompt: str
    responses: tuple[Response, ...]
    dimension: str
    scale: str                      # pairwise | ranking | likert | text
    value: Any
    annotator_id: str
    annotator_attributes: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    comment: str = ""
    kind: str = "judgment"            # "judgment", or "adjudication" (a researcher's final answer)
    item_kind: str = "regular"        # regular | gold | attention
    gold: Any = field(default=None, compare=False, hash=False)  # expected value on control items
    quality: tuple[int, int] | None = None  # the annotator's (correct, total) on gold/attention items
    messages: tuple = field(default=(), compare=False, hash=False)  # multi-turn prompt, if any

    def response(self, response_id: str) -> Response:
        for r in self.responses:
            if r.response_id == response_id:
                return r
        raise KeyError(response_id)


@dataclass(frozen=True)
class Comparison:
    """Annotator `annotator_id` preferred `winner` over `loser` (from judgment `judgment_id`)."""

    judgment_id: str
    annotator_id: str
    item_id: str
    dimension: str
    winner: str
    loser: str


class JudgmentError(ValueError):
    """A judgment row is malformed; the message names the judgment and the field."""


def parse_judgment(row: dict[str, Any]) -> Judgment:
    if not isinstance(row, dict):
        raise JudgmentError(f"a judgment row must be a JSON object, got {type(row).__name__}; "
                            "pass the output of `prefdisco annotate export`")
    jid = str(row.get("judgment_id", "?"))
    try:
        responses = tuple(Response(str(r["response_id"]), str(r.get("text", "")), str(r.get("model") or ""),
                                   dict(r.get("settings") or {})) for r in row["responses"])
        j = Judgment(judgment_id=jid, project=str(row.get("project", "")), item_id=str(row["item_id"]),
                     prompt=str(row.get("prompt", "")), responses=responses,
                     dimension=str(row["dimension"]), scale=str(row["scale"]), value=row["value"],
                     annotator_id=str(row["annotator_id"]),
                     annotator_attributes={str(k): str(v) for k, v in
                                           (row.get("annotator_attributes") or {}).items()},
                     comment=str(row.get("comment") or ""), kind=str(row.get("kind") or "judgment"),
                     item_kind=str(row.get("item_kind") or "regular"), gold=row.get("gold"),
                     quality=_quality(row.get("annotator_quality")),
                     messages=tuple(dict(m) for m in row.get("messages") or ()))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise JudgmentError(f"judgment {jid}: missing or malformed field {exc}") from None
    ids = {r.response_id for r in j.responses}
    if j.scale == "pairwise" and j.value not in ids:
        raise JudgmentError(f"judgment {jid}: pairwise value {j.value!r} is not one of its response ids")
    if j.scale == "ranking" and (not isinstance(j.value, list) or not set(j.value) <= ids
                                 or len(set(j.value)) != len(j.value)):
        raise JudgmentError(f"judgment {jid}: ranking value must list distinct response ids")
    if j.scale == "likert" and (not isinstance(j.value, dict) or not set(j.value) <= ids):
        raise JudgmentError(f"judgment {jid}: likert value must map response ids to ratings")
    if j.scale not in ("pairwise", "ranking", "likert", "text"):
        raise JudgmentError(f"judgment {jid}: unknown scale {j.scale!r}")
    return j


def _quality(q: Any) -> tuple[int, int] | None:
    """The annotator's (correct, total) control answers, when there is at least one."""
    if isinstance(q, dict) and q.get("total"):
        return int(q["correct"]), int(q["total"])
    return None


def parse_judgments(rows: Iterable[dict[str, Any]], project: str | None = None) -> list[Judgment]:
    out = [parse_judgment(r) for r in rows]
    return [j for j in out if project is None or j.project == project]


def comparisons(j: Judgment) -> list[Comparison]:
    """Break one judgment into winner/loser atoms; ties and free text give none."""
    def atom(w: str, l: str) -> Comparison:
        return Comparison(j.judgment_id, j.annotator_id, j.item_id, j.dimension, w, l)

    ids = [r.response_id for r in j.responses]
    if j.scale == "pairwise":  # chosen beats every other shown response
        return [atom(j.value, other) for other in ids if other != j.value]
    if j.scale == "ranking":   # best-first: each beats every later one
        order = list(j.value)
        return [atom(order[a], order[b]) for a in range(len(order)) for b in range(a + 1, len(order))]
    if j.scale == "likert":    # higher rating beats lower; equal ratings say nothing
        r = {k: float(v) for k, v in j.value.items()}
        return [atom(a, b) for a in r for b in r if r[a] > r[b]]
    return []
