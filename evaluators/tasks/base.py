"""What a text task must provide to the tinylm tier."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any


class TextTask(ABC):
    """A prompt distribution, an SFT corpus generator and a gold reward over word tokens."""

    name: str = "task"
    prompt_len: int = 1                 # every prompt has exactly this many tokens
    max_response_len: int = 8           # response tokens (EOS excluded)
    reward_range: tuple[float, float] = (0.0, 1.0)   # used to normalise reward gains
    label_temperature: float = 0.1      # Bradley-Terry temperature when labelling pairs

    @abstractmethod
    def vocabulary(self) -> list[str]:
        """Every word a prompt or a response may contain (special tokens excluded)."""

    @abstractmethod
    def sample_prompt(self, rng: random.Random) -> list[str]:
        """One prompt of exactly ``prompt_len`` words."""

    @abstractmethod
    def sample_sft_response(self, prompt: list[str], rng: random.Random) -> list[str]:
        """One demonstration response; the SFT corpus is of mixed quality on purpose so that the
        reference policy leaves room for preference training to improve the gold reward."""

    @abstractmethod
    def gold_reward(self, prompt: list[str], response: list[str]) -> float:
        """The programmatic ground truth the preference labels are drawn from."""

    def params(self) -> dict[str, Any]:
        """Everything that changes the task's data (goes into the reference cache key)."""
        return {}
