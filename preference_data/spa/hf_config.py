"""Typed configuration of the SPA loop's ``hf`` backend (any causal LM, any TRL-format data, via TRL).

Selected by ``backend: hf`` at the top of an SPA YAML (``configs/spa_hf.yaml``); without it the YAML
is the tinylm backend's ``SPAConfig``. The judge and refinement sections are the tinylm ones (same
keys, same meaning), so the two backends share one vocabulary. Unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evaluators.hf_suite_config import HFGeneration, HFJudge, HFReward
from evaluators.typed_config import Config, read_yaml_file
from preference_data.spa.config import (RefinementConfig, SPAConfig, SPAJudgeConfig, _build,
                                         check_judge_and_refinement, spa_config_from_dict)

HF_JUDGES = ("implicit", "reward_model", "llm")   # no gold reward for arbitrary HF data


@dataclass
class HFDataConfig(Config):
    """Where the seed and the fresh prompts come from.

    Paper: 2K of 60K UltraFeedback pairs (3.3 %) as seed, then fresh prompts only. Here the
    dataset is shuffled with ``seed``; the first ``seed_pairs`` (or ``seed_fraction`` of the rows)
    keep their human labels, the rest only lend their prompts (and their labels for auditing)."""

    dataset: str = ""                     # .jsonl/.json/.parquet file, save_to_disk dir, or hub id
    dataset_config: str | None = None     # hub configuration name
    split: str = "train"
    seed_pairs: int | None = None         # gold seed size; None: seed_fraction of the dataset
    seed_fraction: float = 0.033          # paper: 3.3 %
    prompts_per_iteration: list[int] = field(default_factory=lambda: [64, 64])
    prompt_file: str | None = None        # fresh prompts from a .txt (one per line) or .jsonl ("prompt")
                                          # instead of the dataset's non-seed rows (no audit labels then)
    eval_prompts: int = 32                # held-out prompts (never trained on): the KL estimate and
                                          # the evaluation section's prompts (unless it has a prompt_file)
    max_length: int | None = 512          # prompt + completion tokens per training sequence


@dataclass
class HFSamplingConfig(Config):
    """Two responses per fresh prompt from the current policy (paper: T = 0.7, top-p 1)."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 16                  # prompts per generate() call
    drop_identical: bool = True           # identical responses carry no preference


@dataclass
class HFTrainConfig(Config):
    """TRL training of each stage (``PreferenceLossDPOTrainer`` + per-example smoothing)."""

    loss: str = "dpo"                     # registered loss name (a candidate comes in via loss_fn=)
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    beta: float = 0.1                     # paper: 0.1
    learning_rate: float = 5e-7           # paper: 5e-7 (7B model)
    lr_scheduler: str = "cosine"          # paper: cosine with warm-up
    warmup: float = 0.1                   # fraction of steps if < 1, else a number of steps
    batch_size: int = 8
    gradient_accumulation_steps: int = 4  # paper: effective batch 32
    seed_epochs: float = 3.0              # paper: 3 epochs on the seed
    iteration_epochs: float = 1.0         # paper: 1 epoch per iteration
    include_seed: bool = False            # False (authors' release): each round trains on its new
                                          # self-labelled pairs only; True replays the gold seed every round
    device: str = "auto"                  # auto | cpu | cuda
    bf16: bool = False
    logging_steps: int = 10


@dataclass(frozen=True)
class HFEvalGeneration(HFGeneration):
    """How each policy answers the evaluation prompts (the hf suite tier's generation knobs).

    Greedy by default: one deterministic answer per prompt, so pi_i and pi_init are compared
    without sampling noise; with ``do_sample`` every stage and pi_init share one sampling seed."""

    max_new_tokens: int = 256
    do_sample: bool = False


@dataclass
class HFEvaluationConfig(Config):
    """Scoring every stage's policy (0 = DPO on the seed, i = SPA round i) against pi_init.

    After each stage pi_i answers the held-out evaluation prompts once and pi_init answers them once
    (cached for the run); a local reward model and/or an OpenAI-compatible LLM judge compares the
    two answers per prompt (AlpacaEval-style win rate vs the SFT model, the judge asked in both
    orders). Nothing runs when neither a reward model nor a judge is configured."""

    enabled: bool = True                  # false: skip even a configured reward model / judge
    prompts: int | None = None            # how many evaluation prompts (None: all of them)
    prompt_file: str | None = None        # .txt (one per line) / .jsonl ("prompt") of evaluation prompts,
                                          # e.g. AlpacaEval's instructions; None: data's held-out prompts
    reward: HFReward = field(default_factory=HFReward)   # reward.model None: judge.reward_model
                                          # (reward.scale is unused here: win rates need no range)
    judge: HFJudge | None = None          # OpenAI-compatible pairwise judge (model, base_url, api_key_env,
                                          # criterion, length_controlled, ...); None: no LLM judge
    generation: HFEvalGeneration = field(default_factory=HFEvalGeneration)
    judge_cache: bool = True              # cache judge replies in $PREFDISCO_CACHE/judge_cache.sqlite

    def check(self) -> None:
        if self.prompts is not None and self.prompts < 1:
            raise ValueError("evaluation.prompts must be >= 1 (or null for all)")


@dataclass
class SPAHFConfig(Config):
    """Everything one SPA run over an HF causal LM needs."""

    backend: Literal["hf"] = "hf"
    model: str = ""                       # pi_init (the SFT model): local directory or hub id
    data: HFDataConfig = field(default_factory=HFDataConfig)
    sampling: HFSamplingConfig = field(default_factory=HFSamplingConfig)
    judge: SPAJudgeConfig = field(default_factory=SPAJudgeConfig)
    compare_judges: list[str] = field(default_factory=list)   # extra judges whose agreement with
                                          # the SPA label is logged per iteration (reward_model, llm)
    refinement: RefinementConfig = field(default_factory=RefinementConfig)
    train: HFTrainConfig = field(default_factory=HFTrainConfig)
    evaluation: HFEvaluationConfig = field(default_factory=HFEvaluationConfig)
    seed: int = 0
    out_dir: str | None = None            # pairs.jsonl (TRL) + stages.json (+ eval_generations.jsonl,
                                          # policies) go here
    save_policies: bool = False           # save pi_0..pi_T under out_dir/policy_<i> (auditing)

    @property
    def iterations(self) -> int:
        return len(self.data.prompts_per_iteration)

    def judge_beta(self) -> float:
        return self.train.beta if self.judge.beta is None else self.judge.beta

    def eval_reward_model(self) -> str | None:
        """The evaluation's reward model: ``evaluation.reward.model``, else ``judge.reward_model``."""
        if not self.evaluation.enabled:
            return None
        return self.evaluation.reward.model or self.judge.reward_model

    def check(self) -> None:
        for kind in (self.judge.kind, *self.compare_judges):
            if kind not in HF_JUDGES:
                raise ValueError(f"judge {kind!r} is not available on the hf backend; use one of {', '.join(HF_JUDGES)}")
        if "reward_model" in self.compare_judges and not self.judge.reward_model:
            raise ValueError("judge.reward_model: give the path of a reward-model checkpoint")
        check_judge_and_refinement(self)
        if any(n < 1 for n in self.data.prompts_per_iteration):
            raise ValueError("data.prompts_per_iteration entries must be >= 1")
        if self.data.seed_pairs is not None and self.data.seed_pairs < 2:
            raise ValueError("data.seed_pairs must be >= 2")
        if not 0.0 < self.data.seed_fraction < 1.0:
            raise ValueError("data.seed_fraction must be in (0, 1)")
        if self.sampling.temperature <= 0 or not 0 < self.sampling.top_p <= 1:
            raise ValueError("sampling.temperature must be > 0 and sampling.top_p in (0, 1]")


def spa_hf_config_from_dict(data: dict[str, Any] | None) -> SPAHFConfig:
    return _build(SPAHFConfig, data or {}, "")


def load_spa_yaml(path: str | Path) -> SPAConfig | SPAHFConfig:
    """An SPA config of either backend: ``backend: hf`` -> SPAHFConfig, absent/``tinylm`` -> SPAConfig.

    ``tier:`` is accepted as the older spelling of ``backend:`` (a tier is what scores a loss)."""
    data = read_yaml_file(path, what="SPA config", example="configs/spa.yaml or configs/spa_hf.yaml") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    if "tier" in data and "backend" not in data:
        data = {("backend" if k == "tier" else k): v for k, v in data.items()}
    backend = data.get("backend", "tinylm")
    if backend == "hf":
        return spa_hf_config_from_dict(data)
    if backend != "tinylm":
        raise ValueError(f"{path}: backend must be tinylm or hf, got {backend!r}")
    return spa_config_from_dict(data)
