from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators import evaluate_loss, load_suite
from evaluators.jobs import evaluate_job
from tests.evaluators.conftest import dpo

SCREEN_KEYS = {"loss", "suite", "fitness", "fitness_se", "runs"}
RUN_KEYS = {"task", "tier", "seed", "beta", "noise", "gold_reward", "kl", "win_rate", "accuracy",
            "flags", "wall_time_s", "curve", "extra"}


def test_evaluate_loss_on_screen(cache_dir: Path) -> None:
    result = evaluate_loss(dpo, "screen", seeds=2, cache_dir=cache_dir)
    suite = load_suite("screen")
    assert result.suite == "screen" and result.loss == "dpo"
    assert len(result.runs) == 2 * len(suite.groups[0].betas)
    assert result.fitness > 0.05 and result.fitness_se >= 0
    assert all("score" in r.extra for r in result.runs)


def test_registered_name_and_overrides(cache_dir: Path) -> None:
    result = evaluate_loss("dpo", "screen", seeds=1, beta_override=0.3, lr_override=0.01,
                           cache_dir=cache_dir)
    assert {r.beta for r in result.runs} == {0.3}
    assert result.runs[0].extra["config"]["lr"] == 0.01


def test_evaluate_job_baseline_by_name_and_candidate(cache_dir: Path) -> None:
    by_name = evaluate_job(None, suite="screen", seeds=1, loss_name="dpo", cache_dir=str(cache_dir))
    assert set(by_name) >= SCREEN_KEYS and by_name["loss"] == "dpo"
    assert set(by_name["runs"][0]) >= RUN_KEYS
    json.dumps(by_name)
    cand = evaluate_job(dpo, suite="screen", seeds=1, loss_name="cand-1", cache_dir=str(cache_dir))
    assert cand["loss"] == "cand-1"
    assert cand["fitness"] == pytest.approx(by_name["fitness"], abs=1e-6)  # same maths as registry dpo
    with pytest.raises(TypeError):
        evaluate_job(dpo, suite="screen", bogus=1)


def _cli(*args: str):
    from typer.testing import CliRunner

    from discovery.commands import app

    return CliRunner().invoke(app, list(args))


def test_cli_evaluate_registered_loss_writes_json(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "r.json"
    res = _cli("evaluate", "--loss", "dpo", "--suite", "screen", "--seeds", "1",
               "--json", str(out), "--cache-dir", str(cache_dir))
    assert res.exit_code == 0, res.output
    assert "fitness" in res.output
    data = json.loads(out.read_text())
    assert set(data) >= SCREEN_KEYS and set(data["runs"][0]) >= RUN_KEYS


def test_cli_bad_input_is_a_user_error(tmp_path: Path) -> None:
    from discovery.errors import UserError

    for args in (("--loss", "dpo", "--suite", "nope"), ("--loss", "no_such_loss"),
                 ("--loss", str(tmp_path / "missing.py"))):
        res = _cli("evaluate", *args)
        assert isinstance(res.exception, UserError), (args, res.output)


@pytest.mark.slow
def test_cli_evaluates_a_file_inside_the_sandbox(tmp_path: Path, cache_dir: Path) -> None:
    cand = tmp_path / "my_loss.py"
    cand.write_text(
        "def my_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,\n"
        "            reference_rejected_logps, beta):\n"
        "    z = beta * ((policy_chosen_logps - reference_chosen_logps)\n"
        "                - (policy_rejected_logps - reference_rejected_logps))\n"
        "    return -F.logsigmoid(z)\n")
    out = tmp_path / "r.json"
    res = _cli("evaluate", "--loss", str(cand), "--suite", "screen", "--seeds", "1",
               "--json", str(out), "--cache-dir", str(cache_dir / "sandboxed"))
    assert res.exit_code == 0, (res.output, res.exception)
    data = json.loads(out.read_text())
    assert data["loss"] == "my_loss" and data["fitness"] > 0.05
