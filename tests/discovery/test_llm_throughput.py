"""N LLM requests in flight: the endpoint sees them at once, the archive is the one a sequential run
makes, and token / cost caps are never passed (the worst case of every request in flight is reserved)."""

from __future__ import annotations

import pytest
from llm_campaign import archive_dump, prompt_hash_reply, run_llm_campaign
from openai_test_server import ScriptedOpenAIServer

from discovery.archive.campaign_dir import CampaignDir

PRICES = {"input": 1.0, "output": 4.0}  # USD per million tokens, as llm_campaign.llm_config sets them


@pytest.mark.parametrize("mode,islands", [("islands", 2), ("conversation", 4)])
def test_requests_in_flight_reach_the_concurrency_and_leave_the_archive_unchanged(tmp_path, mode, islands):
    archives, peaks = {}, {}
    for n in (1, 4):
        with ScriptedOpenAIServer(default=prompt_hash_reply, latency_s=0.2) as server:
            run_llm_campaign(tmp_path / str(n), server.base_url, generation_size=4, database={"islands": islands},
                             llm={"concurrency": n, "mode": mode})
        archives[n], peaks[n] = archive_dump(tmp_path / str(n)), server.max_in_flight
    assert peaks == {1: 1, 4: 4}
    assert archives[1] == archives[4]
    assert len([r for r in archives[4]["candidates"] if r["origin"] != "baseline"]) == 8


def spend(out, generation=None):
    rows = [r for r in CampaignDir.open(out).database().all() if not r.is_baseline
            and (generation is None or r.generation == generation)]
    return sum(r.tokens for r in rows), sum(r.cost_usd for r in rows), len(rows)


@pytest.mark.parametrize("cap", ["max_tokens", "max_cost_usd"])
def test_budget_caps_are_never_passed_with_requests_in_flight(tmp_path, cap):
    settings = dict(generation_size=4, database={"islands": 2}, llm={"concurrency": 4})
    with ScriptedOpenAIServer(default=prompt_hash_reply) as server:
        run_llm_campaign(tmp_path / "free", server.base_url, **settings)
    tokens, cost, n = spend(tmp_path / "free", generation=1)
    # room for the first generation and about one and a half more requests: asking the second
    # generation's four at once (what a check of the spend alone would allow) would pass the cap
    limit = {"max_tokens": int(tokens * (1 + 1.5 / n)), "max_cost_usd": cost * (1 + 1.5 / n)}[cap]
    with ScriptedOpenAIServer(default=prompt_hash_reply) as server:
        result = run_llm_campaign(tmp_path / "capped", server.base_url, budget={"max_candidates": 8, cap: limit},
                                  **settings)
    used_tokens, used_cost, asked = spend(tmp_path / "capped")
    assert (used_tokens if cap == "max_tokens" else used_cost) <= limit
    assert result.stopped_by == {"max_tokens": "budget: tokens", "max_cost_usd": "budget: cost"}[cap]
    assert 1 <= asked < 8 and len(server.requests) == asked
    assert all(r.status != "pending" for r in CampaignDir.open(tmp_path / "capped").database().all())
