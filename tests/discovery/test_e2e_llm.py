"""End to end: the real `openai` client against a scripted HTTP test double, real sandbox, real
(tiny) evaluation suites. Every kind of reply must end up recorded with the right outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discovery.search.campaign import Campaign
from discovery.commands import app
from discovery.config import config_from_dict
from discovery.archive.campaign_dir import CampaignDir
from discovery.search.progress import ProgressView
from openai_test_server import ScriptedOpenAIServer, Status, json_reply

SUITES = Path(__file__).parent / "suites"
HEAD = ("def {name}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
        "reference_rejected_logps, beta):\n")
MARGIN = ("    h = (policy_chosen_logps - reference_chosen_logps) - "
          "(policy_rejected_logps - reference_rejected_logps)\n")


def good(name: str, body: str) -> str:
    return HEAD.format(name=name) + MARGIN + f"    return {body}\n"


HOSTILE = HEAD.format(name="sneaky") + MARGIN + (
    "    leak = ().__class__.__base__.__subclasses__()\n"
    "    return -F.logsigmoid(beta * h)\n")


def tiny_config(base_url: str) -> dict:
    return {
        "name": "e2e", "seed": 3, "baselines": ["dpo", "hinge"], "generation_size": 6, "pipeline_lag": 0,
        "workers": 2,
        "proposer": {"kind": "llm", "inspirations": 1, "llm": {
            "models": [{"model": "scripted-test-double", "base_url": base_url, "api_key_env": "PREFDISCO_TEST_KEY",
                        "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 4.0}],
            "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "request_timeout_s": 20}},
        "budget": {"max_candidates": 8},
        "cascade": {"screen_suite": str(SUITES / "tiny_screen.yaml"), "fitness_suite": str(SUITES / "tiny_fitness.yaml"),
                    "heldout_suite": str(SUITES / "tiny_heldout.yaml"), "screen_margin": 1.0, "heldout_top_k": 2,
                    "job_timeout_s": 120},
    }


def repair_or_fresh(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    if "rejected before training" in prompt:
        weight = 0.05 if "g001-s00" in prompt else 0.2
        return json_reply("repaired", good("repaired", f"-F.logsigmoid(beta * h) + {weight} * F.relu(1.0 - beta * h)"))
    return json_reply("fresh", good("fresh", "F.softplus(-0.8 * beta * h)"))


@pytest.mark.slow
def test_campaign_against_scripted_openai_server_records_every_outcome(tmp_path):
    script = [
        '{"thought": "half a reply", "name": "cut", "code": "def cut(',      # malformed JSON
        Status(429, retry_after=0.01),                                           # rate limited, then...
        json_reply("scaled", good("scaled", "-F.logsigmoid(1.5 * beta * h)")),   # ...a good candidate
        json_reply("broken", "def broken(policy_chosen_logps:\n    return 0\n"),  # syntax error
        json_reply("sneaky", HOSTILE),                                            # hostile candidate
        "My idea:\n```python\n" + good("mdsmooth", "-F.logsigmoid(beta * h - 0.1)") + "```",  # markdown reply
        json_reply("scaled_again", good("scaled_again", "-F.logsigmoid(1.5 * beta * h)")),  # duplicate code
    ]
    out = tmp_path / "campaign"
    with ScriptedOpenAIServer(script, default=repair_or_fresh) as server:
        campaign = Campaign.create(config_from_dict(tiny_config(server.base_url)), out,
                                   progress=ProgressView(enabled=False))
        result = campaign.run()
    assert server.answers[:3] == [200, 429, 200]
    rows = {r.id: r for r in CampaignDir.open(out).database().all()}
    outcome = {cid: (r.name, r.status, r.failure_class) for cid, r in rows.items()}
    assert outcome["g001-s00"] == ("unparsed", "failed", "extraction")
    assert outcome["g001-s01"] == ("scaled", "evaluated", None)
    assert outcome["g001-s02"][1:] == ("failed", "syntax")
    assert outcome["g001-s03"] == ("sneaky", "failed", "unsafe")
    assert outcome["g001-s04"] == ("mdsmooth", "evaluated", None)
    assert outcome["g001-s05"][1] == "duplicate" and rows["g001-s05"].duplicate_of == "g001-s01"
    # generation 2: both slots repair earlier failures (one retry each), with the error shown to the model
    assert rows["g002-s00-r"].parent_ids == ["g001-s00"] and rows["g002-s01-r"].parent_ids == ["g001-s02"]
    assert all(rows[c].status == "evaluated" for c in ("g002-s00-r", "g002-s01-r"))
    repair_prompts = [r["messages"][-1]["content"] for r in server.requests if "rejected before" in r["messages"][-1]["content"]]
    assert any("Failure class: syntax" in p for p in repair_prompts)
    # accounting, baselines, held-out finalists
    scaled = rows["g001-s01"]
    assert scaled.prompt_tokens > 0 and scaled.cost_usd > 0 and scaled.fitness_se is not None
    assert rows["base-00"].fitness is not None and rows["base-00"].heldout is not None
    assert sum(r.heldout is not None for r in rows.values() if r.origin != "baseline") == 2
    assert result.candidates == 8 and result.best_id is not None
    assert "(paired s.e., n=2)" in result.verdict["text"] and result.fitness_vs_dpo["n"] == 2  # CRN pairing
    assert result.verdict["comparisons"] and result.verdict["against"] == "DPO"
    assert not any("held" in json.dumps(req).lower() for req in server.requests)  # never shown to the LLM

    runner = CliRunner()
    res = runner.invoke(app, ["leaderboard", str(out), "--json"])
    assert res.exit_code == 0, res.output
    board = json.loads(res.output)
    assert {b["id"] for b in board} == set(rows)
    assert {"id", "name", "status", "failure_class", "fitness", "fitness_se", "heldout", "proposer", "parents"} <= set(board[0])
    for verb in (["show", str(out), "g001-s01"], ["compare", str(out), "g001-s01", "base-00"], ["leaderboard", str(out)]):
        assert runner.invoke(app, verb).exit_code == 0


def mutation_config(seed: int) -> dict:
    return {"name": "det", "seed": seed, "baselines": ["dpo", "hinge", "lrml"], "generation_size": 3,
            "workers": 2, "budget": {"max_candidates": 6},
            "cascade": {"screen_suite": str(SUITES / "tiny_screen.yaml"),
                        "fitness_suite": str(SUITES / "tiny_fitness.yaml"),
                        "heldout_suite": str(SUITES / "tiny_heldout.yaml"), "heldout_top_k": 1,
                        "screen_margin": 1.0, "job_timeout_s": 120}}


@pytest.mark.slow
def test_mutation_campaign_same_seed_same_archive_with_real_sandbox(tmp_path):
    from test_campaign import archive

    for name in ("a", "b"):
        Campaign.create(config_from_dict(mutation_config(5)), tmp_path / name, progress=ProgressView(enabled=False)).run()
    a, b = archive(tmp_path / "a"), archive(tmp_path / "b")
    assert a == b
    assert sum(1 for r in a if r[8] == "evaluated" and not r[0].startswith("base")) >= 1


def _cli(args: list[str], crash: str | None = None) -> int:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PREFDISCO_CRASH_AT"}
    if crash:
        env["PREFDISCO_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "discovery.commands", *args], env=env, capture_output=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2]).returncode


@pytest.mark.slow
def test_cli_kill9_during_real_sandbox_evaluation_then_resume(tmp_path):
    import yaml

    from test_campaign import archive

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(mutation_config(11)))
    assert _cli(["run", str(config), "--out", str(tmp_path / "ref")]) == 0
    assert _cli(["run", str(config), "--out", str(tmp_path / "cut")], crash="evaluation:8") == -9
    db = CampaignDir.open(tmp_path / "cut").database()
    evaluations_before = db.count_evaluations()
    db.close()
    assert 0 < evaluations_before  # killed mid-campaign, after some stages were recorded
    assert _cli(["run", "--resume", str(tmp_path / "cut")]) == 0
    assert archive(tmp_path / "cut") == archive(tmp_path / "ref")
    db = CampaignDir.open(tmp_path / "cut").database()
    assert db.count_evaluations() == CampaignDir.open(tmp_path / "ref").database().count_evaluations()
