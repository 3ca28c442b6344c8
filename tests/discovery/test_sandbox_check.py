"""`prefdisco check FILE`: verdict printed, exit code 0 only when accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from discovery.commands import check
from discovery.errors import UserError

HOSTILE = Path(__file__).parent / "hostile"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    check.register(app)

    @app.command("noop")  # a second command keeps typer in multi-command mode ("check FILE")
    def noop() -> None:
        pass

    return app


def test_static_rejection_exits_nonzero_without_a_worker(app):
    result = CliRunner().invoke(app, ["check", str(HOSTILE / "os_system.py")])
    assert result.exit_code == 1
    assert result.output.startswith("rejected [unsafe]")


def test_accepted_and_probe_rejected_candidates(app):
    good = CliRunner().invoke(app, ["check", str(HOSTILE / "good_dpo_spelled_differently.py"), "--json"])
    assert good.exit_code == 0, good.output
    verdict = json.loads(good.output)
    assert verdict["accepted"] and len(verdict["fingerprint"]) == 64 and verdict["shape"]["z"]
    bad = CliRunner().invoke(app, ["check", str(HOSTILE / "wrong_shape.py")])
    assert bad.exit_code == 1 and "rejected [wrong_shape]" in bad.output


def test_missing_file_is_a_user_error(app, tmp_path):
    result = CliRunner().invoke(app, ["check", str(tmp_path / "nope.py")])
    assert isinstance(result.exception, UserError)
