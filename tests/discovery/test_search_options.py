"""A real (sandboxed, trained) tiny campaign with grammar moves, constant fitting and MAP-Elites all on."""

from __future__ import annotations

from dataclasses import replace

import pytest

from discovery.archive import map_elites
from discovery.archive.campaign_dir import CampaignDir
from discovery.archive.candidate import Stage, Status
from discovery.search.campaign import Campaign
from discovery.search.fitting import fit_trials, literal_constants, suite_evaluations
from tests.discovery.tiny_campaign import run_tiny_campaign


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tiny_campaign_with_grammar_fitting_and_map_elites(tmp_path):
    out = tmp_path / "camp"
    result = run_tiny_campaign(
        out, generation_size=2, budget={"max_candidates": 4},
        proposer={"mutation": {"grammar_rate": 0.7}},
        database={"kind": "map_elites", "islands": 1}, fit={"trials": 3})
    campaign_dir = CampaignDir.open(out)
    db, config = campaign_dir.database(), campaign_dir.config()
    rows = [r for r in db.all() if not r.is_baseline]
    assert len(rows) == 4 and any(r.thought.startswith("grammar:") for r in rows)
    fitted = [r for r in rows if db.stage_result(r.id, Stage.FIT) is not None]
    assert fitted, "no proposal reached the fit stage"
    for r in fitted:
        record = db.stage_result(r.id, Stage.FIT)
        assert len(record["trials"]) == 3 == fit_trials(r)
        best = record["trials"][record["best"]]
        assert best["fitness"] == max(t["fitness"] for t in record["trials"] if t["fitness"] is not None)
        if record["best"]:  # the archive holds the fitted program, and its probe describes it
            assert r.code != record["proposed_code"] and record["probe"]["ok"]
            assert record["probe"]["fingerprint"] == r.fingerprint
            assert literal_constants(r.code)[: len(best["constants"])] == best["constants"]
        else:
            assert r.code == record["proposed_code"]
    assert result.fit_evaluations == sum(fit_trials(r) for r in rows) >= 3
    assert result.suite_evaluations == sum(suite_evaluations(r) for r in rows) > result.fit_evaluations
    archive = map_elites.elites(db, 99, config.database.pull_edges, config.database.push_edges)
    assert len(archive) >= 2  # the baselines alone span distinct cells (dpo, ipo)
    assert all(e.candidate.status is Status.EVALUATED for e in archive.values())
    db.close()


def test_options_are_off_by_default_and_the_rediscovery_draft_turns_them_on():
    from pathlib import Path

    from discovery.config import load_config
    from discovery.search.cascade import SEARCH_STAGES, Cascade

    root = Path(__file__).resolve().parents[2]
    quick = load_config(root / "configs" / "quickstart.yaml")
    assert (quick.proposer.mutation.grammar_rate, quick.fit.trials, quick.database.kind) == (0.0, 0, "islands")
    assert Cascade(None, quick.cascade, validate=lambda code: [], fit=quick.fit).stages == SEARCH_STAGES
    draft = load_config(root / "configs" / "rediscover.yaml")
    assert [b.lower() for b in draft.baselines] == ["dpo", "hinge", "ipo", "kto_pair"]
    # the rediscovery benchmark runs grammar moves and MAP-Elites; fitting stays off there (each trial
    # is a full fitness evaluation, which its 10-minute budget cannot afford)
    assert draft.proposer.mutation.grammar_rate > 0 and draft.database.kind == "map_elites"
    assert draft.fit.trials == 0
    assert Stage.FIT not in Cascade(None, draft.cascade, validate=lambda code: [], fit=draft.fit).stages
    fitted = replace(draft.fit, trials=2)
    assert Stage.FIT in Cascade(None, draft.cascade, validate=lambda code: [], fit=fitted).stages


def test_same_seed_same_archive_with_every_option_on(tmp_path):
    """FakePool (scores from the code text): grammar moves, fitting and MAP-Elites stay deterministic."""
    from conftest import FakePool
    from fake_campaign_main import CONFIG

    from discovery.config import config_from_dict
    from discovery.sandbox import validate_source
    from discovery.search.progress import ProgressView

    options = {"proposer": {"mutation": {"grammar_rate": 0.6}}, "fit": {"trials": 2},
               "database": {"kind": "map_elites", "islands": 2}, "budget": {"max_candidates": 8}}

    def run(out):
        cfg = config_from_dict({**CONFIG, **options})
        c = Campaign.create(cfg, out, pool=FakePool(), validate=validate_source, progress=ProgressView(enabled=False))
        c.run()
        db = CampaignDir.open(out).database()
        rows = [(r.id, r.code, r.fitness, str(r.status), r.thought, str(db.stage_result(r.id, Stage.FIT)))
                for r in db.all()]
        db.close()
        return rows

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first == second
    assert any(row[5] != "None" for row in first) and any(row[4].startswith("grammar:") for row in first)


def test_a_misspelt_fit_suite_is_refused_before_anything_runs(tmp_path):
    from conftest import FakePool
    from fake_campaign_main import CONFIG

    from discovery.config import config_from_dict
    from discovery.errors import UserError

    cfg = config_from_dict({**CONFIG, "fit": {"trials": 2, "suite": "no_such_suite"}})
    with pytest.raises(UserError, match="fit.suite"):
        Campaign.create(cfg, tmp_path / "c", pool=FakePool())
    assert not (tmp_path / "c").exists()  # refused before the campaign directory is made
