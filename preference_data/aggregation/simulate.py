"""Simulated annotator populations that write rows in the annotation export format.

For tests and benchmarks where the truth is known: each annotator has a utility over responses
(their group's taste) and a noise rate (probability of clicking at random instead).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

Utility = Callable[[dict[str, Any], dict[str, Any]], float]  # (item, response) -> utility


@dataclass
class SimulatedAnnotator:
    annotator_id: str
    utility: Utility
    noise: float = 0.0                       # probability of a uniformly random answer
    attributes: dict[str, str] = field(default_factory=dict)


def pairwise_choice(ann: SimulatedAnnotator, item: dict[str, Any], rng: random.Random) -> str:
    rs = item["responses"]
    if rng.random() < ann.noise:
        return rng.choice(rs)["response_id"]
    scores = [ann.utility(item, r) for r in rs]
    best = max(scores)
    return rng.choice([r for r, s in zip(rs, scores) if s == best])["response_id"]


def ranking_choice(ann: SimulatedAnnotator, item: dict[str, Any], rng: random.Random) -> list[str]:
    ids = [r["response_id"] for r in item["responses"]]
    if rng.random() < ann.noise:
        rng.shuffle(ids)
        return ids
    util = {r["response_id"]: ann.utility(item, r) for r in item["responses"]}
    return sorted(ids, key=lambda i: (-util[i], rng.random()))


def simulate_judgments(items: Sequence[dict[str, Any]], annotators: Sequence[SimulatedAnnotator],
                       overlap: int, seed: int = 0, project: str = "sim", dimension: str = "overall",
                       scale: str = "pairwise") -> list[dict[str, Any]]:
    """Each item judged by `overlap` distinct random annotators -> export rows."""
    rng = random.Random(seed)
    rows = []
    for item in items:
        for ann in rng.sample(list(annotators), min(overlap, len(annotators))):
            value: Any = (pairwise_choice(ann, item, rng) if scale == "pairwise"
                          else ranking_choice(ann, item, rng))
            order = [r["response_id"] for r in item["responses"]]
            rng.shuffle(order)
            rows.append({"judgment_id": f"j-{len(rows):06d}", "project": project, "item_id": item["item_id"],
                         "prompt": item["prompt"], "responses": item["responses"], "dimension": dimension,
                         "scale": scale, "value": value, "annotator_id": ann.annotator_id,
                         "annotator_attributes": dict(ann.attributes), "display_order": order,
                         "comment": "", "created_at": "2026-01-01T00:00:00+00:00", "time_spent_s": 1.0})
    return rows


def truth_items(n_items: int, n_responses: int = 2, seed: int = 0) -> list[dict[str, Any]]:
    """Items whose responses carry a hidden 'quality' in settings (the simulated truth)."""
    rng = random.Random(seed)
    items = []
    for i in range(n_items):
        rs = [{"response_id": f"r-{i}-{k}", "text": f"answer {k} to question {i}" + "!" * rng.randint(0, 5),
               "model": f"m{k % 2}", "settings": {"quality": rng.random()}} for k in range(n_responses)]
        items.append({"item_id": f"i-{i:04d}", "prompt": f"question {i}?", "responses": rs})
    return items


def quality(item: dict[str, Any], response: dict[str, Any]) -> float:
    return float(response["settings"]["quality"])
