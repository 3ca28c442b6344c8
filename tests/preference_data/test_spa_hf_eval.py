"""Per-stage evaluation of hf SPA runs against pi_init (``preference_data.spa.hf_eval``).

Every number is recomputed here from the models themselves: tiny random-init GPT-2 policies and a
tiny random-init GPT-2 reward model saved to temp dirs (``tests.tiny_hf``), and an LLM judge that
is the loopback TEST DOUBLE of tests/discovery/openai_test_server.py spoken to over real HTTP by
the real `openai` client; its verdicts follow a rule stated here (more positive-minus-negative
words wins), or a pure position bias (always "A").
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from tests import tiny_hf
from tests.discovery import openai_test_server as double

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["review : the film was", "review : it is", "review : the film is very", "review : it was",
           "review : the film was very", "review : it is very"]


def _expected_judge_score(policy: str, init: str) -> float:
    """What the sentiment double's verdicts, asked in both orders, must average to for one prompt."""
    d = tiny_hf.sentiment(policy) - tiny_hf.sentiment(init)
    return 1.0 if d > 0 else 0.0 if d < 0 else 0.5


def _judge(server, **extra) -> dict:
    return {"model": "judge-double", "base_url": server.base_url, "api_key_env": "PREFDISCO_TEST_NO_KEY",
            "max_retries": 0, "concurrency": 2, **extra}


def _rm_scores(path: Path, prompts: list[str], responses: list[str]) -> list[float]:
    """Logit 0 of the reward model on ``prompt + " " + response``, one text at a time (no padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return [float(model(**tokenizer(f"{p} {r}", return_tensors="pt")).logits[0, 0])
                for p, r in zip(prompts, responses)]


def _greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> tuple[str, int]:
    """One prompt's greedy answer, unbatched, and its length in tokens (EOS included)."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    row = out[0, ids["input_ids"].shape[1]:].tolist()
    if tokenizer.eos_token_id in row:
        row = row[:row.index(tokenizer.eos_token_id) + 1]
    return tokenizer.decode(row, skip_special_tokens=True).strip(), len(row)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("spa-hf-eval")
    return {"init": tiny_hf.build_tiny_gpt2(root / "init", seed=0),
            "policy": tiny_hf.build_tiny_gpt2(root / "policy", seed=5),
            "rm": tiny_hf.build_tiny_reward_model(root / "rm", seed=1)}


def _evaluator(models: dict, evaluation: dict, prompts: list[str] = PROMPTS):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from preference_data.spa.hf_config import spa_hf_config_from_dict
    from preference_data.spa.hf_eval import StageEvaluator

    cfg = spa_hf_config_from_dict({"seed": 1, "evaluation": evaluation})
    tokenizer = AutoTokenizer.from_pretrained(models["init"])
    init = AutoModelForCausalLM.from_pretrained(models["init"]).eval()
    return StageEvaluator(cfg, tokenizer, init, prompts, "cpu"), tokenizer, init


# ---- fast ------------------------------------------------------------------------------------------------

def test_evaluation_config_defaults_fallback_and_validation():
    from preference_data.spa.hf_config import load_spa_yaml, spa_hf_config_from_dict

    cfg = spa_hf_config_from_dict({})
    assert cfg.train.include_seed is False          # the authors' release: rounds train on new pairs only
    assert cfg.evaluation.enabled and cfg.evaluation.judge is None and cfg.eval_reward_model() is None
    assert cfg.evaluation.generation.do_sample is False          # greedy unless asked
    cfg = spa_hf_config_from_dict({"judge": {"reward_model": "rm-dir"}})
    assert cfg.eval_reward_model() == "rm-dir"      # falls back to the judge section's reward model
    cfg = spa_hf_config_from_dict({"judge": {"reward_model": "rm-dir"}, "evaluation": {"reward": {"model": "other"}}})
    assert cfg.eval_reward_model() == "other"
    cfg = spa_hf_config_from_dict({"judge": {"reward_model": "rm-dir"}, "evaluation": {"enabled": False}})
    assert cfg.eval_reward_model() is None
    cfg = spa_hf_config_from_dict({"evaluation": {"judge": {"model": "m", "length_controlled": True},
                                                  "generation": {"max_new_tokens": 7}}})
    assert cfg.evaluation.judge.length_controlled and cfg.evaluation.generation.max_new_tokens == 7
    assert cfg.evaluation.generation.do_sample is False          # a partial section keeps the greedy default
    with pytest.raises(ValueError, match="unknown key"):
        spa_hf_config_from_dict({"evaluation": {"judge": {"modle": "m"}}})
    with pytest.raises(ValueError, match="evaluation.prompts"):
        spa_hf_config_from_dict({"evaluation": {"prompts": 0}})
    shipped = load_spa_yaml(REPO / "configs" / "spa_hf.yaml")
    assert shipped.train.include_seed is False and shipped.evaluation.enabled


def test_hf_stage_line_shows_the_measured_win_rates_only():
    from discovery.commands.spa import _stage_line
    from preference_data.spa.loop import StageRecord

    bare = _stage_line(StageRecord(iteration=1, kl=0.2), "hf")
    assert "RM win" not in bare and "judge win" not in bare and "length" not in bare
    record = StageRecord(iteration=2, kl=0.2, reward_model_score=0.25, reward_model_win_rate=0.625,
                         judge_win_rate=0.75, response_length=5.5, init_response_length=4.0,
                         evaluation={"init_reward_model_score": 0.125})
    line = _stage_line(record, "hf")
    assert "iter 2" in line and "RM 0.250 (init 0.125)" in line and "RM win 0.625" in line
    assert "judge win 0.750" in line and "length 5.5 (init 4.0)" in line and "LC win" not in line


def test_stage_evaluator_win_rates_are_those_of_the_models(models, tmp_path, monkeypatch):
    """Reward-model score and win rate, judge win rate (both orders) and lengths, each recomputed here
    from the models' own greedy answers; pi_init vs itself gives exactly 1/2; judge replies are cached."""
    from transformers import AutoModelForCausalLM

    from preference_data.spa.hf_eval import StageEvaluator
    from preference_data.spa.loop import StageRecord

    monkeypatch.setenv("PREFDISCO_CACHE", str(tmp_path / "cache"))
    policy = AutoModelForCausalLM.from_pretrained(models["policy"]).eval()
    with double.ScriptedOpenAIServer(default=tiny_hf.sentiment_judge) as server:
        evaluation = {"reward": {"model": str(models["rm"])}, "judge": _judge(server, length_controlled=True),
                      "generation": {"max_new_tokens": 6, "batch_size": 4}}
        evaluator, tokenizer, init = _evaluator(models, evaluation)
        record = StageRecord(iteration=0)
        evaluator.evaluate(policy, record, str(tmp_path / "out"))
        judged = record.evaluation["judge"]    # every prompt, both orders (where pi_i's answer equals
                                               # pi_init's, both orders are one question: a cache hit)
        assert judged["requests"] + judged["cache_hits"] == 2 * len(PROMPTS) == len(server.requests) + judged["cache_hits"]
        asked = {tiny_hf.judged_responses(r) for r in server.requests}

        mine = [_greedy(policy, tokenizer, p, 6) for p in PROMPTS]
        theirs = [_greedy(init, tokenizer, p, 6) for p in PROMPTS]
        rows = [json.loads(line) for line in (tmp_path / "out" / "eval_generations.jsonl").read_text().splitlines()]
        assert [r["response"] for r in rows] == [t for t, _ in mine]
        assert [r["init_response"] for r in rows] == [t for t, _ in theirs]
        assert all((a, b) in asked and (b, a) in asked for (a, _), (b, _) in zip(mine, theirs))

        rewards = _rm_scores(models["rm"], PROMPTS, [t for t, _ in mine])
        init_rewards = _rm_scores(models["rm"], PROMPTS, [t for t, _ in theirs])
        assert [r["reward"] for r in rows] == pytest.approx(rewards, abs=1e-4)
        assert record.reward_model_score == pytest.approx(sum(rewards) / len(rewards), abs=1e-4)
        wins = [1.0 if a > b else 0.0 if a < b else 0.5 for a, b in zip(rewards, init_rewards)]
        assert record.reward_model_win_rate == pytest.approx(sum(wins) / len(wins))
        assert 0 < record.reward_model_win_rate < 1                       # the case is not degenerate

        expected = [_expected_judge_score(a, b) for (a, _), (b, _) in zip(mine, theirs)]
        assert len(set(expected)) > 1                                     # wins and losses/ties both occur
        assert [r["judge_score"] for r in rows] == expected
        assert record.judge_win_rate == pytest.approx(sum(expected) / len(expected))
        assert 0.0 <= record.judge_lc_win_rate <= 1.0
        assert record.evaluation["judge"]["order_consistency"] == 1.0      # the rule ignores position
        assert record.response_length == pytest.approx(sum(n for _, n in mine) / len(mine))
        assert record.init_response_length == pytest.approx(sum(n for _, n in theirs) / len(theirs))

        # pi_init against itself: every prompt a tie under both evaluators
        again = StageRecord(iteration=1)
        evaluator.evaluate(init, again, str(tmp_path / "out"))
        assert again.reward_model_win_rate == 0.5 and again.judge_win_rate == 0.5
        lines = (tmp_path / "out" / "eval_generations.jsonl").read_text().splitlines()
        assert len(lines) == 2 * len(PROMPTS) and json.loads(lines[-1])["stage"] == 1

        # a fresh evaluator asking the same questions is answered from the judge cache
        sent = len(server.requests)
        fresh = StageEvaluator(evaluator.cfg, tokenizer, init, PROMPTS, "cpu")
        repeat = StageRecord(iteration=0)
        fresh.evaluate(policy, repeat)
        assert len(server.requests) == sent and repeat.evaluation["judge"]["cache_hits"] == 2 * len(PROMPTS)
        assert repeat.evaluation["judge"]["requests"] == 0
        assert repeat.judge_win_rate == record.judge_win_rate


def test_position_biased_judge_scores_one_half(models, tmp_path, monkeypatch):
    """A judge that always answers "A" prefers pi_i in one order and pi_init in the other: 1/2 per prompt."""
    from transformers import AutoModelForCausalLM

    from preference_data.spa.loop import StageRecord

    monkeypatch.setenv("PREFDISCO_CACHE", str(tmp_path / "cache"))
    policy = AutoModelForCausalLM.from_pretrained(models["policy"]).eval()
    with double.ScriptedOpenAIServer(default="A") as server:
        evaluator, _, _ = _evaluator(models, {"judge": _judge(server), "judge_cache": False,
                                              "generation": {"max_new_tokens": 4}})
        record = StageRecord(iteration=1)
        evaluator.evaluate(policy, record)
    assert record.judge_win_rate == 0.5 and math.isnan(record.reward_model_win_rate)
    judge = record.evaluation["judge"]
    assert judge["order_consistency"] == 0.0 and judge["first_position_rate"] == 1.0 and judge["ties"] == len(PROMPTS)
    assert len(server.requests) == 2 * len(PROMPTS) and math.isfinite(record.response_length)   # no cache
    assert not (tmp_path / "cache").exists()


def test_unreachable_judge_leaves_nan_and_keeps_the_reward_model(models, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from preference_data.spa.loop import StageRecord

    monkeypatch.setenv("PREFDISCO_CACHE", str(tmp_path / "cache"))
    policy = AutoModelForCausalLM.from_pretrained(models["policy"]).eval()
    with double.ScriptedOpenAIServer(default=double.Status(500)) as server:
        evaluator, _, _ = _evaluator(models, {"reward": {"model": str(models["rm"])}, "judge": _judge(server),
                                              "generation": {"max_new_tokens": 4}}, PROMPTS[:2])
        record = StageRecord(iteration=1)
        evaluator.evaluate(policy, record)
    assert math.isnan(record.judge_win_rate) and "InternalServerError" in record.evaluation["judge_error"]
    assert 0.0 <= record.reward_model_win_rate <= 1.0 and math.isfinite(record.reward_model_score)


def test_no_evaluator_configured_runs_nothing(models):
    from preference_data.spa.loop import StageRecord

    evaluator, _, init = _evaluator(models, {})
    record = StageRecord(iteration=0)
    evaluator.evaluate(init, record)
    assert not evaluator.active and math.isnan(record.response_length) and record.evaluation == {}


def test_backend_evaluates_held_out_prompts_or_a_prompt_file(models, tmp_path):
    """The evaluation prompts are the held-out ones (never seed, never fresh) unless a file names them."""
    from preference_data.spa.hf import HFBackend
    from preference_data.spa.hf_config import spa_hf_config_from_dict

    tiny_hf.write_jsonl(tmp_path / "pairs.jsonl", tiny_hf.review_pairs(30))
    raw = {"model": str(models["init"]), "judge": {"reward_model": str(models["rm"])}, "train": {"device": "cpu"},
           "data": {"dataset": str(tmp_path / "pairs.jsonl"), "seed_pairs": 6, "prompts_per_iteration": [4],
                    "eval_prompts": 3}}
    backend = HFBackend(spa_hf_config_from_dict(raw))
    assert backend.evaluator.active and backend.evaluator.reward_model == str(models["rm"])
    held = backend.evaluator.prompts
    assert held == backend.eval_prompts and len(held) == 3
    train_rows = backend.seed_rows + backend.fresh
    assert len(train_rows) + len(held) == 30            # seed + fresh + held-out partition the rows
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    raw["evaluation"] = {"prompt_file": str(tmp_path / "eval.jsonl"), "prompts": 4}
    assert HFBackend(spa_hf_config_from_dict(raw)).evaluator.prompts == PROMPTS[:4]


# ---- slow: the SPA loop end to end ----------------------------------------------------------------------

@pytest.mark.slow
def test_spa_hf_rounds_report_reward_and_judge_win_rates(models, tmp_path, monkeypatch):
    """Seed DPO + 2 rounds on tiny stand-ins: every stage reports RM and judge win rates vs pi_init
    computed from that stage's saved policy; rounds train on fresh pairs only; `prefdisco spa --json`."""
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from typer.testing import CliRunner

    from discovery.commands import app
    from preference_data.spa.hf import run_spa_hf

    monkeypatch.setenv("PREFDISCO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    tiny_hf.write_jsonl(tmp_path / "pairs.jsonl", tiny_hf.review_pairs(40))
    with double.ScriptedOpenAIServer(default=tiny_hf.sentiment_judge) as server:
        raw = {"model": str(models["init"]), "seed": 2,
               "data": {"dataset": str(tmp_path / "pairs.jsonl"), "seed_pairs": 12, "prompts_per_iteration": [8, 8],
                        "eval_prompts": 5},
               "sampling": {"temperature": 1.0, "max_new_tokens": 5},
               "train": {"learning_rate": 5e-2, "beta": 0.5, "batch_size": 8, "gradient_accumulation_steps": 1,
                         "device": "cpu", "lr_scheduler": "constant", "warmup": 0, "seed_epochs": 2},
               "evaluation": {"reward": {"model": str(models["rm"])}, "judge": _judge(server),
                              "generation": {"max_new_tokens": 6}}}
        result = run_spa_hf({**raw, "out_dir": str(tmp_path / "a"), "save_policies": True})
        assert [s.iteration for s in result.stages] == [0, 1, 2]
        assert [s.pairs == s.new_pairs for s in result.stages[1:]] == [True, True]   # no seed replay
        rows = [json.loads(line) for line in (tmp_path / "a" / "eval_generations.jsonl").read_text().splitlines()]
        tokenizer = AutoTokenizer.from_pretrained(models["init"])
        for stage in result.stages:
            for name in ("reward_model_win_rate", "judge_win_rate"):
                assert 0.0 <= getattr(stage, name) <= 1.0, (stage.iteration, name)
            mine = [r for r in rows if r["stage"] == stage.iteration]
            assert len(mine) == stage.evaluation["prompts"] == 5
            policy = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / f"policy_{stage.iteration}").eval()
            assert [r["response"] for r in mine] == [_greedy(policy, tokenizer, r["prompt"], 6)[0] for r in mine]
            expected = [_expected_judge_score(r["response"], r["init_response"]) for r in mine]
            assert stage.judge_win_rate == pytest.approx(sum(expected) / len(expected))
            wins = [1.0 if r["reward"] > r["init_reward"] else 0.0 if r["reward"] < r["init_reward"] else 0.5
                    for r in mine]
            assert stage.reward_model_win_rate == pytest.approx(sum(wins) / len(wins))
            assert stage.response_length == pytest.approx(sum(r["response_tokens"] for r in mine) / 5)
        assert all(a["init_response"] == b["init_response"] for a, b in zip(rows[:5], rows[5:10]))  # pi_init once
        assert any(r["response"] != r["init_response"] for r in rows)    # training moved the answers
        assert result.reference_length == result.stages[0].init_response_length == pytest.approx(
            sum(r["init_response_tokens"] for r in rows[:5]) / 5)
        stored = json.loads((tmp_path / "a" / "stages.json").read_text())["stages"]
        assert [s["judge_win_rate"] for s in stored] == [s.judge_win_rate for s in result.stages]

        path = tmp_path / "spa_hf.yaml"
        path.write_text(yaml.safe_dump({"backend": "hf", **raw}))
        shown = CliRunner().invoke(app, ["spa", str(path), "--json"])
        assert shown.exit_code == 0, shown.output
        stages = json.loads(shown.stdout)["stages"]          # TRL's logs go to stderr
        assert [s["judge_win_rate"] for s in stages] == [s.judge_win_rate for s in result.stages]   # deterministic
        assert [s["reward_model_win_rate"] for s in stages] == [s.reward_model_win_rate for s in result.stages]
        assert all(s["response_length"] is not None for s in stages)
