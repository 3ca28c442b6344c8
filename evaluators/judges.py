"""Pairwise LLM judge over any OpenAI-compatible chat endpoint, with position swapping.

LLM judges favour whichever response they read first (or second); asking each question twice with
the two responses swapped and averaging cancels that bias to first order. A pair scores 1 when the
policy wins in both orders, 0 when it loses in both, and 1/2 otherwise (tie, unparseable, or a
verdict that flipped with the order).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from evaluators.typed_config import Config

Verdict = Literal["A", "B", "tie"]

JUDGE_SYSTEM = "You are an impartial judge comparing two responses from AI assistants."
JUDGE_TEMPLATE = """Compare the two responses to the prompt below. Criterion: {criterion}

[Prompt]
{prompt}

[Response A]
{response_a}

[Response B]
{response_b}

Which response is better under the criterion? Reply with exactly one word: A, B, or TIE."""

_VERDICT = re.compile(r"\b(A|B|TIE)\b", re.IGNORECASE)


@dataclass
class LLMJudgeConfig(Config):
    """Where the judge lives and how it is asked."""

    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: the openai client's default endpoint
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (never the key itself)
    criterion: str = "which response is more helpful, correct and harmless"
    temperature: float = 0.0
    max_tokens: int = 8
    timeout_s: float = 60.0
    max_retries: int = 3  # the openai client's own retry with backoff (429, 5xx, timeouts)
    concurrency: int = 4  # requests in flight


def parse_verdict(text: str) -> Verdict | None:
    """The first A / B / TIE word in the reply, or None when there is none."""
    match = _VERDICT.search(text or "")
    if match is None:
        return None
    word = match.group(1).upper()
    return "tie" if word == "TIE" else word  # type: ignore[return-value]


@dataclass
class JudgeResult:
    """Position-swapped pairwise comparison of policy responses against reference responses."""

    win_rate: float  # mean pair score in [0, 1]; 0.5 = no difference
    win_rate_se: float
    n: int
    wins: int  # policy preferred in both orders
    losses: int  # reference preferred in both orders
    ties: int  # everything else
    order_consistency: float  # fraction of pairs whose verdict did not flip with the order
    first_position_rate: float  # fraction of decisive verdicts that chose position A (bias gauge)
    invalid: int  # replies with no parseable verdict
    prompt_tokens: int = 0
    completion_tokens: int = 0
    scores: list[float] = field(default_factory=list)
    requests: int = 0  # calls sent to the endpoint
    cache_hits: int = 0  # verdicts read from the judge cache instead

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JudgeCache:
    """Judge replies by request (model, endpoint, messages, sampling settings), in one SQLite file:
    a campaign asks the same question once, however often a run is re-judged or resumed."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, reply: str) -> None:
        with self._lock, self._connect() as db:
            db.execute("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", (key, reply))


class PairwiseJudge:
    """Asks an OpenAI-compatible chat model which of two responses is better (optionally cached)."""

    def __init__(self, config: LLMJudgeConfig, client: Any | None = None, cache: JudgeCache | None = None):
        self.config = config
        self.cache = cache
        self.requests = 0
        self.cache_hits = 0
        self._count_lock = threading.Lock()
        if client is None:
            import openai

            api_key = os.environ.get(config.api_key_env)
            if not api_key and config.base_url is None:
                raise ValueError(f"judge needs an API key in ${config.api_key_env} (or a base_url for a local server)")
            client = openai.OpenAI(
                base_url=config.base_url, api_key=api_key or "unused",
                timeout=config.timeout_s, max_retries=config.max_retries,
            )
        self.client = client
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def verdict(self, prompt: str, response_a: str, response_b: str) -> Verdict | None:
        message = JUDGE_TEMPLATE.format(
            criterion=self.config.criterion, prompt=prompt, response_a=response_a, response_b=response_b
        )
        request = {"model": self.config.model,
                   "messages": [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": message}],
                   "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        key = JudgeCache.key({**request, "base_url": self.config.base_url}) if self.cache is not None else ""
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            with self._count_lock:
                self.cache_hits += 1
            return parse_verdict(cached)
        completion = self.client.chat.completions.create(**request)
        reply = completion.choices[0].message.content or ""
        with self._count_lock:
            self.requests += 1
            if completion.usage is not None:
                self.prompt_tokens += completion.usage.prompt_tokens
                self.completion_tokens += completion.usage.completion_tokens
        if self.cache is not None:
            self.cache.put(key, reply)
        return parse_verdict(reply)

    def _both_orders(self, item: tuple[str, str, str]) -> tuple[Verdict | None, Verdict | None]:
        prompt, policy, reference = item
        return self.verdict(prompt, policy, reference), self.verdict(prompt, reference, policy)

    def compare(self, prompts: list[str], policy: list[str], reference: list[str]) -> JudgeResult:
        """Judge every (prompt, policy response, reference response) triple in both orders."""
        if not (len(prompts) == len(policy) == len(reference)) or not prompts:
            raise ValueError("compare needs equally long, non-empty lists of prompts and responses")
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            verdicts = list(pool.map(self._both_orders, zip(prompts, policy, reference)))
        scores: list[float] = []
        wins = losses = consistent = invalid = first = decisive = 0
        for policy_first, policy_second in verdicts:
            # Outcome for the policy: 1 win, 0 loss, 0.5 tie/invalid. Policy is A first, then B.
            outcome_1 = {"A": 1.0, "B": 0.0}.get(policy_first or "", 0.5)
            outcome_2 = {"B": 1.0, "A": 0.0}.get(policy_second or "", 0.5)
            scores.append((outcome_1 + outcome_2) / 2)
            wins += outcome_1 == outcome_2 == 1.0
            losses += outcome_1 == outcome_2 == 0.0
            consistent += outcome_1 == outcome_2
            invalid += (policy_first is None) + (policy_second is None)
            for v in (policy_first, policy_second):
                if v in ("A", "B"):
                    decisive += 1
                    first += v == "A"
        n = len(scores)
        mean = sum(scores) / n
        var = sum((s - mean) ** 2 for s in scores) / (n - 1) if n > 1 else 0.0
        return JudgeResult(
            win_rate=mean, win_rate_se=math.sqrt(var / n), n=n, wins=wins, losses=losses,
            ties=n - wins - losses, order_consistency=consistent / n,
            first_position_rate=first / decisive if decisive else float("nan"), invalid=invalid,
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, scores=scores,
            requests=self.requests, cache_hits=self.cache_hits,
        )
