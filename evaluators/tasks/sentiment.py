"""Controlled-sentiment generation: the offline analogue of the DPO paper's IMDb experiment.

Prompts open a short review ("the plot was"); demonstrations continue it from a grammar over a
sentiment lexicon (positive, negative and neutral adjectives, intensifiers, negation, "and" /
"but" clauses) chosen with no preference for either polarity, so the SFT reference writes
reviews of mixed sentiment. Gold reward = VADER compound score of the whole review (times
``polarity``: -1 asks for negative reviews), in [-1, 1]. VADER's handling of negation, "but" and
intensifiers gives the reward a non-trivial shape.

``length=L`` makes every demonstration exactly L words of running review (clauses and new
sentences, cut after L words), like IMDb continuations generated with a fixed number of new
tokens: the response length then carries no preference signal, so a policy cannot win (or run
off the end of the response window) by learning to stop later.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from evaluators.tasks.base import TextTask

DETERMINERS = ("the", "this")
SUBJECTS = ("plot", "acting", "ending", "music", "story", "cast", "script", "pacing")
VERBS = ("was", "is")
POSITIVE = ("good", "great", "excellent", "wonderful", "brilliant", "fun", "lovely", "beautiful",
            "enjoyable", "superb", "perfect", "charming")
NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "horrible", "weak", "poor", "ugly",
            "stupid", "painful", "strange")
NEUTRAL = ("long", "short", "slow", "quiet", "simple", "different", "ordinary", "plain")
INTENSIFIERS = ("very", "really", "extremely", "quite", "so")
CONJUNCTIONS = ("and", "but")
ENDINGS = (".", "!")


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=200_000)
def vader_compound(text: str) -> float:
    return float(_analyzer().polarity_scores(text)["compound"])


class SentimentTask(TextTask):
    name = "sentiment"
    prompt_len = 3
    max_response_len = 8
    reward_range = (-1.0, 1.0)
    label_temperature = 0.1

    def __init__(self, polarity: int = 1, label_temperature: float = 0.1, length: int | None = None) -> None:
        if polarity not in (1, -1):
            raise ValueError("sentiment polarity must be 1 or -1")
        if length is not None and not 2 <= int(length) <= 16:
            raise ValueError("sentiment length must be between 2 and 16 words (or unset)")
        self.polarity = polarity
        self.label_temperature = float(label_temperature)
        self.length = None if length is None else int(length)
        if self.length is not None:
            self.max_response_len = self.length

    def params(self) -> dict[str, Any]:
        return {"polarity": self.polarity} | ({"length": self.length} if self.length is not None else {})

    def vocabulary(self) -> list[str]:
        words = (DETERMINERS + SUBJECTS + VERBS + POSITIVE + NEGATIVE + NEUTRAL + INTENSIFIERS
                 + CONJUNCTIONS + ENDINGS + ("not",))
        return list(dict.fromkeys(words))

    def sample_prompt(self, rng: random.Random) -> list[str]:
        return [rng.choice(DETERMINERS), rng.choice(SUBJECTS), rng.choice(VERBS)]

    def _phrase(self, rng: random.Random) -> list[str]:
        words = []
        if rng.random() < 0.15:
            words.append("not")
        if rng.random() < 0.4:
            words.append(rng.choice(INTENSIFIERS))
        words.append(rng.choice(rng.choice((POSITIVE, NEGATIVE, NEUTRAL))))
        return words

    def _clause(self, rng: random.Random) -> list[str]:
        words = self._phrase(rng)
        if rng.random() < 0.5:
            words += [rng.choice(CONJUNCTIONS)] + self._phrase(rng)
        return words + [rng.choice(ENDINGS)]

    def sample_sft_response(self, prompt: list[str], rng: random.Random) -> list[str]:
        words = self._clause(rng)
        if self.length is None:
            return words
        while len(words) < self.length:
            words += self.sample_prompt(rng) + self._clause(rng)
        return words[: self.length]

    def gold_reward(self, prompt: list[str], response: list[str]) -> float:
        return self.polarity * vader_compound(" ".join(prompt + response))
