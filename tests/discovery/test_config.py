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
    assert res.exit_code == 0 and "max_candidates: 80" in res.output
    res = runner.invoke(app, ["run", "--resume", str(tmp_path)])
    assert isinstance(res.exception, UserError)
