"""The `hf` tier: preference data loading, the position-swapped LLM judge, and an end-to-end run.

The judge talks over real HTTP, through the real `openai` client, to the loopback TEST DOUBLE in
tests/discovery/openai_test_server.py, whose answers come from a rule the test states (count
positive minus negative words). The end-to-end run trains a tiny random-init GPT-2 saved to a temp
dir (word-level tokenizer trained offline) on a tiny local JSONL file.
"""

from __future__ import annotations

import json
import math

import pytest

from evaluators.hf import HFTierConfig, hf_job, load_preference_dataset
from evaluators.judges import LLMJudgeConfig, PairwiseJudge, parse_verdict
from tests import tiny_hf
from tests.discovery import openai_test_server as double


def _judge(server, **overrides) -> PairwiseJudge:
    settings = dict(model="judge-double", base_url=server.base_url, api_key_env="PREFDISCO_TEST_NO_KEY",
                    max_retries=2, concurrency=2)
    settings.update(overrides)
    return PairwiseJudge(LLMJudgeConfig(**settings))


# ---- fast ----------------------------------------------------------------------------------------

def test_parse_verdict():
    assert parse_verdict("A") == "A"
    assert parse_verdict("  b.") == "B"
    assert parse_verdict("Tie") == "tie"
    assert parse_verdict("Response B is better") == "B"
    assert parse_verdict("neither") is None


def test_position_swap_cancels_a_first_position_bias():
    prompts, policy, reference = ["p1", "p2", "p3"], ["good", "bad", "good"], ["bad", "good", "good"]
    with double.ScriptedOpenAIServer(default="A") as server:  # always picks whatever comes first
        result = _judge(server).compare(prompts, policy, reference)
    assert result.win_rate == 0.5 and result.ties == 3
    assert result.order_consistency == 0.0 and result.first_position_rate == 1.0
    assert len(server.requests) == 6


def test_judge_scores_each_pair_in_both_orders():
    prompts = ["review : it was"] * 4
    policy = ["good and fun", "bad", "good", "lovely"]
    reference = ["bad and dull", "good", "good", "dull"]
    with double.ScriptedOpenAIServer(default=tiny_hf.sentiment_judge) as server:
        result = _judge(server).compare(prompts, policy, reference)
    assert result.scores == [1.0, 0.0, 0.5, 1.0]
    assert (result.wins, result.losses, result.ties) == (2, 1, 1)
    assert result.win_rate == pytest.approx(0.625)
    assert result.order_consistency == 1.0 and result.invalid == 0
    seen = {tiny_hf.judged_responses(r) for r in server.requests}
    assert ("good and fun", "bad and dull") in seen and ("bad and dull", "good and fun") in seen
    assert result.prompt_tokens > 0 and all(r["model"] == "judge-double" for r in server.requests)


def test_judge_retries_rate_limits_and_counts_unparseable_replies():
    script = [double.Status(429, retry_after=0), "I cannot decide"]
    with double.ScriptedOpenAIServer(script=script, default="B") as server:
        result = _judge(server, concurrency=1).compare(["p"], ["x"], ["y"])
    assert server.answers[0] == 429 and len(server.requests) == 3
    assert result.invalid == 1 and result.scores == [0.75]  # unparseable 0.5, then policy (B) wins


def test_apply_judge_scores_a_finished_run_outside_the_sandbox():
    from evaluators.hf import apply_judge

    run = {"tier": "hf", "win_rate": None, "extra": {"generations": [
        {"prompt": "review : it was", "policy": "good fun", "reference": "dull"},
        {"prompt": "review : it is", "policy": "bad", "reference": "bad"}]}}
    with double.ScriptedOpenAIServer(default=tiny_hf.sentiment_judge) as server:
        judged = apply_judge(run, {"model": "judge-double", "base_url": server.base_url,
                                   "api_key_env": "PREFDISCO_TEST_NO_KEY"})
    assert judged["win_rate"] == pytest.approx(0.75) and run["win_rate"] is None
    assert judged["extra"]["judge"]["n"] == 2 and judged["extra"]["judge"]["model"] == "judge-double"


def test_load_preference_dataset_formats(tmp_path):
    rows = tiny_hf.review_pairs(5)
    standard = load_preference_dataset(str(tiny_hf.write_jsonl(tmp_path / "pairs.jsonl", rows)))
    assert standard.column_names == ["prompt", "chosen", "rejected"] and len(standard) == 5
    standard.to_parquet(str(tmp_path / "pairs.parquet"))
    assert load_preference_dataset(str(tmp_path / "pairs.parquet"))[0] == rows[0]
    chat = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}], "weight": 2.0} for r in rows]
    conversational = load_preference_dataset(str(tiny_hf.write_jsonl(tmp_path / "chat.jsonl", chat)))
    assert conversational[0]["prompt"][0]["role"] == "user" and conversational[0]["weight"] == 2.0
    implicit = [{"chosen": c["prompt"] + c["chosen"], "rejected": c["prompt"] + c["rejected"]} for c in chat]
    extracted = load_preference_dataset(str(tiny_hf.write_jsonl(tmp_path / "implicit.jsonl", implicit)))
    assert extracted[0]["prompt"] == chat[0]["prompt"] and extracted[0]["chosen"] == chat[0]["chosen"]
    tiny_hf.write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "x", "answer": "y"}])
    with pytest.raises(ValueError, match="lacks columns"):
        load_preference_dataset(str(tmp_path / "bad.jsonl"))


def test_config_from_dict_rejects_typos_and_builds_the_judge():
    config = HFTierConfig.from_dict({"model": "m", "dataset": "d", "judge": {"model": "j", "base_url": "http://x"}})
    assert isinstance(config.judge, LLMJudgeConfig) and config.judge.model == "j"
    with pytest.raises(ValueError, match="learning_rat"):
        HFTierConfig.from_dict({"learning_rat": 1e-3})


# ---- slow: end to end --------------------------------------------------------------------------------

@pytest.mark.slow
def test_hf_tier_end_to_end_with_reward_model_and_judge(tmp_path):
    model_dir = tiny_hf.build_tiny_gpt2(tmp_path / "policy")
    reward_dir = tiny_hf.build_tiny_reward_model(tmp_path / "reward")
    data = tiny_hf.write_jsonl(tmp_path / "pairs.jsonl", tiny_hf.review_pairs(40))
    with double.ScriptedOpenAIServer(default=tiny_hf.sentiment_judge) as server:
        result = hf_job(
            None, loss_name="dpo",  # the sandbox-job form: no candidate code, a registered baseline
            model=str(model_dir), dataset=str(data), eval_size=8, steps=12, learning_rate=5e-3, beta=0.5,
            batch_size=8, logging_steps=2, device="cpu", max_new_tokens=5, reward_model=str(reward_dir),
            judge={"model": "judge-double", "base_url": server.base_url, "api_key_env": "PREFDISCO_TEST_NO_KEY"},
        )
    json.dumps(result)  # crosses the sandbox boundary as JSON
    assert result["tier"] == "hf" and result["flags"] == []
    assert result["accuracy"] == 1.0  # held-out pairs ranked right by beta*log(pi/pi_ref)
    assert result["extra"]["eval_reward_margin"] > 0
    assert result["curve"][-1] < result["curve"][0]
    assert all(math.isfinite(result[k]) for k in ("gold_reward", "kl", "win_rate"))
    assert math.isfinite(result["extra"]["reference_reward"]) and 0 <= result["extra"]["reward_win_rate"] <= 1

    samples = result["extra"]["generations"]
    assert 2 <= len(samples) <= 8 and len(server.requests) == 2 * len(samples)  # one per unique prompt, x2
    expected = [1.0 if s > r else 0.0 if s < r else 0.5
                for s, r in ((tiny_hf.sentiment(x["policy"]), tiny_hf.sentiment(x["reference"])) for x in samples)]
    assert result["win_rate"] == pytest.approx(sum(expected) / len(expected))
    assert result["extra"]["judge"]["order_consistency"] == 1.0


@pytest.mark.slow
def test_hf_tier_conversational_weighted_with_precomputed_reference(tmp_path):
    from transformers import AutoTokenizer

    from candidate_losses import get_loss
    from evaluators.hf import run_hf_tier

    model_dir = tiny_hf.build_tiny_gpt2(tmp_path / "policy")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}assistant :{% endif %}")
    tokenizer.save_pretrained(model_dir)
    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}], "weight": 1.0 + i % 2}
            for i, r in enumerate(tiny_hf.review_pairs(24))]
    config = HFTierConfig(model=str(model_dir), dataset=str(tiny_hf.write_jsonl(tmp_path / "chat.jsonl", rows)),
                          eval_size=4, steps=6, learning_rate=5e-3, beta=0.5, batch_size=4, logging_steps=2,
                          device="cpu", max_new_tokens=4, precompute_ref_log_probs=True)
    result = run_hf_tier(get_loss("ipo").fn, config)
    assert result["accuracy"] == 1.0 and result["curve"][-1] < result["curve"][0]
    assert result["win_rate"] is None and result["gold_reward"] is None  # no judge, no reward model
    assert math.isfinite(result["kl"]) and result["extra"]["generations"][0]["prompt"].startswith("user: review")
