"""Sorting: write the prompt's digits in ascending order. Structurally unlike sentiment: the
reward is exact, positional and prompt-dependent, so no loss wins by exploiting one reward shape.

Demonstrations are correct sorts with 0-3 random corruptions (swaps or wrong digits), so the SFT
reference is a mediocre sorter. Gold reward = fraction of positions that hold the right digit,
divided by max(n, response length) so that padding with extra digits is not free; in [0, 1].
"""

from __future__ import annotations

import random
from typing import Any

from evaluators.tasks.base import TextTask


class SortingTask(TextTask):
    name = "sorting"
    reward_range = (0.0, 1.0)

    def __init__(self, n: int = 5, digits: int = 10, label_temperature: float = 0.1) -> None:
        if not (2 <= n <= 12 and 2 <= digits <= 10):
            raise ValueError("sorting needs 2 <= n <= 12 and 2 <= digits <= 10")
        self.n = n
        self.digits = digits
        self.prompt_len = n
        self.max_response_len = n + 2
        self.label_temperature = float(label_temperature)

    def params(self) -> dict[str, Any]:
        return {"n": self.n, "digits": self.digits}

    def vocabulary(self) -> list[str]:
        return [str(d) for d in range(self.digits)]

    def sample_prompt(self, rng: random.Random) -> list[str]:
        return [str(rng.randrange(self.digits)) for _ in range(self.n)]

    def sample_sft_response(self, prompt: list[str], rng: random.Random) -> list[str]:
        out = sorted(prompt, key=int)
        for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
            i = rng.randrange(self.n)
            if rng.random() < 0.5:
                j = rng.randrange(self.n)
                out[i], out[j] = out[j], out[i]
            else:
                out[i] = str(rng.randrange(self.digits))
        return out

    def gold_reward(self, prompt: list[str], response: list[str]) -> float:
        target = sorted(prompt, key=int)
        hits = sum(1 for a, b in zip(response, target) if a == b)
        return hits / max(self.n, len(response))
