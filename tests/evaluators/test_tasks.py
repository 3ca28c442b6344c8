from __future__ import annotations

import random

import pytest

from evaluators.tasks import TASKS, make_task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_tasks_are_deterministic_and_in_vocabulary(name: str) -> None:
    task = make_task(name)
    vocab = set(task.vocabulary())
    draws = []
    for _ in range(2):
        rng = random.Random(7)
        draws.append([(p, task.sample_sft_response(p, rng))
                      for p in (task.sample_prompt(rng) for _ in range(50))])
    assert draws[0] == draws[1]
    lo, hi = task.reward_range
    for prompt, response in draws[0]:
        assert len(prompt) == task.prompt_len
        assert set(prompt) | set(response) <= vocab
        assert len(response) <= task.max_response_len
        assert lo <= task.gold_reward(prompt, response) <= hi


def test_sentiment_gold_reward_is_vader() -> None:
    task = make_task("sentiment")
    prompt = ["the", "plot", "was"]
    great = task.gold_reward(prompt, ["really", "great", "!"])
    awful = task.gold_reward(prompt, ["awful", "."])
    assert great > 0.5 and awful < -0.3
    assert task.gold_reward(prompt, ["not", "good", "."]) < task.gold_reward(prompt, ["good", "."])
    negative = make_task("sentiment", polarity=-1)
    assert negative.gold_reward(prompt, ["awful", "."]) == -awful


def test_sorting_gold_reward_is_exact() -> None:
    task = make_task("sorting", n=4)
    assert task.gold_reward(["3", "1", "2", "1"], ["1", "1", "2", "3"]) == 1.0
    assert task.gold_reward(["3", "1", "2", "1"], ["1", "1", "3", "2"]) == 0.5
    assert task.gold_reward(["3", "1", "2", "1"], ["1", "1", "2", "3", "3", "3"]) == pytest.approx(4 / 6)
    assert task.gold_reward(["3", "1", "2", "1"], []) == 0.0


def test_unknown_task() -> None:
    with pytest.raises(ValueError, match="known tasks"):
        make_task("chess")
