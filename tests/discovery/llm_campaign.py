"""LLM campaigns for the tests: the real LLMProposer and `openai` client against the HTTP test double,
evaluated on the FakePool (no training), so conversation mode, JSON mode, concurrency, budgets and
record/replay are tested end to end in seconds.

`prompt_hash_reply` is the test double's answer rule: a reply that is a pure function of the prompt
(like a temperature-0 model), chosen from a small menu of loss shapes; about one in six, and the
second turn of every conversation, is broken code (so error feedback is always exercised).
It is not a discovery method; it makes runs with requests in flight comparable with sequential ones.

    python llm_campaign.py DIR BASE_URL [--resume] [--set JSON]
runs one such campaign in a subprocess (the kill -9 tests); PREFDISCO_CRASH_AT sets a crash point.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FakePool
from openai_test_server import json_reply

from discovery.archive.campaign_dir import CampaignDir
from discovery.config import config_from_dict
from discovery.sandbox import validate_source
from discovery.search.campaign import Campaign
from discovery.search.progress import ProgressView

HEAD = ("def {name}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
        "reference_rejected_logps, beta):\n"
        "    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)\n")
SHAPES = ["-F.logsigmoid({c} * beta * h)", "F.relu({c} - beta * h)", "F.softplus({c} - beta * h)",
          "(beta * h - {c}) ** 2", "torch.exp(-torch.clamp({c} * beta * h, min=-20.0))"]


def prompt_hash_reply(request: dict[str, Any]) -> str:
    """The test double's deterministic answer to a chat request (see the module docstring)."""
    k = int(hashlib.sha256(json.dumps(request["messages"], sort_keys=True).encode()).hexdigest()[:12], 16)
    name = f"loss_{k % 100000}"
    if k % 6 == 0 or len(request["messages"]) == 4:
        return json_reply(name, f"def {name}(policy_chosen_logps:\n    return 0\n", thought="a broken reply")
    body = SHAPES[k % len(SHAPES)].format(c=round(0.5 + (k // 7 % 97) / 50, 2))
    return json_reply(name, HEAD.format(name=name) + f"    return {body}\n", thought=f"shape {k % len(SHAPES)}")


def llm_config(base_url: str | None, **overrides: Any) -> dict[str, Any]:
    """A small LLM campaign on the FakePool: 2 islands, 2 slots a generation, 8 candidates."""
    llm = {"models": [{"model": "scripted-test-double", "base_url": base_url or "http://127.0.0.1:9/v1",
                       "api_key_env": "PREFDISCO_TEST_KEY", "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 4.0}],
           "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "request_timeout_s": 20, "max_tokens": 400,
           **overrides.pop("llm", {})}
    config = {"name": "llm-fake", "seed": 5, "baselines": ["dpo", "ipo", "hinge"], "generation_size": 2,
              "pipeline_lag": 0, "workers": 2, "proposer": {"kind": "llm", "inspirations": 1, "llm": llm},
              "database": {"islands": 2, "migration_interval": 2}, "budget": {"max_candidates": 8},
              "cascade": {"fitness_suite": str(Path(__file__).parent / "suites" / "tiny_fitness.yaml"),
                          "heldout_top_k": 1, "screen_margin": 0.3}}
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    return config


def run_llm_campaign(out: Path, base_url: str | None, *, resume: bool = False, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = dict(pool=FakePool(), validate=validate_source, progress=ProgressView(enabled=False))
    if resume:
        return Campaign.resume(out, **kwargs).run()
    return Campaign.create(config_from_dict(llm_config(base_url, **overrides)), out, **kwargs).run()


def archive_dump(out: Path) -> dict[str, Any]:
    """Everything the archive holds except wall-clock measurements (timings and timestamps)."""
    import sqlalchemy as sa

    db = CampaignDir.open(out).database()
    try:
        with db.engine.connect() as conn:
            tables = {}
            for table in ("candidates", "evaluations", "replies", "migrations"):
                rows = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
                for row in rows:
                    for key in ("created_at", "updated_at", "timings", "wall_time_s"):
                        row.pop(key, None)
                tables[table] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
            return tables
    finally:
        db.close()


if __name__ == "__main__":
    settings = json.loads(sys.argv[sys.argv.index("--set") + 1]) if "--set" in sys.argv else {}
    run_llm_campaign(Path(sys.argv[1]), sys.argv[2], resume="--resume" in sys.argv, **settings)
