"""Campaign runner: determinism, outcome bookkeeping, kill -9 + resume (fake pool: no training)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FakePool
from discovery.search.campaign import Campaign
from discovery.config import config_from_dict
from discovery.archive.campaign_dir import CampaignDir
from discovery.archive.log import read_log
from discovery.search.progress import ProgressView
from discovery.proposers.base import Proposal
from discovery.sandbox import validate_source
from fake_campaign_main import CONFIG

HERE = Path(__file__).parent
ARCHIVE_FIELDS = ("id", "name", "code", "code_hash", "fingerprint", "parent_ids", "island", "generation",
                  "status", "stage", "failure_class", "duplicate_of", "screen_fitness", "fitness", "heldout",
                  "proposer", "thought")


def archive(out: Path) -> list[tuple]:
    db = CampaignDir.open(out).database()
    try:
        return [tuple(str(getattr(r, k)) for k in ARCHIVE_FIELDS) for r in db.all()]
    finally:
        db.close()


def run_fake(out: Path, **overrides) -> Campaign:
    cfg = config_from_dict({**CONFIG, **overrides})
    c = Campaign.create(cfg, out, pool=FakePool(), validate=validate_source, progress=ProgressView(enabled=False))
    c.run()
    return c


def test_same_seed_same_archive_and_different_seed_differs(tmp_path):
    run_fake(tmp_path / "a")
    run_fake(tmp_path / "b")
    run_fake(tmp_path / "c", seed=8)
    a, b, c = archive(tmp_path / "a"), archive(tmp_path / "b"), archive(tmp_path / "c")
    assert a == b
    assert a != c
    assert len([r for r in a if not r[0].startswith("base")]) == CONFIG["budget"]["max_candidates"]
    for name in ("config.resolved.yaml", "campaign.db", "log.jsonl"):
        assert (tmp_path / "a" / name).exists()


class ScriptedProposer:
    """Returns fixed proposals, one script item per slot (not a discovery method: a test fixture)."""

    name = "scripted"

    def __init__(self, codes: list[str | None]):
        self.codes = list(codes)

    def propose(self, context):
        code = self.codes.pop(0) if self.codes else None
        return [Proposal(thought="t", name=f"s{context.slot}", code=code, parent_ids=[context.parents[0].id],
                         proposer=self.name, error="" if code else "no code")]


GOOD = ("def good(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
        "    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps) * {k})\n")


def test_every_outcome_is_recorded(tmp_path):
    codes = [
        GOOD.format(k=1.5),
        "def broken(:\n    pass\n",                                   # syntax
        GOOD.format(k=1.5).replace("good", "again"),                  # duplicate by normalised hash
        "import os\n" + GOOD.format(k=2.0),                            # unsafe (static)
        GOOD.format(k=3.0).replace("return", "raise ValueError()\n    return"),  # probe crash
        None,                                                          # nothing extractable
        GOOD.format(k=4.0) + "# SAMEBEHAVIOUR\n",
        GOOD.format(k=5.0) + "# SAMEBEHAVIOUR\n",                      # duplicate by fingerprint
    ]
    cfg = config_from_dict({"seed": 1, "baselines": ["dpo", "ipo"], "generation_size": 8,
                            "budget": {"max_candidates": 8}, "cascade": {"screen_margin": 10.0, "heldout_top_k": 1}})
    pool = FakePool()
    Campaign.create(cfg, tmp_path, pool=pool, proposer=ScriptedProposer(codes), validate=validate_source,
                    progress=ProgressView(enabled=False)).run()
    rows = {r.id: r for r in CampaignDir.open(tmp_path).database().all()}
    got = {cid: (r.status, r.failure_class, r.duplicate_of) for cid, r in rows.items()}
    assert got["g001-s00"] == ("evaluated", None, None)
    assert got["g001-s01"] == ("failed", "syntax", None)
    assert got["g001-s02"] == ("duplicate", None, "g001-s00")
    assert got["g001-s03"] == ("failed", "unsafe", None)
    assert got["g001-s04"] == ("failed", "crash", None)
    assert got["g001-s05"] == ("failed", "extraction", None)
    assert got["g001-s06"][0] == "evaluated" and got["g001-s07"] == ("duplicate", None, "g001-s06")
    # duplicates and static failures never reach the sandbox; nothing is evaluated twice
    probed = [c for kind, c in pool.calls if kind == "probe"]
    assert "def broken(:\n    pass\n" not in probed and len(probed) == len(set(probed))
    assert rows["g001-s00"].heldout is not None or rows["g001-s06"].heldout is not None
    assert rows["base-00"].heldout is not None  # DPO gets the held-out suite for comparison


def _stage_events(out: Path) -> collections.Counter:
    return collections.Counter((e["id"], e["stage"]) for e in read_log(out / "log.jsonl") if e["event"] == "stage_done")


def _run_main(out: Path, *, resume: bool, crash: str | None = None, calls: Path | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    env.pop("PREFDISCO_CRASH_AT", None)
    env.pop("FAKEPOOL_LOG", None)
    if crash:
        env["PREFDISCO_CRASH_AT"] = crash
    if calls:
        env["FAKEPOOL_LOG"] = str(calls)
    cmd = [sys.executable, str(HERE / "fake_campaign_main.py"), str(out)] + (["--resume"] if resume else [])
    return subprocess.run(cmd, env=env, capture_output=True, timeout=120).returncode


def _committed_evaluations(out: Path) -> set[tuple[str, str]]:
    """(suite-or-probe, code-or-baseline-name) of every stage result committed to the database."""
    db = CampaignDir.open(out).database()
    try:
        rows = {r.id: r for r in db.all()}
        with db.engine.connect() as conn:
            pairs = conn.execute(__import__("sqlalchemy").text("SELECT candidate_id, stage FROM evaluations")).all()
    finally:
        db.close()
    out_set = set()
    for cid, stage in pairs:
        row = rows[cid]
        if stage == "static":
            continue  # in-process AST check, not a sandbox call
        key = row.name if row.origin == "baseline" and stage != "probe" else row.code
        out_set.add((stage, key))
    return out_set


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run of the same campaign, shared by the crash tests."""
    out = tmp_path_factory.mktemp("reference") / "campaign"
    assert _run_main(out, resume=False) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["proposal:6", "evaluation:9", "db_write:25"])
def test_kill9_then_resume_loses_and_redoes_nothing(tmp_path, reference, crash):
    out = tmp_path / "crashed"
    assert _run_main(out, resume=False, crash=crash) == -9  # SIGKILL, mid-campaign
    committed = _committed_evaluations(out)
    assert committed  # the kill came after some work was saved
    calls = tmp_path / "resume_calls.jsonl"
    assert _run_main(out, resume=True, calls=calls) == 0
    assert archive(out) == archive(reference)                               # nothing lost, same result
    assert _committed_evaluations(out) == _committed_evaluations(reference)
    redone = {tuple(json.loads(line)) for line in calls.read_text().splitlines()} & committed
    assert not redone                                                        # nothing finished was redone
    events = _stage_events(out)
    assert max(events.values()) == 1, [k for k, v in events.items() if v > 1]


def test_screen_gate_relative_to_dpo_stops_weak_candidates_early(tmp_path):
    run_fake(tmp_path / "g", **{"cascade": {"screen_margin": 0.0, "heldout_top_k": 0}})
    rows = CampaignDir.open(tmp_path / "g").database().all()
    dpo = next(r for r in rows if r.name == "dpo")
    gated = [r for r in rows if r.status == "gated"]
    passed = [r for r in rows if r.status == "evaluated" and r.origin != "baseline"]
    assert gated and passed
    assert all(r.screen_fitness < dpo.screen_fitness and r.fitness is None and r.stage == "screen"
               for r in gated)
    assert all(r.screen_fitness >= dpo.screen_fitness for r in passed)


def test_no_screen_sends_every_valid_candidate_to_the_fitness_suite(tmp_path):
    pool = FakePool()
    cfg = config_from_dict({**CONFIG, "cascade": {"screen_suite": None, "heldout_top_k": 1}})
    Campaign.create(cfg, tmp_path / "n", pool=pool, validate=validate_source, progress=ProgressView(enabled=False)).run()
    rows = CampaignDir.open(tmp_path / "n").database().all()
    assert not [kind for kind, _ in pool.calls if kind == "screen"]  # no screen job ever ran
    assert all(r.screen_fitness is None for r in rows) and not [r for r in rows if r.status == "gated"]
    assert sum(r.status == "evaluated" and r.origin != "baseline" for r in rows) >= 10


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resume_completes(tmp_path, reference):
    out = tmp_path / "interrupted"
    code = _run_main(out, resume=False, crash="db_write:30:INT")  # SIGINT = Ctrl-C, mid-campaign
    assert code != 0
    events = [e["event"] for e in read_log(out / "log.jsonl")]
    assert "interrupted" in events and "campaign_end" not in events
    assert _run_main(out, resume=True) == 0
    assert archive(out) == archive(reference)


def test_views_and_live_status_render(tmp_path):
    from rich.console import Console
    from typer.testing import CliRunner

    from discovery.search.cascade import describe_shape
    from discovery.commands import app
    from discovery.search.progress import render_status

    run_fake(tmp_path / "v", **{"budget": {"max_candidates": 4}})
    runner = CliRunner()
    board = runner.invoke(app, ["leaderboard", str(tmp_path / "v"), "--json"])
    assert board.exit_code == 0
    ids = [r["id"] for r in __import__("json").loads(board.output)]
    assert len(ids) == 4 + len(CONFIG["baselines"])
    rows = {r.id: r for r in CampaignDir.open(tmp_path / "v").database().all()}
    first, second = rows[ids[0]], rows[ids[1]]
    shown = runner.invoke(app, ["show", str(tmp_path / "v"), first.id], terminal_width=200)
    assert shown.exit_code == 0
    for text in (first.id, first.name, str(first.status), f"{first.fitness:.4f}", "per task"):
        assert text in shown.output, text
    assert first.code.split("(")[0] in shown.output  # the code is printed too ("def name")
    as_json = json.loads(runner.invoke(app, ["show", str(tmp_path / "v"), first.id, "--json"]).output)
    assert as_json["id"] == first.id and as_json["fitness"] == first.fitness and as_json["status"] == "evaluated"
    compared = runner.invoke(app, ["compare", str(tmp_path / "v"), first.id, second.id], terminal_width=200)
    assert compared.exit_code == 0
    for text in (first.id, second.id, f"{first.fitness:.4f}", f"{second.fitness:.4f}",
                 f"{first.fitness - second.fitness:+.4f}"):  # the fake pool stores no runs: unpaired
        assert text in compared.output, text
    missing = runner.invoke(app, ["show", str(tmp_path / "v"), "nope"])
    assert missing.exit_code != 0 and "no candidate" in str(missing.exception)
    console = Console(record=True, width=120)
    console.print(render_status(CampaignDir.open(tmp_path / "v").database().all(), generation=1, elapsed_s=60.0))
    text = console.export_text()
    assert "DPO fitness" in text and "best discovered" in text and "4/4 finished" in text
    line = describe_shape({"z": [-2.0, 0.0, 2.0], "loss": [2.1, 0.69, 0.13], "dloss_dz": [-0.9, -0.5, -0.1]})
    assert "L(+0.0)=0.69" in line and "monotone decreasing" in line


class CostlyProposer(ScriptedProposer):
    """Scripted proposals that each report 1000 tokens and $0.01 (as an LLM reply would)."""

    def propose(self, context):
        (p,) = super().propose(context)
        p.prompt_tokens, p.completion_tokens, p.cost_usd = 800, 200, 0.01
        return [p]


def test_token_budget_stops_proposing(tmp_path):
    codes = [GOOD.format(k=1.0 + i / 10) for i in range(20)]
    cfg = config_from_dict({"seed": 1, "baselines": ["dpo"], "generation_size": 2,
                            "budget": {"max_candidates": 20, "max_tokens": 5000},
                            "cascade": {"heldout_top_k": 0}})
    result = Campaign.create(cfg, tmp_path, pool=FakePool(), proposer=CostlyProposer(codes),
                             validate=validate_source, progress=ProgressView(enabled=False)).run()
    assert result.stopped_by == "budget: tokens" and result.candidates == 5
    assert all(r.status != "pending" for r in CampaignDir.open(tmp_path).database().all())
