"""The verdict against DPO that every summary headlines: held-out, paired by common random numbers.

A fitness gain is what the search optimised, so it is no evidence on its own; the claim is the
held-out suite's paired difference (candidate - DPO on the same seeds, data, labels and sampling
noise) and its paired s.e. (``evaluators.paired``). After ``prefdisco tune`` the comparison is
between tuned candidates and tuned DPO, both tuned on the held-out tier's own training split.
The run's final line, ``prefdisco leaderboard``, ``prefdisco report`` and ``prefdisco tune`` all
print ``Verdict.text`` and carry ``Verdict.to_dict()`` in their JSON (``discovery.review.verdict``
picks the tuned comparison where `prefdisco tune` ran).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluators.paired import DETECTABLE_AT, PairedDifference, paired_difference
from evaluators.results import SuiteResult
from evaluators.suites import Scoring


@dataclass
class Verdict:
    """Best finalist against (tuned) DPO on the held-out suite."""

    against: str                       # "DPO" or "tuned DPO"
    text: str                          # the one line every summary prints
    beats: bool = False                # best finalist ahead by more than DETECTABLE_AT paired s.e.
    best_id: str | None = None
    best_name: str | None = None
    difference: float | None = None    # best finalist - DPO, held-out
    se: float | None = None            # paired s.e.
    n: int | None = None               # paired (group, seed) units
    z: float | None = None             # difference / se
    detectable: float | None = None    # DETECTABLE_AT x se: smallest difference this suite can call real
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # every finalist: id, name + paired numbers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(d: PairedDifference, who: str, dpo: str) -> str:
    se = f"{d.se:.4f}" if math.isfinite(d.se) else "n/a (one seed)"
    return f"{who} - {dpo} = {d.difference:+.4f} ± {se} (paired s.e., n={d.n})"


def paired_vs(result: dict[str, Any] | None, reference: dict[str, Any] | None, scoring: Scoring, *,
              same_betas: bool = True) -> PairedDifference | None:
    """Paired difference of two stored SuiteResult dicts; None where either is missing or they do not pair."""
    if not result or not reference or not result.get("runs") or not reference.get("runs"):
        return None
    try:
        return paired_difference(SuiteResult.from_dict(result), SuiteResult.from_dict(reference), scoring,
                                 same_betas=same_betas)
    except ValueError:
        return None


def heldout_verdict(finalists: list[tuple[str, str, dict[str, Any] | None]], dpo_result: dict[str, Any] | None,
                    scoring: Scoring, *, tuned: bool = False) -> Verdict:
    """``finalists``: (id, name, stored held-out SuiteResult dict) of each discovered finalist."""
    against = "tuned DPO" if tuned else "DPO"
    dpo_label = "tuned dpo" if tuned else "dpo"
    if not dpo_result or not dpo_result.get("runs"):
        return Verdict(against, f"no held-out verdict: {against} has no held-out score "
                                "(run `prefdisco run --resume DIR --heldout-top K`)")
    pairs = [(cid, name, paired_vs(res, dpo_result, scoring, same_betas=not tuned)) for cid, name, res in finalists]
    scored = [(cid, name, d) for cid, name, d in pairs if d is not None]
    if not scored:
        return Verdict(against, f"no held-out verdict: no discovered finalist has a held-out score paired with {against}")
    comparisons = [{"id": cid, "name": name, **d.to_dict()} for cid, name, d in scored]
    cid, name, best = max(scored, key=lambda t: (t[2].difference, t[0]))
    numbers = dict(best_id=cid, best_name=name, difference=best.difference,
                   se=best.se if math.isfinite(best.se) else None, n=best.n,
                   z=best.z if math.isfinite(best.z) else None,
                   detectable=best.detectable if math.isfinite(best.se) else None)
    if best.significant:
        text = f"held-out: {_fmt(best, cid, dpo_label)} -> beats {against} by {best.z:.1f} s.e."
        return Verdict(against, text, True, comparisons=comparisons, **numbers)  # type: ignore[arg-type]
    detect = f"; detectable at {DETECTABLE_AT:g} s.e.: {best.detectable:.4f}" if math.isfinite(best.se) else ""
    text = (f"no candidate beats {against} on held-out (best: {_fmt(best, cid, dpo_label)}{detect})")
    return Verdict(against, text, False, comparisons=comparisons, **numbers)  # type: ignore[arg-type]


def campaign_heldout_verdict(db: Any, heldout_suite: str) -> Verdict:
    """The campaign's held-out verdict against DPO as the campaign scored it (untuned)."""
    from discovery.archive.candidate import Stage, Status
    from evaluators.suites import load_suite

    scoring = load_suite(heldout_suite).scoring
    dpo = db.dpo()
    rows = [r for r in db.all(status=Status.EVALUATED) if not r.is_baseline and r.heldout is not None]
    finalists = [(r.id, r.name, db.stage_result(r.id, Stage.HELDOUT)) for r in rows]
    return heldout_verdict(finalists, db.stage_result(dpo.id, Stage.HELDOUT) if dpo else None, scoring)
