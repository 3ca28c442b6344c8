"""The `hf` tier: train a real Hugging Face causal LM with a candidate loss through TRL, then score it.

For users with GPUs and real models. Any causal LM (local path or hub id) is trained on any
preference dataset in TRL's format (prompt/chosen/rejected, standard text or conversational
messages; a local .jsonl/.json/.parquet file, a saved dataset directory, or a `datasets` hub id)
with ``PreferenceLossDPOTrainer`` (TRL's DPOTrainer with the loss replaced). Then, on held-out
prompts, the trained policy and the reference model each answer, and the answers are scored by a
reward model (transformers sequence classifier) and/or a position-swapped pairwise LLM judge.

The result is a ``RunResult`` dict like every other tier: ``gold_reward`` is the reward model's
mean score of policy answers, ``win_rate`` the judge's win rate against the reference (the reward
model's when there is no judge), ``kl`` a Monte-Carlo estimate of KL(pi || pi_ref) from the
policy's own samples (unbiased only when sampling at temperature 1), ``accuracy`` the held-out
preference accuracy of the implicit reward. Sandbox workers have no network, so there the job
trains and generates, and the parent calls ``apply_judge`` on the returned dict.

Granular training (pairs from ``prefdisco aggregate``): a ``weight`` column weights each pair, a
``group`` column names the annotator group each pair speaks for, and a ``dimension`` column the
judged dimension. ``objective`` picks the reduction (``mean``, ``weighted``, or ``group-robust``:
Group Robust Preference Optimisation over the groups), ``condition_on_dimension`` folds the
dimension into the prompt (SteerLM-style), and the result carries ``extra["per_group"]``
(held-out accuracy, loss and reward margin per group) and ``extra["worst_group"]``.
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from evaluators.judges import LLMJudgeConfig, PairwiseJudge
from evaluators.results import RunResult
from evaluators.typed_config import Config, build_dataclass

LossFn = Callable[..., Any]


@dataclass
class HFTierConfig(Config):
    """Every knob of the hf tier, with defaults sized for a small model on one GPU."""

    model: str = ""  # causal LM: local directory or hub id (policy init and frozen reference)
    dataset: str = ""  # .jsonl/.json/.parquet file, a save_to_disk directory, or a hub id
    dataset_config: str | None = None  # hub dataset configuration name
    split: str = "train"
    eval_dataset: str | None = None  # held-out pairs from another file/hub id (None: same as `dataset`)
    eval_split: str | None = None  # split of the held-out source; both None: hold out pairs from `split`
    eval_size: int = 64  # held-out pairs (accuracy) and the prompts answered for scoring
    max_train_examples: int | None = None  # cap on training pairs (None: all)
    max_length: int | None = 512  # prompt + completion tokens per sequence (TRL truncates)
    steps: int = 100
    learning_rate: float = 5e-7
    beta: float = 0.1
    batch_size: int = 8  # pairs per device step
    gradient_accumulation_steps: int = 1
    warmup: float = 0.1  # linear warm-up: a fraction of `steps` if < 1, else a number of steps
    lr_scheduler: str = "linear"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)  # keyword hyper-parameters of the loss
    precompute_ref_log_probs: bool = False  # True frees the reference model's memory while training
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: GPU if available
    bf16: bool = False
    logging_steps: int = 10
    output_dir: str | None = None  # keep TRL's output (and the model, with save_model) here
    save_model: bool = False
    # Generation on held-out prompts (policy and reference alike).
    max_new_tokens: int = 128
    min_new_tokens: int = 0  # = max_new_tokens bans early EOS (fixed-length answers, as in IMDb)
    do_sample: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    generation_batch_size: int = 16
    # Scoring: a reward model and/or an LLM judge (both optional; at least one is recommended).
    reward_model: str | None = None  # AutoModelForSequenceClassification path/hub id (1 logit)
    reward_batch_size: int = 16
    judge: LLMJudgeConfig | None = None
    # Granular training on aggregated human judgments (see the module docstring).
    objective: Literal["mean", "weighted", "group-robust"] = "weighted"  # weighted: the weight column, when present
    group_robust_eta: float = 0.05  # exponentiated-gradient step of the group weights (group-robust only)
    condition_on_dimension: bool = False  # prefix prompts with "[dimension] "
    group_column: str = "group"
    weight_column: str = "weight"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "HFTierConfig":
        """Build from plain values (a YAML mapping or job kwargs); unknown keys are errors."""
        return build_dataclass(cls, values, "hf tier")


# ---- data ------------------------------------------------------------------------------------

def load_preference_dataset(source: str, split: str = "train", config_name: str | None = None):
    """A `datasets.Dataset` of preference pairs from a local file/directory or a hub id."""
    import datasets

    path = Path(source)
    if path.is_file():
        kinds = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
        if path.suffix not in kinds:
            raise ValueError(f"unsupported dataset file {path.name}; use .jsonl, .json, .parquet or .csv")
        dataset = datasets.load_dataset(kinds[path.suffix], data_files=str(path), split="train")
    elif path.is_dir() and (path / "dataset_info.json").exists():
        dataset = datasets.load_from_disk(str(path))
    else:
        dataset = datasets.load_dataset(source, config_name, split=split)
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset[split]
    missing = {"chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"{source} lacks columns {sorted(missing)}; TRL preference format needs prompt/chosen/rejected")
    if "prompt" not in dataset.column_names:  # implicit prompt: the shared start of chosen and rejected
        from trl.data_utils import extract_prompt

        dataset = dataset.map(extract_prompt)
    return dataset


def _held_out_rows(dataset, config: HFTierConfig) -> list[int]:
    """A fifth of the (shuffled) pairs, at most ``eval_size``; with a group column, a fifth of every
    group's pairs (at least one where a group has two or more), so each group gets a held-out score."""
    n_eval = min(config.eval_size, max(1, len(dataset) // 5))
    if config.group_column not in dataset.column_names:
        return list(range(n_eval))
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(dataset[config.group_column]):
        by_group.setdefault(g, []).append(i)
    scale = n_eval / len(dataset)
    rows = [i for members in by_group.values()
            for i in members[:max(1 if len(members) > 1 else 0, round(len(members) * scale))]]
    return sorted(rows)


def _train_eval_split(config: HFTierConfig):
    dataset = load_preference_dataset(config.dataset, config.split, config.dataset_config).shuffle(seed=config.seed)
    if config.eval_dataset is not None or config.eval_split is not None:
        source = config.eval_dataset or config.dataset
        held_out = load_preference_dataset(source, config.eval_split or config.split, config.dataset_config)
        held_out = held_out.select(range(min(config.eval_size, len(held_out))))
        train = dataset
    else:
        held_rows = _held_out_rows(dataset, config)
        held_out = dataset.select(held_rows)
        train = dataset.select([i for i in range(len(dataset)) if i not in set(held_rows)])
    if config.max_train_examples is not None:
        train = train.select(range(min(config.max_train_examples, len(train))))
    return train, held_out


def _granular(train, held_out, config: HFTierConfig):
    """Weights, group ids and dimension conditioning for both splits; returns (train, held_out, groups)."""
    from evaluators.granular import group_vocabulary, prepare_granular_dataset

    col = config.group_column
    groups = group_vocabulary([g for split in (train, held_out) if col in split.column_names
                               for g in split[col]]) if col in train.column_names else []
    if config.objective == "group-robust" and len(groups) < 2:
        raise ValueError(f"objective group-robust needs a {config.group_column!r} column with at least two groups "
                         "(aggregate with --by-group)")
    out = []
    for split in (train, held_out):
        if config.objective == "mean" and config.weight_column in split.column_names:
            split = split.remove_columns(config.weight_column)
        split, _ = prepare_granular_dataset(split, condition_dimensions=config.condition_on_dimension,
                                            groups=groups if groups and col in split.column_names else [],
                                            group_column=col, weight_column=config.weight_column)
        out.append(split)
    return out[0], out[1], groups


def prompt_text(prompt: Any, tokenizer: Any) -> str:
    """What the model is conditioned on: the text prompt, or the chat prompt rendered by its template."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)


def _readable(prompt: Any) -> str:
    """The prompt as a person (or judge) reads it."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


# ---- generation and scoring ---------------------------------------------------------------------

def generate(model: Any, tokenizer: Any, prompts: list[str], config: HFTierConfig) -> tuple[list[str], list[list[int]]]:
    """Answer each prompt; returns the decoded answers and their token ids (up to and incl. EOS)."""
    import torch

    tokenizer.padding_side = "left"
    texts: list[str] = []
    token_ids: list[list[int]] = []
    settings: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "do_sample": config.do_sample,
                                "min_new_tokens": getattr(config, "min_new_tokens", 0),  # callers' own configs may lack it
                                "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if config.do_sample:
        settings.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
    for start in range(0, len(prompts), config.generation_batch_size):
        batch = tokenizer(prompts[start:start + config.generation_batch_size], return_tensors="pt",
                          padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            output = model.generate(**batch, **settings)
        for row in output[:, batch["input_ids"].shape[1]:].tolist():
            if tokenizer.eos_token_id in row:
                row = row[:row.index(tokenizer.eos_token_id) + 1]
            else:
                row = [t for t in row if t != tokenizer.pad_token_id]
            token_ids.append(row)
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return texts, token_ids


def sequence_logps(model: Any, tokenizer: Any, prompts: list[str], responses: list[list[int]]) -> list[float]:
    """Summed log-probability of each response's tokens given its prompt."""
    import torch

    out: list[float] = []
    for prompt, response in zip(prompts, responses):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not response:
            out.append(0.0)
            continue
        ids = torch.tensor([prompt_ids + response], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
        target = ids[0, len(prompt_ids):]
        out.append(torch.log_softmax(logits, dim=-1).gather(-1, target[:, None]).sum().item())
    return out


def reward_scores(reward_model: str, prompts: list[Any], responses: list[str], batch_size: int,
                  device: str = "cpu", label: int | None = None) -> list[float]:
    """The reward model's scalar score for each (prompt, response): logit 0 of a one-logit model, or
    with ``label`` the softmax probability of that class (a sentiment classifier's "positive")."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reward_model)
    model = AutoModelForSequenceClassification.from_pretrained(reward_model).to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    texts = []
    for prompt, response in zip(prompts, responses):
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            texts.append(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}],
                                                       tokenize=False))
        else:
            texts.append(_readable(prompt) + " " + response)
    scores: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                          truncation=True).to(model.device)
        with torch.no_grad():
            logits = model(**batch).logits.float()
            scores.extend((logits[:, 0] if label is None else logits.softmax(-1)[:, label]).tolist())
    return scores


def _pairwise_win_rate(policy: list[float], reference: list[float]) -> float:
    """P(policy answer outscores the reference answer to the same prompt); ties count 1/2."""
    wins = [1.0 if p > r else 0.5 if p == r else 0.0 for p, r in zip(policy, reference)]
    return sum(wins) / len(wins)


# ---- the tier ------------------------------------------------------------------------------------

def _use_cpu(config: HFTierConfig) -> bool:
    import torch

    return config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())


def _train(loss_fn: LossFn, config: HFTierConfig, train, held_out, output_dir: str, groups: list[str] | None = None):
    from transformers import AutoTokenizer
    from trl import DPOConfig

    from evaluators.hf_trainer import PreferenceLossDPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = DPOConfig(
        output_dir=output_dir, max_steps=config.steps, learning_rate=config.learning_rate, beta=config.beta,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, warmup_steps=config.warmup,
        lr_scheduler_type=config.lr_scheduler,
        max_length=config.max_length, precompute_ref_log_probs=config.precompute_ref_log_probs,
        seed=config.seed, data_seed=config.seed, use_cpu=_use_cpu(config), bf16=config.bf16,
        logging_steps=config.logging_steps, save_strategy="no", report_to=[], disable_tqdm=True,
    )
    trainer = PreferenceLossDPOTrainer(
        model=config.model, args=args, train_dataset=train, eval_dataset=held_out,
        processing_class=tokenizer, loss_fn=loss_fn, loss_kwargs=config.loss_kwargs,
        group_names=groups or None,
        group_robust_eta=config.group_robust_eta if config.objective == "group-robust" else 0.0,
    )
    trainer.train()
    return trainer, tokenizer


def per_group_report(trainer, held_out, groups: list[str]) -> dict[str, dict[str, Any]]:
    """Held-out implicit-reward accuracy, loss and margin for each group (TRL's evaluate per subset)."""
    out: dict[str, dict[str, Any]] = {}
    # The trainer's own copy is tokenized and, with precompute_ref_log_probs, carries the reference
    # log-probs (the reference model is gone after training); its rows are held_out's, in order.
    prepared = trainer.eval_dataset
    if prepared is not None and "group_id" in getattr(prepared, "column_names", ()):
        held_out = prepared
    if "group_id" not in held_out.column_names:
        return out
    ids = held_out["group_id"]
    for g, name in enumerate(groups):
        rows = [i for i, x in enumerate(ids) if x == g]
        if not rows:
            continue
        if held_out is prepared:  # evaluate() refuses new datasets after training with precomputed refs
            trainer.eval_dataset = prepared.select(rows)
            try:
                metrics = trainer.evaluate()
            finally:
                trainer.eval_dataset = prepared
        else:
            metrics = trainer.evaluate(eval_dataset=held_out.select(rows))
        out[name] = {"pairs": len(rows), "accuracy": metrics.get("eval_rewards/accuracies"),
                     "loss": metrics.get("eval_loss"), "reward_margin": metrics.get("eval_rewards/margins")}
    return out


def run_hf_tier(loss_fn: LossFn, config: HFTierConfig) -> dict[str, Any]:
    """Train ``config.model`` with ``loss_fn`` through TRL and score it; a ``RunResult`` dict."""
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    if not config.model or not config.dataset:
        raise ValueError("the hf tier needs config.model and config.dataset")
    started = time.perf_counter()
    set_seed(config.seed)
    train, held_out = _train_eval_split(config)
    train, held_out, groups = _granular(train, held_out, config)
    with tempfile.TemporaryDirectory(prefix="prefdisco-hf-") as scratch:
        trainer, tokenizer = _train(loss_fn, config, train, held_out, config.output_dir or scratch, groups)
        curve = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        evaluation = trainer.evaluate()
        by_group = per_group_report(trainer, held_out, groups) if groups else {}
        alpha = trainer.group_reducer.alpha.tolist() if trainer.group_reducer is not None else None
        policy = trainer.accelerator.unwrap_model(trainer.model).eval()
        if config.save_model and config.output_dir:
            trainer.save_model(str(Path(config.output_dir) / "final"))
        reference = trainer.ref_model
        if reference is None:  # precomputed reference log-probs: load the frozen model for scoring
            reference = AutoModelForCausalLM.from_pretrained(config.model, dtype=policy.dtype).to(policy.device)
        reference = trainer.accelerator.unwrap_model(reference).eval()

        raw_prompts = list(dict.fromkeys(map(_freeze, held_out["prompt"])))[:config.eval_size]
        raw_prompts = [_thaw(p) for p in raw_prompts]
        prompts = [prompt_text(p, tokenizer) for p in raw_prompts]
        set_seed(config.seed)
        policy_text, policy_ids = generate(policy, tokenizer, prompts, config)
        set_seed(config.seed)
        reference_text, _ = generate(reference, tokenizer, prompts, config)
        log_ratio = [a - b for a, b in zip(sequence_logps(policy, tokenizer, prompts, policy_ids),
                                           sequence_logps(reference, tokenizer, prompts, policy_ids))]
        del trainer, policy, reference
    gc.collect()  # free the policy and reference before the reward model loads
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    generations = [{"prompt": _readable(p), "policy": a, "reference": b}
                   for p, a, b in zip(raw_prompts, policy_text, reference_text)]
    extra: dict[str, Any] = {
        "model": config.model, "dataset": config.dataset, "train_pairs": len(train), "eval_pairs": len(held_out),
        "eval_loss": evaluation.get("eval_loss"), "eval_reward_margin": evaluation.get("eval_rewards/margins"),
        "generations": generations, "objective": config.objective,
    }
    if by_group:
        scored = {g: r for g, r in by_group.items() if r["accuracy"] is not None}
        worst = min(scored.items(), key=lambda kv: (kv[1]["accuracy"], -(kv[1]["loss"] or 0.0))) if scored else None
        extra.update(per_group=by_group, worst_group={"group": worst[0], **worst[1]} if worst else None,
                     group_weights=dict(zip(groups, alpha)) if alpha is not None else None)
    gold = win_rate = float("nan")
    if config.reward_model:
        scores = reward_scores(config.reward_model, raw_prompts * 2, policy_text + reference_text,
                               config.reward_batch_size, "cpu" if _use_cpu(config) else "cuda")
        policy_rewards, reference_rewards = scores[:len(raw_prompts)], scores[len(raw_prompts):]
        gold = sum(policy_rewards) / len(policy_rewards)
        win_rate = _pairwise_win_rate(policy_rewards, reference_rewards)
        extra.update(reference_reward=sum(reference_rewards) / len(reference_rewards), reward_win_rate=win_rate)
    flags = [] if all(math.isfinite(x) for x in curve) else ["nan"]
    result = RunResult(
        task=Path(config.dataset).name or config.dataset, tier="hf", seed=config.seed, beta=config.beta, noise=0.0,
        gold_reward=gold, kl=sum(log_ratio) / len(log_ratio), win_rate=win_rate,
        accuracy=float(evaluation.get("eval_rewards/accuracies", float("nan"))), flags=flags,
        wall_time_s=time.perf_counter() - started, curve=curve, extra=extra,
    ).to_dict()
    return apply_judge(result, config.judge) if config.judge is not None else result


def apply_judge(result: dict[str, Any], judge: LLMJudgeConfig | dict[str, Any]) -> dict[str, Any]:
    """Judge a finished run's generations: sets ``win_rate`` and ``extra["judge"]``.

    Separate from training so a sandboxed job (no network) can train and generate, and the
    trusted parent process, which can reach the judge's endpoint, judges afterwards.
    """
    config = build_dataclass(LLMJudgeConfig, judge, "judge") if isinstance(judge, dict) else judge
    generations = result["extra"]["generations"]
    judged = PairwiseJudge(config).compare([g["prompt"] for g in generations],
                                           [g["policy"] for g in generations],
                                           [g["reference"] for g in generations])
    result = {**result, "win_rate": judged.win_rate, "extra": dict(result["extra"])}
    result["extra"]["judge"] = {k: v for k, v in judged.to_dict().items() if k != "scores"}
    result["extra"]["judge"]["model"] = config.model
    return result


def _freeze(prompt: Any) -> Any:
    """Hashable form of a prompt (conversational prompts are lists of dicts)."""
    return prompt if isinstance(prompt, str) else tuple(tuple(sorted(m.items())) for m in prompt)


def _thaw(prompt: Any) -> Any:
    return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]


def hf_job(loss_fn: LossFn | None, *, loss_name: str = "candidate", **config_kwargs: Any) -> dict[str, Any]:
    """Sandbox job entry point (``evaluators.hf:hf_job``): ``loss_fn=None`` runs the registered ``loss_name``.

    Sandbox workers have no network: leave ``judge`` out of the job and call ``apply_judge`` on the
    returned dict in the parent process.
    """
    if loss_fn is None:
        from candidate_losses import get_loss

        loss_fn = get_loss(loss_name).fn
    result = run_hf_tier(loss_fn, HFTierConfig.from_dict(config_kwargs))
    result["extra"]["loss"] = loss_name
    return result
