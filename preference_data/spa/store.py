"""Every pair the SPA loop trains on, with how it was labelled, so it can be audited and exported.

Exported rows use the project's TRL pair format (``prompt``, ``chosen``, ``rejected``,
``weight``, ``group``, ``dimension``, ``provenance``); the SPA fields (iteration, label
probability, confidence, flag, gold rewards when known) live in ``provenance`` and come back
unchanged from ``load_trl_jsonl``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from evaluators.results import finite_or_none


@dataclass
class LabelledPair:
    """One preference pair. ``iteration`` 0 = gold seed; i >= 1 = labelled by the judge in round i."""

    pair_id: str
    iteration: int
    prompt: str
    chosen: str
    rejected: str
    judge: str                          # "gold-seed", "implicit", "gold", "reward_model", "llm"
    label_prob: float                   # judge's P(chosen > rejected); < 0.5 only for a sampled
                                        # label that drew the less likely outcome (gold seed)
    confidence: float | None = None     # refinement margin beta*h (DND when on) at its last visit
    flagged: bool = False               # label-smoothed at its last visit (low confidence)
    smoothing: float = 0.0              # epsilon applied at its last visit
    gold_chosen: float | None = None    # gold reward of each response (audit only, never trained on)
    gold_rejected: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gold_agrees(self) -> bool | None:
        """Does the label agree with the gold reward? None when unknown or tied."""
        if self.gold_chosen is None or self.gold_rejected is None or self.gold_chosen == self.gold_rejected:
            return None
        return self.gold_chosen > self.gold_rejected

    def to_trl(self) -> dict[str, Any]:
        spa = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("prompt", "chosen", "rejected")}
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected,
                "weight": 1.0, "group": None, "dimension": None,
                "provenance": {"source": "spa", **finite_or_none(spa)}}

    @classmethod
    def from_trl(cls, row: dict[str, Any]) -> "LabelledPair":
        prov = dict(row.get("provenance") or {})
        if prov.pop("source", None) != "spa":
            raise ValueError("not an SPA pair: provenance.source must be 'spa'")
        names = {f.name for f in fields(cls)}
        return cls(prompt=row["prompt"], chosen=row["chosen"], rejected=row["rejected"],
                   **{k: v for k, v in prov.items() if k in names})


class PairStore:
    """An append-only list of labelled pairs with per-iteration views and JSONL export."""

    def __init__(self, pairs: Iterable[LabelledPair] = ()) -> None:
        self.pairs: list[LabelledPair] = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[LabelledPair]:
        return iter(self.pairs)

    def add(self, pairs: Iterable[LabelledPair]) -> None:
        self.pairs.extend(pairs)

    def iteration(self, i: int) -> list[LabelledPair]:
        return [p for p in self.pairs if p.iteration == i]

    def label_accuracy(self, i: int) -> tuple[float, int, int]:
        """(agreement with the gold reward over non-tied pairs, n decided, n tied) of iteration i."""
        verdicts = [p.gold_agrees for p in self.iteration(i)]
        decided = [v for v in verdicts if v is not None]
        acc = sum(decided) / len(decided) if decided else math.nan
        return acc, len(decided), len(verdicts) - len(decided)

    def to_trl_rows(self, iterations: Iterable[int] | None = None) -> list[dict[str, Any]]:
        keep = None if iterations is None else set(iterations)
        return [p.to_trl() for p in self.pairs if keep is None or p.iteration in keep]

    def save_trl_jsonl(self, path: str | Path, iterations: Iterable[int] | None = None) -> int:
        """Write TRL-format JSONL atomically enough for a log (one row per line); returns rows written."""
        rows = self.to_trl_rows(iterations)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        return len(rows)

    @classmethod
    def load_trl_jsonl(cls, path: str | Path) -> "PairStore":
        with Path(path).open() as fh:
            return cls(LabelledPair.from_trl(json.loads(line)) for line in fh if line.strip())

    def summary(self) -> list[dict[str, Any]]:
        """Per-iteration counts, label accuracy, flagged share (for logs and the CLI)."""
        out = []
        for i in sorted({p.iteration for p in self.pairs}):
            pairs = self.iteration(i)
            acc, decided, tied = self.label_accuracy(i)
            out.append({"iteration": i, "pairs": len(pairs), "label_accuracy": acc,
                        "decided": decided, "tied": tied,
                        "flagged": sum(p.flagged for p in pairs),
                        "mean_label_prob": sum(p.label_prob for p in pairs) / max(1, len(pairs))})
        return out

