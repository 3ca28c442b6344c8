"""Campaign config: YAML -> typed dataclasses, unknown keys rejected, resolved dump round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from discovery.commands import app
from discovery.config import config_from_dict, config_to_dict, dump_config, load_config
from discovery.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["quickstart.yaml", "discovery.yaml"])
def test_shipped_configs_load_and_round_trip(name):
    cfg = load_config(ROOT / "configs" / name)
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg


def test_quickstart_is_offline_mutation():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.proposer.kind == "mutation" and "dpo" in cfg.baselines


def test_quickstart_searches_the_calibrated_tier_without_a_screen():
    """No screen predicts the calibrated fitness at rho >= 0.8 (benchmarks/results/fidelity-*), so none runs."""
    from evaluators.suites import load_suite

    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.cascade.screen_suite is None
    fitness, heldout = load_suite(cfg.cascade.fitness_suite), load_suite(cfg.cascade.heldout_suite)
    assert {g.tier for g in fitness.groups} == {g.tier for g in heldout.groups} == {"calibrated_lm"}
    assert not {s.instance for s in fitness.instances()} & {s.instance for s in heldout.instances()}
    assert cfg.budget.max_candidates >= 30


def test_bad_configs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown key"):
        config_from_dict({"budget": {"max_candidatez": 3}})
    with pytest.raises(UserError, match="expected int"):
        config_from_dict({"seed": "zero"})
    with pytest.raises(UserError, match="dpo"):
        config_from_dict({"baselines": ["ipo"]})
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    assert config_to_dict(config_from_dict({"budget": {"max_wall_time_s": 5}}))["budget"]["max_wall_time_s"] == 5.0


def test_run_cli_errors_and_resolved_config(tmp_path):
    runner = CliRunner()
    from discovery.commands import main  # noqa: F401 - app import registers verbs

    res = runner.invoke(app, ["run"])
    assert isinstance(res.exception, UserError)
    res = runner.invoke(app, ["run", str(ROOT / "configs" / "quickstart.yaml"), "--print-config"])
    budget = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())["budget"]["max_candidates"]
    assert res.exit_code == 0 and f"max_candidates: {budget}" in res.output and "screen_suite: null" in res.output
    res = runner.invoke(app, ["run", "--resume", str(tmp_path)])
    assert isinstance(res.exception, UserError)


def test_choices_are_checked_however_a_config_is_built():
    from discovery.config import CampaignConfig, ProposerConfig

    with pytest.raises(ValueError, match="executor.*'local', 'ray'"):
        CampaignConfig(executor="slurm")
    with pytest.raises(ValueError, match="kind"):
        ProposerConfig(kind="oracle")
    with pytest.raises(UserError, match="executor: 'slurm' is not one of"):
        config_from_dict({"executor": "slurm"})
    with pytest.raises(UserError, match="proposer.kind"):
        config_from_dict({"proposer": {"kind": "oracle"}})


def test_tune_flags_come_from_the_tuning_config(tmp_path):
    import dataclasses

    from discovery.tuning.config import TuningConfig

    runner = CliRunner()
    text = runner.invoke(app, ["tune", "--help"], terminal_width=200).output
    for f in dataclasses.fields(TuningConfig):
        if f.name != "baselines":  # a comma list with its own flag
            flag = {"top_k": "--top", "heartbeat_interval_s": "--heartbeat"}.get(f.name, "--" + f.name.replace("_", "-"))
            assert flag in text, flag
    bad = runner.invoke(app, ["tune", str(tmp_path), "--trials", "0"])
    assert isinstance(bad.exception, UserError) and "trials >= 1" in str(bad.exception)
    assert TuningConfig(heartbeat_interval_s=2).grace_period_s == 6  # unset grace: 3 heartbeats
