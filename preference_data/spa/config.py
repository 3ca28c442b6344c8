"""Typed configuration of the SPA loop: YAML in, dataclasses out, fully resolved YAML back.

Every knob lives here once, with its default and a one-line reason. Defaults follow the SPA
paper (Kim et al., ICLR 2025, arXiv 2406.04412) where it gives a number, scaled down where our
tiny tasks force it (each scale-down is noted next to its knob and in ``spa.DEVIATIONS``).
Unknown keys are errors: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from evaluators.typed_config import Config, build_dataclass, read_yaml_file


@dataclass
class TaskConfig(Config):
    """The tinylm task whose gold reward is ground truth (``evaluators.tasks``)."""

    name: str = "sentiment"
    params: dict[str, Any] = field(default_factory=dict)   # the task's constructor arguments


@dataclass
class ReferenceConfig(Config):
    """The SFT reference pi_init, built and cached by the tinylm tier (its model/sft/data knobs).

    Empty mappings take the tinylm tier's defaults (``evaluators.tinylm_config``)."""

    model: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class SPADataConfig(Config):
    """How much gold-labelled seed and how many fresh prompts per iteration.

    Paper: 2K seed pairs (3.3 % of UltraFeedback), then 8K / 20K / 30K prompts. Default here: the
    same 2 : 8 : 20 : 30 proportions at 1/10 scale (3.3 % gold)."""

    seed_pairs: int = 200                 # gold-labelled pairs sampled from pi_init (the tier's pairs)
    prompts_per_iteration: list[int] = field(default_factory=lambda: [800, 2000, 3000])
    eval_prompts: int | None = None       # None: all of the reference bundle's evaluation prompts

    @property
    def gold_fraction(self) -> float:
        return self.seed_pairs / max(1, self.seed_pairs + sum(self.prompts_per_iteration))


@dataclass
class SamplingConfig(Config):
    """Sampling the two responses per prompt from the current policy (paper: T=0.7, top-p 1)."""

    temperature: float = 0.7
    drop_identical: bool = True   # pairs with y1 == y2 carry no preference (common with tiny vocabularies)


@dataclass
class SPAJudgeConfig(Config):
    """Who labels the sampled pairs. ``implicit`` is SPA; the others are the paper's comparisons
    (``gold`` = an oracle, like labelling with the full human data)."""

    kind: Literal["implicit", "gold", "reward_model", "llm"] = "implicit"
    beta: float | None = None            # implicit reward scale; None: train.beta
    length_control: Literal["none", "per_token", "regress"] = "none"
                                         # implicit judge only. per_token: compare rewards per
                                         # response token; regress: subtract the part of the reward
                                         # that a least-squares line in response length explains
                                         # (fitted on the round's responses). Against verbosity creep.
    gold_sample: bool = True             # gold judge: Bradley-Terry sample (like the seed) vs argmax
    reward_model: str | None = None      # reward_model judge: local path of a transformers
                                         # sequence-classification checkpoint (offline)
    reward_batch_size: int = 64
    llm_model: str = "gpt-4o-mini"       # llm judge: OpenAI-compatible chat model
    llm_base_url: str | None = None
    llm_api_key_env: str = "OPENAI_API_KEY"
    llm_criterion: str = "which response scores higher on the task's goal"
    llm_concurrency: int = 4


@dataclass
class RefinementConfig(Config):
    """Noise-aware self-refinement (paper Sec. 4.2). Defaults follow the authors' released code
    (kingdy2002/SPA): tau from earlier steps' margins only, de-coupled noise detection off."""

    enabled: bool = True
    alpha: float = 0.1               # label-smoothing strength for flagged (low-confidence) pairs
    noise_fraction: float = 0.1      # K: the least-confident ~K of self-labelled pairs are flagged
    warmup_fraction: float = 0.2     # no smoothing in the first 20 % of a round's steps
    threshold: Literal["released", "quantile"] = "released"
                                     # released: tau = mean of the 6th/7th smallest of the last 50
                                     # margins of earlier batches (0 until 50 are seen); quantile: the
                                     # K-quantile of a window that includes the current batch
    threshold_window: int = 50       # margins tau is computed from (released code: 50; quantile used 512)
    dnd: bool = False                # confidence from extrapolated logits (1+l)*z_theta - l*z_ref;
                                     # the released configs run with it off (mix = 1)
    dnd_lambda: float = 0.5          # lambda at round 1 ... (used only with dnd: true)
    dnd_decay: float = 0.5           # ... times this each later round (1/2, 1/4, 1/8: not found in the
                                     # paper or the code; kept as an option)


@dataclass
class SPATrainConfig(Config):
    """Preference training (seed DPO, then one round per iteration) through the loss contract.

    Released recipe: each round trains on its NEW self-labelled pairs only, from the previous
    round's policy, which is also the round's DPO reference; lr with 10 % warm-up then cosine decay
    within every stage (7B: 5e-7; here the tinylm scale)."""

    loss: str = "dpo"                     # a registered loss name (candidate losses come in via the API)
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    beta: float = 0.1                     # paper: 0.1
    lr: float = 1e-3                      # peak lr (paper 5e-7 for a 7B model; the tinylm tier's scale here)
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"   # decay after warm-up, per stage
    warmup: float = 0.1                   # fraction of a stage's steps with a linear warm-up (released: 0.1)
    batch_size: int = 32                  # paper: effective batch 32
    seed_epochs: float = 3.0              # paper: 3 epochs of DPO on the seed
    iteration_epochs: float = 1.0         # paper: 1 epoch per iteration
    include_seed: bool = False            # true: also replay the gold seed in every round (our first
                                          # version's default; the release trains on new data only)
    grad_clip: float = 1.0
    weight_decay: float = 0.0


@dataclass
class SPAConfig(Config):
    """Everything one SPA run needs; ``seed`` fixes the reference, data, sampling and training."""

    backend: Literal["tinylm"] = "tinylm"   # the model family (configs/spa_hf.yaml: backend: hf)
    task: TaskConfig = field(default_factory=TaskConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    data: SPADataConfig = field(default_factory=SPADataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    judge: SPAJudgeConfig = field(default_factory=SPAJudgeConfig)
    refinement: RefinementConfig = field(default_factory=RefinementConfig)
    train: SPATrainConfig = field(default_factory=SPATrainConfig)
    seed: int = 0
    cache_dir: str | None = None          # reference cache; None: $PREFDISCO_CACHE or ~/.cache/prefdisco
    out_dir: str | None = None            # where the pair store / per-iteration log go; None: nowhere

    @property
    def iterations(self) -> int:
        return len(self.data.prompts_per_iteration)

    def judge_beta(self) -> float:
        return self.train.beta if self.judge.beta is None else self.judge.beta

    def check(self) -> None:
        check_judge_and_refinement(self)
        if self.data.seed_pairs < 2 or any(n < 1 for n in self.data.prompts_per_iteration):
            raise ValueError("data.seed_pairs must be >= 2 and every prompts_per_iteration entry >= 1")
        if self.sampling.temperature <= 0:
            raise ValueError("sampling.temperature must be > 0")


def check_judge_and_refinement(cfg: Any) -> None:
    """The checks both backends' configs share."""
    if cfg.judge.length_control != "none" and cfg.judge.kind != "implicit":
        raise ValueError("judge.length_control applies to the implicit judge only; set it to none")
    if cfg.judge.kind == "reward_model" and not cfg.judge.reward_model:
        raise ValueError("judge.reward_model: give the path of a local reward-model checkpoint")
    if not 0.0 <= cfg.refinement.alpha <= 0.5:
        raise ValueError("refinement.alpha must be in [0, 0.5] (0.5 would erase the label)")
    if not 0.0 <= cfg.refinement.noise_fraction < 1.0:
        raise ValueError("refinement.noise_fraction must be in [0, 1)")
    if cfg.refinement.threshold_window < 2:
        raise ValueError("refinement.threshold_window must be >= 2 (released code: 50)")


def _build(cls: type, data: Any, where: str) -> Any:
    return build_dataclass(cls, data, where, ValueError)


def spa_config_from_dict(data: dict[str, Any] | None) -> SPAConfig:
    return _build(SPAConfig, data or {}, "")


def load_spa_config(path: str | Path) -> SPAConfig:
    return spa_config_from_dict(read_yaml_file(path, what="SPA config", example="configs/spa.yaml"))


def spa_config_to_dict(cfg: SPAConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_spa_config(cfg: Any) -> str:
    """The fully resolved config of either backend as YAML (every default spelled out)."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
