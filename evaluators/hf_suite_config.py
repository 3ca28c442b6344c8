"""Typed configuration of the ``hf`` suite tier (every knob documented once, with its default).

In a suite YAML group of ``tier: hf`` these are the ``model:``, ``data:``, ``train:``,
``generation:``, ``reward:`` and ``judge:`` mappings; the group's ``seeds`` and ``betas`` give each
run its training seed and beta. ``model``, ``data``, ``generation`` and ``reward`` define the
prepared data (preference pairs, evaluation prompts, the reference's answers and their rewards),
built once per group by the trusted parent and cached; ``train`` and the judge act per candidate.

Hub names are the defaults of the shipped suites; any of them may be a local path (a directory
saved with ``save_pretrained`` / ``save_to_disk``, or a .jsonl/.json/.parquet/.csv file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from evaluators.judges import LLMJudgeConfig
from evaluators.typed_config import Config, build_dataclass


@dataclass(frozen=True)
class HFModel(Config):
    policy: str = ""  # causal LM (hub id or local dir): the policy's initialisation and the frozen reference
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: the device the run is given (GPU when present)
    bf16: bool = True  # bf16 mixed precision on CUDA (ignored on CPU, which trains in float32)


@dataclass(frozen=True)
class HFData(Config):
    """Where preference pairs and evaluation prompts come from."""

    source: Literal["pairs", "generate"] = "pairs"  # pairs: a TRL preference dataset; generate: the
    # reference answers prompts cut from `text_column` and the reward model labels its answers (IMDb protocol)
    dataset: str = ""  # hub id or local path of the training data
    config_name: str | None = None  # hub dataset configuration
    split: str = "train"
    prompt_column: str = "prompt"  # pairs: the prompt column (TRL format: prompt/chosen/rejected)
    text_column: str = "text"  # generate: the column prompts are cut from
    prompt_tokens: tuple[int, int] = (2, 8)  # generate: prompt = the first n tokens, n uniform in this range
    samples_per_prompt: int = 2  # generate: reference answers per prompt; the pair is (best, worst) by reward
    train_pairs: int = 1024  # preference pairs used for training (the first n after a seeded shuffle)
    heldout_pairs: int = 64  # pairs kept out of training for the implicit-reward accuracy
    eval_dataset: str | None = None  # prompts answered after training (None: unused prompts of `dataset`)
    eval_config_name: str | None = None
    eval_split: str = "test"
    eval_prompt_column: str | None = None  # None: prompt_column (pairs) or text_column (generate)
    eval_prompts: int = 64  # prompts answered by the policy and scored
    reference_column: str | None = None  # answers the judge compares against (TL;DR: the human summary;
    # AlpacaEval: the baseline model's output); None: the reference model's own samples
    seed: int = 0  # shuffling and prompt cutting; fixed per group so every candidate sees the same data

    def check(self) -> None:
        lo, hi = self.prompt_tokens
        if not 1 <= lo <= hi:
            raise ValueError("data.prompt_tokens must be [min, max] with 1 <= min <= max")
        if self.samples_per_prompt < 2:
            raise ValueError("data.samples_per_prompt must be >= 2 (a pair needs two answers)")


@dataclass(frozen=True)
class HFTrain(Config):
    """Preference training of each candidate (TRL's DPOTrainer with the loss replaced)."""

    steps: int = 200  # optimiser steps
    lr: float = 1e-6  # AdamW learning rate (`prefdisco evaluate --lr` replaces it)
    batch_size: int = 64  # pairs per optimiser step
    micro_batch: int = 8  # pairs per forward pass and per loss call: batch-coupled losses (AQL, AQFL,
    # DBAQL...) take their batch statistics over this many pairs (DiscoPOP: 2 per device)
    max_length: int | None = 512  # prompt + answer tokens per sequence
    warmup: float = 0.1  # linear warm-up: a fraction of `steps` if < 1, else a number of steps
    lr_scheduler: str = "linear"
    precompute_ref_log_probs: bool = False  # True frees the reference model's memory while training
    logging_steps: int = 10
    diverge_kl: float = 100.0  # sequence KL (nats) above which a run is flagged "diverged"

    def check(self) -> None:
        if self.micro_batch < 1 or self.batch_size % self.micro_batch:
            raise ValueError(f"train.batch_size ({self.batch_size}) must be a multiple of train.micro_batch "
                             f"({self.micro_batch})")


@dataclass(frozen=True)
class HFGeneration(Config):
    """How the policy (and, for `generate` data, the reference) answers prompts."""

    max_new_tokens: int = 64
    min_new_tokens: int = 0  # = max_new_tokens bans early EOS: no policy trades reward for length (IMDb)
    do_sample: bool = True
    temperature: float = 1.0  # 1.0: the Monte-Carlo KL estimate is unbiased
    top_p: float = 1.0
    batch_size: int = 16


@dataclass(frozen=True)
class HFReward(Config):
    """A reward model scoring (prompt + answer); the gold reward of the IMDb protocol."""

    model: str | None = None  # AutoModelForSequenceClassification (hub id or local dir); None: no reward model
    label: int | None = None  # None: logit 0 of a one-logit reward model; n: softmax probability of class n
    scale: float = 1.0  # reward range: a run's gain is (reward - reference reward) / scale
    batch_size: int = 16


@dataclass
class HFJudge(LLMJudgeConfig):
    """An OpenAI-compatible pairwise judge (called by the trusted parent; calls cached and counted)."""

    length_controlled: bool = False  # AlpacaEval-style: regress the verdicts on the length difference
    # and report the win rate at equal length


@dataclass(frozen=True)
class HFSuiteConfig(Config):
    model: HFModel = field(default_factory=HFModel)
    data: HFData = field(default_factory=HFData)
    train: HFTrain = field(default_factory=HFTrain)
    generation: HFGeneration = field(default_factory=HFGeneration)
    reward: HFReward = field(default_factory=HFReward)
    judge: HFJudge | None = None

    SECTIONS = ("model", "data", "train", "generation", "reward", "judge")

    def check(self) -> None:
        if self.data.source == "generate" and not self.reward.model:
            raise ValueError("data.source generate labels pairs with the reward model: set reward.model")
        if self.reward.model is None and self.judge is None:
            raise ValueError("an hf group needs reward.model and/or judge to score its runs")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], error: type[Exception] = ValueError) -> "HFSuiteConfig":
        """The tier's sections of a suite group (absent ones take their defaults; judge stays None)."""
        values = {k: raw[k] for k in cls.SECTIONS if raw.get(k) is not None}
        config = build_dataclass(cls, values, "hf", error)
        if not config.model.policy or not config.data.dataset:
            raise error("hf: model.policy and data.dataset are required")
        return config

    def prepared_part(self) -> dict[str, Any]:
        """What the cached prepared data depends on (not train or judge: those act per candidate)."""
        from dataclasses import asdict

        return {"policy": self.model.policy, "data": asdict(self.data), "generation": asdict(self.generation),
                "reward": asdict(self.reward)}


def check_group(raw: dict[str, Any]) -> None:
    """Suite-load check of an hf group's sections (a typo or a missing model fails before any run)."""
    HFSuiteConfig.from_dict(raw)
