"""The shipped real-model suites (`imdb`, `tldr`, `chat-judge`) on tiny local stand-ins.

The stand-ins are built by the tests: a random-init 1-layer GPT-2 and a random-init two-class GPT-2
classifier saved to a temp dir (word-level tokenizer trained offline), local JSONL data, and the
loopback OpenAI-compatible TEST DOUBLE (tests/discovery/openai_test_server.py) as judge, whose
verdicts follow a rule the test states (more positive-minus-negative words wins). A user points a
shipped suite at local copies the same two ways: `prefdisco evaluate --set KEY.PATH=VALUE`, or a
small YAML that `extends:` the shipped suite and `set:`s the keys to change.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from evaluators.suites import load_suite
from tests import tiny_hf
from tests.discovery import openai_test_server as double

TINY_TRAIN = {"steps": 4, "batch_size": 4, "micro_batch": 2, "max_length": 32, "lr": 5.0e-3, "logging_steps": 1}
TINY_GEN = {"max_new_tokens": 4, "batch_size": 8}


def _cli(*args: str):
    from typer.testing import CliRunner

    from discovery.commands import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hf-stand-ins")
    pairs = tiny_hf.review_pairs(40)
    return {
        "policy": str(tiny_hf.build_tiny_gpt2(root / "gpt2")),
        "classifier": str(tiny_hf.build_tiny_classifier(root / "classifier")),
        "texts": str(tiny_hf.write_jsonl(root / "texts.jsonl", tiny_hf.review_texts(40))),
        "texts_test": str(tiny_hf.write_jsonl(root / "texts_test.jsonl", tiny_hf.review_texts(12, seed=1))),
        "pairs": str(tiny_hf.write_jsonl(root / "pairs.jsonl", pairs)),
        "posts": str(tiny_hf.write_jsonl(root / "posts.jsonl", [
            {"prompt": p["prompt"], "completion": p["chosen"].strip()} for p in tiny_hf.review_pairs(6)])),
        "instructions": str(tiny_hf.write_jsonl(root / "alpaca.jsonl", [
            {"instruction": p["prompt"], "output": p["rejected"].strip() + " and " + p["rejected"].strip()}
            for p in tiny_hf.review_pairs(6)])),
        "root": str(root),
    }


def imdb_overrides(s: dict[str, str]) -> dict:
    return {"model": {"policy": s["policy"], "device": "cpu"},
            "data": {"dataset": s["texts"], "eval_dataset": s["texts_test"], "train_pairs": 24, "heldout_pairs": 4,
                     "eval_prompts": 6},
            "train": TINY_TRAIN, "generation": {**TINY_GEN, "min_new_tokens": 4},
            "reward": {"model": s["classifier"], "batch_size": 8}}


def judged_overrides(s: dict[str, str], eval_dataset: str, prompt_column: str, reference_column: str) -> dict:
    return {"model": {"policy": s["policy"], "device": "cpu"},
            "data": {"dataset": s["pairs"], "train_pairs": 24, "heldout_pairs": 4, "eval_dataset": eval_dataset,
                     "eval_prompt_column": prompt_column, "reference_column": reference_column, "eval_prompts": 6},
            "train": TINY_TRAIN, "generation": TINY_GEN}


def _extending(tmp_path: Path, base: str, settings: dict, **top) -> str:
    path = tmp_path / f"my-{base}.yaml"
    path.write_text(yaml.safe_dump({"extends": base, "set": settings, **top}))
    return str(path)


# ---- fast ----------------------------------------------------------------------------------------

def test_shipped_suites_load_with_hub_defaults_and_typed_config():
    imdb = load_suite("imdb")
    group = imdb.groups[0]
    assert group.tier == "hf" and group.betas == (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    assert group.config["model"]["policy"] == "lvwerra/gpt2-imdb" and group.config["train"]["micro_batch"] == 2
    assert load_suite("tldr").groups[0].config["data"]["reference_column"] == "completion"
    assert load_suite("chat-judge").groups[0].config["judge"]["length_controlled"] is True


def test_set_and_extends_point_a_shipped_suite_at_local_paths(tmp_path):
    suite = load_suite("imdb", ["model.policy=/models/gpt2", "train.steps=7", "betas=[0.1, 0.5]"])
    assert suite.groups[0].config["model"] == {"policy": "/models/gpt2", "bf16": True}
    assert suite.groups[0].config["train"]["steps"] == 7 and suite.groups[0].config["train"]["micro_batch"] == 2
    assert suite.groups[0].betas == (0.1, 0.5)
    path = _extending(tmp_path, "tldr", {"judge": {"base_url": "http://127.0.0.1:9/v1"}}, name="my-tldr")
    mine = load_suite(path)
    assert mine.name == "my-tldr" and mine.groups[0].config["judge"]["base_url"] == "http://127.0.0.1:9/v1"
    assert mine.groups[0].config["judge"]["model"] == "gpt-4o-mini"  # the rest of the shipped judge stays


def test_bad_hf_config_fails_when_the_suite_loads():
    with pytest.raises(ValueError, match="unknown key"):
        load_suite("imdb", ["train.stpes=3"])
    with pytest.raises(ValueError, match="multiple of train.micro_batch"):
        load_suite("imdb", ["train.batch_size=5"])
    with pytest.raises(ValueError, match="reward.model"):
        load_suite("tldr", ["judge=null"])


def test_micro_batch_is_the_loss_batch_and_accumulation_fills_the_step(tmp_path):
    from evaluators.hf_run import tier_config
    from evaluators.hf_suite_config import HFSuiteConfig

    config = HFSuiteConfig.from_dict(load_suite("imdb").groups[0].config)
    cfg = tier_config(config, {"policy_path": "/m"}, tmp_path, seed=3, beta=0.25, device="cuda", loss_kwargs={})
    assert (cfg.batch_size, cfg.gradient_accumulation_steps) == (2, 32)  # DiscoPOP's per-device micro-batch
    assert cfg.bf16 and cfg.beta == 0.25 and cfg.seed == 3 and cfg.min_new_tokens == 48


def test_length_controlled_win_rate_removes_a_length_preference():
    from evaluators.hf_judging import length_controlled_win_rate

    # The judge prefers the longer answer 4 times in 5; the policy is longer on 15 of 20 prompts.
    outcomes = [1.0] * 12 + [0.0] * 3 + [1.0] * 1 + [0.0] * 4
    policy, reference = [40] * 15 + [20] * 5, [20] * 15 + [40] * 5
    lc = length_controlled_win_rate(outcomes, policy, reference)
    assert lc["win_rate"] == pytest.approx(0.65) and lc["length_coef"] > 1.0
    assert lc["lc_win_rate"] == pytest.approx(0.5, abs=0.01)  # at equal length: no better than the reference
    same_length = length_controlled_win_rate([1.0, 0.0, 1.0, 1.0], [10] * 4, [10] * 4)
    assert same_length["lc_win_rate"] == pytest.approx(0.75, abs=0.01)


def test_judge_cache_answers_repeated_questions_without_a_call(tmp_path):
    from evaluators.judges import JudgeCache, LLMJudgeConfig, PairwiseJudge

    cfg = LLMJudgeConfig(model="judge-double", api_key_env="PREFDISCO_TEST_NO_KEY", max_retries=0)
    with double.ScriptedOpenAIServer(default=tiny_hf.sentiment_judge) as server:
        cfg.base_url = server.base_url
        cache = JudgeCache(tmp_path / "judge.sqlite")
        first = PairwiseJudge(cfg, cache=cache).compare(["p", "q"], ["good", "bad"], ["bad", "good"])
        second = PairwiseJudge(cfg, cache=cache).compare(["p", "q"], ["good", "bad"], ["bad", "good"])
    assert (first.requests, first.cache_hits) == (4, 0) and (second.requests, second.cache_hits) == (0, 4)
    assert len(server.requests) == 4 and first.scores == second.scores == [1.0, 0.0]


# ---- slow: end to end through `prefdisco evaluate` ------------------------------------------------------

@pytest.mark.slow
def test_evaluate_imdb_on_stand_ins_prints_reward_and_kl_per_beta(stand_ins, tmp_path):
    suite = _extending(tmp_path, "imdb", imdb_overrides(stand_ins), name="imdb-tiny")
    out, plot = tmp_path / "dpo.json", tmp_path / "frontier.svg"
    cache = tmp_path / "cache"
    res = _cli("evaluate", "--loss", "dpo", "--suite", suite, "--set", "betas=[0.1, 1.0]", "--json", str(out),
               "--cache-dir", str(cache), "--plot", str(plot))
    assert res.exit_code == 0, res.output
    assert "imdb beta=0.1: reward" in res.output and "imdb beta=1: reward" in res.output and " KL " in res.output
    result = json.loads(out.read_text())
    assert [r["beta"] for r in result["runs"]] == [0.1, 1.0]
    for run in result["runs"]:
        assert run["tier"] == "hf" and run["flags"] == [] and run["extra"]["micro_batch"] == 2
        assert 0.0 <= run["gold_reward"] <= 1.0 and math.isfinite(run["kl"])  # P(positive) and nats
        assert 0.0 <= run["extra"]["reference_reward"] <= 1.0 and len(run["extra"]["generations"]) == 6
    assert math.isfinite(result["fitness"])
    svg = plot.read_text()
    assert svg.startswith("<svg") and "dpo" in svg and "reward vs KL" in svg
    prepared = list((cache / "hf").iterdir())
    assert len(prepared) == 1 and (prepared[0] / "train.jsonl").exists()  # built once, shared by both betas
    pairs = [json.loads(x) for x in (prepared[0] / "train.jsonl").read_text().splitlines()]
    assert pairs and all(p["score_margin"] > 0 for p in pairs)  # classifier-labelled reference samples


@pytest.mark.slow
def test_evaluate_candidate_file_on_imdb_frontier_has_a_line_per_loss(stand_ins, tmp_path):
    """A candidate FILE runs in the sandbox (reading the stand-ins, bound read-only); DPO is plotted too."""
    from candidate_losses import get_loss

    src = tmp_path / "my_loss.py"
    src.write_text(get_loss("aql_original").source)
    suite = _extending(tmp_path, "imdb", imdb_overrides(stand_ins), name="imdb-tiny")
    plot, out = tmp_path / "frontier.svg", tmp_path / "candidate.json"
    res = _cli("evaluate", "--loss", str(src), "--suite", suite, "--set", "betas=[0.5]", "--cache-dir",
               str(tmp_path / "cache"), "--plot", str(plot), "--timeout", "600", "--json", str(out))
    assert res.exit_code == 0, (res.output, res.exception)
    assert "imdb beta=0.5: reward" in res.output
    (run,) = json.loads(out.read_text())["runs"]
    assert run["flags"] == [] and math.isfinite(run["kl"]) and 0.0 <= run["gold_reward"] <= 1.0
    svg = plot.read_text()
    assert "my_loss" in svg and "dpo" in svg


@pytest.mark.slow
@pytest.mark.parametrize("suite_name, eval_key, prompt_column, reference_column", [
    ("tldr", "posts", "prompt", "completion"),
    ("chat-judge", "instructions", "instruction", "output"),
])
def test_evaluate_judged_suites_on_stand_ins(stand_ins, tmp_path, suite_name, eval_key, prompt_column,
                                             reference_column):
    settings = judged_overrides(stand_ins, stand_ins[eval_key], prompt_column, reference_column)
    cache = tmp_path / "cache"
    with double.ScriptedOpenAIServer(default=tiny_hf.sentiment_judge) as server:
        settings["judge"] = {"model": "judge-double", "base_url": server.base_url,
                             "api_key_env": "PREFDISCO_TEST_NO_KEY", "max_retries": 0}
        suite = _extending(tmp_path, suite_name, settings)
        out = tmp_path / "dpo.json"
        res = _cli("evaluate", "--loss", "dpo", "--suite", suite, "--json", str(out), "--cache-dir", str(cache))
        assert res.exit_code == 0, res.output
        calls = len(server.requests)
        again = _cli("evaluate", "--loss", "dpo", "--suite", suite, "--cache-dir", str(cache))
        assert again.exit_code == 0, again.output
        assert len(server.requests) == calls  # the second evaluation's verdicts all come from the judge cache
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    judge = run["extra"]["judge"]
    assert judge["requests"] == calls == 2 * 6 and judge["cache_hits"] == 0  # 6 prompts x both orders
    assert "judge: 12 calls, 0 from the cache" in res.output and "judge: 0 calls, 12 from the cache" in again.output
    samples = run["extra"]["generations"]
    expected = [1.0 if a > b else 0.0 if a < b else 0.5
                for a, b in ((tiny_hf.sentiment(x["policy"]), tiny_hf.sentiment(x["reference"])) for x in samples)]
    raw = sum(expected) / len(expected)
    assert judge["win_rate"] == pytest.approx(raw)
    if suite_name == "chat-judge":
        assert "lc_win_rate" in judge and run["win_rate"] == pytest.approx(judge["lc_win_rate"])
    else:
        assert run["win_rate"] == pytest.approx(raw)
    assert run["gold_reward"] == run["win_rate"] and run["extra"]["reference_reward"] == 0.5
    assert f"{run['task']} beta=0.05: reward" in res.output and math.isfinite(run["kl"])


@pytest.mark.slow
def test_candidate_file_on_tldr_trains_in_the_sandbox_and_is_judged_in_the_parent(stand_ins, tmp_path):
    """The sandbox has no network: the job returns its summaries and this process asks the judge."""
    from candidate_losses import get_loss

    src = tmp_path / "cand.py"
    src.write_text(get_loss("ipo").source)
    settings = judged_overrides(stand_ins, stand_ins["posts"], "prompt", "completion")
    out = tmp_path / "cand.json"
    with double.ScriptedOpenAIServer(default=tiny_hf.sentiment_judge) as server:
        settings["judge"] = {"model": "judge-double", "base_url": server.base_url,
                             "api_key_env": "PREFDISCO_TEST_NO_KEY", "max_retries": 0}
        suite = _extending(tmp_path, "tldr", settings)
        res = _cli("evaluate", "--loss", str(src), "--suite", suite, "--json", str(out), "--cache-dir",
                   str(tmp_path / "cache"), "--timeout", "600")
        assert res.exit_code == 0, (res.output, res.exception)
        assert len(server.requests) == 12
    (run,) = json.loads(out.read_text())["runs"]
    assert run["flags"] == [] and run["extra"]["judge_pending"] is False
    assert run["extra"]["judge"]["requests"] == 12 and run["gold_reward"] == run["win_rate"]
    # rescored after judging: the formula on the judged win rate (gold 0.5 = the reference's level)
    expected = max(2 * (run["win_rate"] - 0.5) - 0.25 * max(0.0, run["kl"] / 40.0 - 1), -0.5)
    assert run["extra"]["score"] == pytest.approx(expected)
    assert json.loads(out.read_text())["fitness"] == pytest.approx(expected)


def test_unloadable_hub_model_is_one_line_naming_the_fix(tmp_path):
    res = _cli("evaluate", "--loss", "dpo", "--suite", "imdb", "--set", "model.policy=no-such-org/no-such-model",
               "--cache-dir", str(tmp_path))
    from discovery.errors import UserError  # `prefdisco` prints it as one line and exits 2

    assert isinstance(res.exception, UserError), res.output
    message = str(res.exception)
    assert "no-such-org/no-such-model" in message and "--set model.policy=" in message and "\n" not in message


def test_sandbox_read_paths_name_local_models_and_the_hub_cache(tmp_path):
    from huggingface_hub import constants

    from evaluators.jobs import sandbox_read_paths

    (tmp_path / "gpt2").mkdir()
    local = sandbox_read_paths(["imdb"], [f"model.policy={tmp_path / 'gpt2'}"])
    assert str((tmp_path / "gpt2").resolve()) in local and str(constants.HF_HUB_CACHE) in local  # reward: a hub id
    assert sandbox_read_paths(["fitness", None]) == []  # tinylm suites need nothing outside the cache
