"""The campaign's headline verdict: against tuned DPO where `prefdisco tune` ran, else against DPO."""

from __future__ import annotations

from typing import Any

from discovery.archive.verdict import Verdict, campaign_heldout_verdict, heldout_verdict


def campaign_verdict(db: Any, heldout_suite: str) -> Verdict:
    """Tuned finalists vs tuned DPO on held-out where `prefdisco tune` stored tuned held-out runs for
    DPO (both tuned on the held-out tier's training split); else the campaign's own held-out verdict."""
    from discovery.archive.candidate import Origin, is_dpo
    from discovery.tuning.results import load_tuned_results
    from evaluators.suites import load_suite

    tuned = load_tuned_results(db.url)
    dpo_tuned = next((t for t in tuned.values() if is_dpo(t["origin"], t["name"])), None)
    if dpo_tuned and dpo_tuned.get("tuned_heldout_result"):
        finalists = [(cid, t["name"], t.get("tuned_heldout_result")) for cid, t in tuned.items()
                     if t["origin"] != Origin.BASELINE]
        return heldout_verdict(finalists, dpo_tuned["tuned_heldout_result"], load_suite(heldout_suite).scoring,
                               tuned=True)
    return campaign_heldout_verdict(db, heldout_suite)
