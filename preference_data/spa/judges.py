"""Who decides which of two sampled responses is preferred.

SPA's own judge is the *implicit reward* of the model being improved (paper Sec. 4.1):
``r(x, y) = beta * log(pi(y|x) / pi_init(y|x))`` with pi the current policy and pi_init the SFT
model, and ``P(y1 > y2) = sigmoid(r(x, y1) - r(x, y2))`` (Bradley-Terry); the higher reward is
chosen. The other judges are the paper's points of comparison: the gold reward (an oracle, the
analogue of labelling everything by hand), an external reward model, and an LLM-as-judge.

Every judge maps a ``PairBatch`` to ``P(a > b)`` per pair; ``decide`` turns that into labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class PairBatch:
    """Two responses per prompt, as text, plus whatever numbers a judge may need."""

    prompts: list[str]
    a: list[str]
    b: list[str]
    policy_a: torch.Tensor | None = None   # [N] summed log-probs under the current policy
    policy_b: torch.Tensor | None = None
    init_a: torch.Tensor | None = None     # [N] summed log-probs under pi_init (the SFT model)
    init_b: torch.Tensor | None = None
    gold_a: torch.Tensor | None = None     # [N] gold rewards (gold judge and audit only)
    gold_b: torch.Tensor | None = None
    len_a: torch.Tensor | None = None      # [N] response lengths in tokens (length-aware judges)
    len_b: torch.Tensor | None = None


class Judge(Protocol):
    name: str

    def prob_a(self, batch: PairBatch) -> torch.Tensor:
        """[N] float64 probability that response a is preferred to response b."""


def implicit_reward(policy_logps: torch.Tensor, init_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """beta * log(pi(y|x) / pi_init(y|x)) from summed sequence log-probs."""
    return beta * (policy_logps.double() - init_logps.double())


def bt_probability(reward_a: torch.Tensor, reward_b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """P(a > b) = sigmoid((r_a - r_b) / temperature)."""
    return torch.sigmoid((reward_a.double() - reward_b.double()) / temperature)


def decide(prob_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_wins [N] bool, label probability P(chosen > rejected) [N] >= 0.5); exact ties go to a."""
    a_wins = prob_a >= 0.5
    return a_wins, torch.where(a_wins, prob_a, 1.0 - prob_a)


def judge_pairs(judge: Judge, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_wins, P(chosen > rejected)): the judge's own ``labels`` when it samples, else ``decide``."""
    labels = getattr(judge, "labels", None)
    return labels(batch) if callable(labels) else decide(judge.prob_a(batch))


def length_slope(rewards: torch.Tensor, lengths: torch.Tensor) -> float:
    """Least-squares slope of reward on length (0 when every length is the same)."""
    x, y = lengths.double(), rewards.double()
    var = ((x - x.mean()) ** 2).sum()
    return float(((x - x.mean()) * (y - y.mean())).sum() / var) if float(var) > 0 else 0.0


class ImplicitRewardJudge:
    """SPA's direct preference judgment from the policy's own log-probs.

    ``length_control`` (ours, not the paper's) removes length from the comparison: the measured
    failure at small scale is verbosity creep, where the summed log-ratio favours the longer of two
    responses round after round. ``per_token`` divides each reward by its response's length;
    ``regress`` subtracts slope * length, the slope fitted by least squares over all responses of
    the batch (the idea behind length-controlled win rates)."""

    name = "implicit"

    def __init__(self, beta: float, length_control: str = "none") -> None:
        if length_control not in ("none", "per_token", "regress"):
            raise ValueError(f"length_control must be none, per_token or regress, not {length_control!r}")
        self.beta = beta
        self.length_control = length_control
        self.last_slope: float | None = None

    def rewards(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_a, r_b) after the length control."""
        if batch.policy_a is None or batch.init_a is None or batch.policy_b is None or batch.init_b is None:
            raise ValueError("the implicit-reward judge needs policy and pi_init log-probs of both responses")
        ra = implicit_reward(batch.policy_a, batch.init_a, self.beta)
        rb = implicit_reward(batch.policy_b, batch.init_b, self.beta)
        if self.length_control == "none":
            return ra, rb
        if batch.len_a is None or batch.len_b is None:
            raise ValueError("a length-controlled implicit judge needs the response lengths (len_a, len_b)")
        la, lb = batch.len_a.double().clamp(min=1), batch.len_b.double().clamp(min=1)
        if self.length_control == "per_token":
            return ra / la, rb / lb
        slope = length_slope(torch.cat([ra, rb]), torch.cat([la, lb]))
        self.last_slope = slope
        return ra - slope * la, rb - slope * lb

    def prob_a(self, batch: PairBatch) -> torch.Tensor:
        return bt_probability(*self.rewards(batch))


class GoldRewardJudge:
    """The task's programmatic reward: Bradley-Terry at the task's label temperature, sampled like
    the gold seed (``sample=True``) or its most likely label (``sample=False``)."""

    name = "gold"

    def __init__(self, temperature: float, sample: bool, generator: torch.Generator) -> None:
        self.temperature = temperature
        self.sample = sample
        self.generator = generator

    def prob_a(self, batch: PairBatch) -> torch.Tensor:
        if batch.gold_a is None or batch.gold_b is None:
            raise ValueError("the gold judge needs gold rewards of both responses")
        return bt_probability(batch.gold_a, batch.gold_b, max(self.temperature, 1e-8))

    def labels(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_wins, P(chosen > rejected)); a sampled label keeps its own Bradley-Terry
        probability, which is below 1/2 when the less likely outcome was drawn."""
        p = self.prob_a(batch)
        if not self.sample:
            return decide(p)
        a_wins = torch.rand(p.shape, generator=self.generator, dtype=torch.float64) < p
        return a_wins, torch.where(a_wins, p, 1 - p)


class RewardModelJudge:
    """An external reward model: a local ``transformers`` sequence-classification checkpoint whose
    first logit scores ``prompt + " " + response`` (PairRM-style comparison in the paper)."""

    name = "reward_model"

    def __init__(self, path: str, batch_size: int = 64, device: str = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size
        self.device = device

    @torch.no_grad()
    def scores(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [f"{p} {r}" for p, r in zip(prompts[start:start + self.batch_size],
                                                responses[start:start + self.batch_size])]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)
            out.append(self.model(**enc).logits[:, 0].double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def prob_a(self, batch: PairBatch) -> torch.Tensor:
        return bt_probability(self.scores(batch.prompts, batch.a), self.scores(batch.prompts, batch.b))


class LLMJudge:
    """LLM-as-judge over an OpenAI-compatible endpoint (``evaluators.judges.PairwiseJudge``), asked
    in both orders; P(a > b) = mean outcome for a over the two orders (1 win, 1/2 tie/unparsed, 0 loss)."""

    name = "llm"

    def __init__(self, config: Any, client: Any | None = None, concurrency: int = 4) -> None:
        from evaluators.judges import PairwiseJudge

        self.judge = PairwiseJudge(config, client=client)
        self.concurrency = concurrency

    def _pair(self, item: tuple[str, str, str]) -> float:
        prompt, a, b = item
        first = {"A": 1.0, "B": 0.0}.get(self.judge.verdict(prompt, a, b) or "", 0.5)
        second = {"B": 1.0, "A": 0.0}.get(self.judge.verdict(prompt, b, a) or "", 0.5)
        return (first + second) / 2

    def prob_a(self, batch: PairBatch) -> torch.Tensor:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            probs = list(pool.map(self._pair, zip(batch.prompts, batch.a, batch.b)))
        return torch.tensor(probs, dtype=torch.float64)


def make_judge(cfg: Any, *, beta: float, label_temperature: float, generator: torch.Generator,
               device: str = "cpu", client: Any | None = None) -> Judge:
    """The judge named by ``cfg.kind`` (a ``preference_data.spa.config.SPAJudgeConfig``)."""
    if cfg.kind == "implicit":
        return ImplicitRewardJudge(beta, getattr(cfg, "length_control", "none"))
    if cfg.kind == "gold":
        return GoldRewardJudge(label_temperature, cfg.gold_sample, generator)
    if cfg.kind == "reward_model":
        return RewardModelJudge(cfg.reward_model, cfg.reward_batch_size, device)
    if cfg.kind == "llm":
        from evaluators.judges import LLMJudgeConfig

        llm = LLMJudgeConfig(model=cfg.llm_model, base_url=cfg.llm_base_url, api_key_env=cfg.llm_api_key_env,
                        criterion=cfg.llm_criterion, concurrency=cfg.llm_concurrency)
        return LLMJudge(llm, client=client, concurrency=cfg.llm_concurrency)
    raise ValueError(f"unknown judge kind {cfg.kind!r}")
