"""External judges for the SPA comparison: an LLM judge over the OpenAI protocol (a test double
transport) and a local transformers reward model (tiny, random init, built offline)."""

from __future__ import annotations

import re

import pytest
import torch

from preference_data.spa.config import SPAJudgeConfig
from preference_data.spa.judges import LLMJudge, PairBatch, RewardModelJudge, decide, make_judge


def _chat_double(reply, seen: list) -> "object":
    """TEST DOUBLE of an OpenAI-compatible chat endpoint: an httpx transport that answers
    POST /v1/chat/completions with the real response schema; ``reply(request) -> text``.
    The real ``openai`` client talks to it, so request building and parsing are exercised."""
    import json

    import httpx
    import openai

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        assert request.url.path.endswith("/chat/completions")
        return httpx.Response(200, json={
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": reply(body)}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    return openai.OpenAI(base_url="http://judge.test/v1", api_key="test",
                         http_client=httpx.Client(transport=httpx.MockTransport(handle)))


def _prefers_great(request: dict) -> str:
    """Test double policy: picks the response containing 'great', else says TIE."""
    text = request["messages"][-1]["content"]
    a = re.search(r"\[Response A\]\n(.*?)\n\n\[Response B\]", text, re.S).group(1)
    b = re.search(r"\[Response B\]\n(.*?)\n\nWhich", text, re.S).group(1)
    if "great" in a and "great" not in b:
        return "A"
    if "great" in b and "great" not in a:
        return "B"
    return "TIE"


def test_llm_judge_asks_both_orders_and_maps_to_probabilities():
    seen: list = []
    client = _chat_double(_prefers_great, seen)
    cfg = SPAJudgeConfig(kind="llm", llm_model="judge-double")
    judge = make_judge(cfg, beta=0.1, label_temperature=0.1, generator=torch.Generator(), client=client)
    assert isinstance(judge, LLMJudge)
    batch = PairBatch(prompts=["the plot was"] * 3, a=["great .", "dull .", "fine ."],
                      b=["dull .", "great !", "ok ."])
    p = judge.prob_a(batch)
    assert p.tolist() == [1.0, 0.0, 0.5]
    assert len(seen) == 6                          # position-swapped: two questions per pair
    assert {r["model"] for r in seen} == {"judge-double"}
    assert decide(p)[0].tolist() == [True, False, True]


@pytest.mark.slow  # imports BERT from transformers (~5-20 s on a shared CPU)
def test_reward_model_judge_is_bradley_terry_on_model_scores(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "the", "plot", "was", "great", "dull", ".", "!"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=1, pad_token_id=0))
    fast.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    judge = RewardModelJudge(str(tmp_path), batch_size=2)
    prompts, a, b = ["the plot was"] * 3, ["great .", "dull !", "great !"], ["dull .", "great .", "dull ."]
    scores_a, scores_b = judge.scores(prompts, a), judge.scores(prompts, b)
    p = judge.prob_a(PairBatch(prompts=prompts, a=a, b=b))
    assert torch.allclose(p, torch.sigmoid(scores_a - scores_b))
    swapped = judge.prob_a(PairBatch(prompts=prompts, a=b, b=a))
    assert torch.allclose(p + swapped, torch.ones(3, dtype=torch.float64))
