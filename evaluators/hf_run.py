"""One run of an ``hf`` suite group: train a real causal LM with the candidate loss, then measure it.

The run reads its group's prepared data (``evaluators.hf_data``), trains the policy with TRL
(``evaluators.hf._train``: DPOTrainer with the loss replaced) at the run's seed and beta, with
``train.micro_batch`` pairs per forward pass and loss call and gradient accumulation up to
``train.batch_size`` (so batch-coupled losses see the micro-batch, as in DiscoPOP), answers the
evaluation prompts, and reports:

* ``gold_reward``: the reward model's mean score of the policy's answers (``extra.reference_reward``:
  that of the reference answers; ``extra.reward_range``: ``reward.scale``);
* ``kl``: Monte-Carlo KL(pi || pi_ref) in nats from the policy's own samples;
* ``accuracy``: held-out implicit-reward accuracy (TRL's ``rewards/accuracies``);
* ``win_rate``: reward-model win rate against the reference answers, replaced by the LLM judge's
  when the group has one. The judge runs in the trusted parent (``evaluators.hf_judging``): this
  function only marks the run ``extra.judge_pending`` with its generations.

A loss that raises is flagged ``error``, a wrong shape ``wrong_shape``, non-finite training
``nan``, a KL above ``train.diverge_kl`` ``diverged``: such runs score the suite's failure score.
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from evaluators.hf_data import _device, ensure_prepared, read_jsonl
from evaluators.hf_suite_config import HFSuiteConfig
from evaluators.results import RunResult


def tier_config(config: HFSuiteConfig, meta: dict[str, Any], prepared: Path, seed: int, beta: float,
                device: str, loss_kwargs: dict[str, Any]):
    """The run's settings in the form `evaluators.hf` trains and generates with."""
    from evaluators.hf import HFTierConfig

    t, g = config.train, config.generation
    return HFTierConfig(
        model=meta["policy_path"], dataset=str(prepared / "train.jsonl"), steps=t.steps, learning_rate=t.lr,
        beta=beta, batch_size=t.micro_batch, gradient_accumulation_steps=t.batch_size // t.micro_batch,
        warmup=t.warmup, lr_scheduler=t.lr_scheduler, max_length=t.max_length,
        precompute_ref_log_probs=t.precompute_ref_log_probs, seed=seed, device=device,
        bf16=config.model.bf16 and device == "cuda", logging_steps=t.logging_steps, loss_kwargs=dict(loss_kwargs),
        max_new_tokens=g.max_new_tokens, min_new_tokens=g.min_new_tokens, do_sample=g.do_sample,
        temperature=g.temperature, top_p=g.top_p, generation_batch_size=g.batch_size, objective="mean",
    )


def _failure_flag(exc: BaseException) -> str:
    return "wrong_shape" if "loss_fn returned shape" in str(exc) else "error"


def run_hf_suite(spec: Any, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any], cache_dir: Path,
                 device: str | None = None) -> RunResult:
    """The ``hf`` tier's runner (``evaluators.tiers``)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    from evaluators.hf import _readable, _train, generate, prompt_text, reward_scores, sequence_logps

    started = time.perf_counter()
    config = HFSuiteConfig.from_dict(spec.config)
    prepared, meta = ensure_prepared(config, cache_dir, device)
    run_device = _device(device, config)
    cfg = tier_config(config, meta, prepared, spec.seed, spec.beta, run_device, loss_kwargs)
    train = datasets.Dataset.from_list(read_jsonl(prepared / "train.jsonl"))
    held = datasets.Dataset.from_list(read_jsonl(prepared / "heldout.jsonl"))
    for name in ("score_margin",):
        if name in train.column_names:
            train, held = train.remove_columns(name), held.remove_columns(name)
    eval_rows = read_jsonl(prepared / "eval.jsonl")
    extra: dict[str, Any] = {"model": config.model.policy, "prepared": prepared.name, "train_pairs": len(train),
                             "micro_batch": config.train.micro_batch, "batch_size": config.train.batch_size,
                             "device": run_device, "reward_range": config.reward.scale}

    def failed(flag: str, message: str, curve: list[float] | None = None) -> RunResult:
        extra.update(error=message[:500], reference_reward=meta.get("reference_reward"))
        return RunResult(task=spec.task, tier="hf", seed=spec.seed, beta=spec.beta, noise=spec.noise,
                         gold_reward=math.nan, kl=math.nan, win_rate=math.nan, accuracy=math.nan, flags=[flag],
                         wall_time_s=time.perf_counter() - started, curve=curve or [], extra=extra)

    set_seed(spec.seed)
    with tempfile.TemporaryDirectory(prefix="prefdisco-hf-") as scratch:
        try:
            trainer, tokenizer = _train(loss_fn, cfg, train, held, scratch)
        except Exception as exc:  # noqa: BLE001 - the candidate's loss failed inside training
            return failed(_failure_flag(exc), f"{type(exc).__name__}: {exc}")
        curve = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        if not all(math.isfinite(x) for x in curve):
            return failed("nan", "non-finite training loss", curve)
        evaluation = trainer.evaluate()
        policy = trainer.accelerator.unwrap_model(trainer.model).eval()
        reference = trainer.ref_model
        if reference is None:  # precomputed reference log-probs: the frozen model is loaded for the KL
            reference = AutoModelForCausalLM.from_pretrained(cfg.model).to(policy.device)
        reference = trainer.accelerator.unwrap_model(reference).eval()
        prompts = [prompt_text(r["prompt"], tokenizer) for r in eval_rows]
        set_seed(spec.seed)
        answers, answer_ids = generate(policy, tokenizer, prompts, cfg)
        with torch.autocast(run_device, dtype=torch.bfloat16, enabled=cfg.bf16):
            log_ratio = [a - b for a, b in zip(sequence_logps(policy, tokenizer, prompts, answer_ids),
                                               sequence_logps(reference, tokenizer, prompts, answer_ids))]
        del trainer, policy, reference
    gc.collect()
    if run_device == "cuda":
        torch.cuda.empty_cache()

    kl = sum(log_ratio) / len(log_ratio)
    flags = [] if math.isfinite(kl) else ["nan"]
    if math.isfinite(kl) and kl > config.train.diverge_kl:
        flags.append("diverged")
    gold = win_rate = math.nan
    extra["reference_reward"] = meta.get("reference_reward")
    if meta.get("reward_path"):
        rewards = reward_scores(meta["reward_path"], [r["prompt"] for r in eval_rows], answers,
                                config.reward.batch_size, run_device, config.reward.label)
        gold = sum(rewards) / len(rewards)
        wins = [1.0 if a > r["reference_reward"] else 0.5 if a == r["reference_reward"] else 0.0
                for a, r in zip(rewards, eval_rows)]
        win_rate = sum(wins) / len(wins)
        extra["reward_win_rate"] = win_rate
    extra["generations"] = [{"prompt": _readable(r["prompt"]), "policy": a, "reference": r["reference"]}
                            for r, a in zip(eval_rows, answers)]
    extra["eval_loss"] = evaluation.get("eval_loss")
    if config.judge is not None:
        extra["judge_pending"] = True  # judged by the trusted parent (evaluators.hf_judging)
        if not meta.get("reward_path"):  # the judge's win rate is the gold: 0.5 = no better than the reference
            extra.update(reference_reward=0.5, reward_range=0.5)
    return RunResult(task=spec.task, tier="hf", seed=spec.seed, beta=spec.beta, noise=spec.noise,
                     gold_reward=gold, kl=kl, win_rate=win_rate,
                     accuracy=float(evaluation.get("eval_rewards/accuracies", math.nan)), flags=flags,
                     wall_time_s=time.perf_counter() - started, curve=curve, extra=extra)
