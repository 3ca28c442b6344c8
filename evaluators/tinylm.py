"""Tier "tinylm": preference-train a tiny GPT-2 from its cached SFT reference with the candidate
loss, then measure it with the task's gold reward.

One run = one (task, seed, noise, beta): label the cached reference pairs by Bradley-Terry on
the gold reward (+ label noise), train a copy of the reference with the candidate loss (reference
log-probs precomputed once, AdamW, gradient clipping, bf16 autocast on CUDA / fp32 on CPU), then
sample the policy on the evaluation prompts for gold reward, Monte-Carlo sequence KL
(mean of log pi(y) - log pi_ref(y) over policy samples y) and win rate against the reference's
samples, and score held-out pairs with the implicit reward log pi - log pi_ref.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from evaluators.lm import Vocab, build_model, response_logps, sample
from evaluators.metrics import win_rate
from evaluators.reference import _autocast, load_or_build_reference, rewards_of
from evaluators.results import RunResult
from evaluators.suites import RunSpec
from evaluators.tasks import make_task
from evaluators.tinylm_config import TinyLMConfig
from evaluators.training import bradley_terry_labels, run_seed, train_preference


def pick_device() -> str:
    """``PREFDISCO_DEVICE`` if set, else CUDA when available, else CPU."""
    import os

    return os.environ.get("PREFDISCO_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def reference_and_policy(bundle: dict[str, Any], vocab_size: int, cfg: TinyLMConfig,
                         device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The frozen SFT'd reference from a cached bundle, and a trainable policy initialised from it."""
    reference = build_model(vocab_size, bundle["meta"]["n_positions"], cfg.model, 0)
    reference.load_state_dict(bundle["model"])
    reference.to(device).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    policy = copy.deepcopy(reference)
    for p in policy.parameters():
        p.requires_grad_(True)
    return reference, policy


def reference_specs(spec: RunSpec, cache_dir: Any = None) -> list[tuple[Any, int, TinyLMConfig]]:
    """The cached reference one run needs (built by the parent before the job)."""
    return [(make_task(spec.task, **spec.task_params), spec.seed, TinyLMConfig.from_dict(spec.config))]


def run_tinylm(spec: RunSpec, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any],
               cache_dir: Path, device: str | None = None) -> RunResult:
    start = time.perf_counter()
    device = device or pick_device()
    cfg = TinyLMConfig.from_dict(spec.config)
    task = make_task(spec.task, **spec.task_params)
    bundle = load_or_build_reference(task, spec.seed, cfg, cache_dir, device)
    ref_time = time.perf_counter() - start
    meta = bundle["meta"]
    vocab = Vocab(task.vocabulary())
    reference, policy = reference_and_policy(bundle, len(vocab), cfg, device)

    tr = {k: v.to(device) for k, v in bundle["train"].items()}
    labels = bradley_terry_labels(
        tr["ra"].cpu(), tr["rb"].cpu(), task.label_temperature, spec.noise,
        torch.Generator().manual_seed(run_seed("labels", spec.task, spec.seed, spec.noise)),
    ).to(device)
    pick = labels[:, None]
    chosen = torch.where(pick, tr["a"], tr["b"])
    rejected = torch.where(pick, tr["b"], tr["a"])
    chosen_len = torch.where(labels, tr["a_len"], tr["b_len"])
    rejected_len = torch.where(labels, tr["b_len"], tr["a_len"])
    ref_chosen = torch.where(labels, tr["ref_a"], tr["ref_b"])
    ref_rejected = torch.where(labels, tr["ref_b"], tr["ref_a"])
    prefix = tr["prefix"]

    def policy_logps(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        both = response_logps(
            policy, torch.cat([prefix[idx], prefix[idx]]),
            torch.cat([chosen[idx], rejected[idx]]), torch.cat([chosen_len[idx], rejected_len[idx]]))
        return both[: idx.shape[0]], both[idx.shape[0]:]

    policy.train()
    outcome = train_preference(
        parameters=policy.parameters(), policy_logps=policy_logps,
        reference_chosen=ref_chosen, reference_rejected=ref_rejected, loss_fn=loss_fn,
        beta=spec.beta, loss_kwargs=loss_kwargs, steps=cfg.train.steps,
        batch_size=cfg.train.batch_size, lr=cfg.train.lr, grad_clip=cfg.train.grad_clip,
        weight_decay=cfg.train.weight_decay, log_every=cfg.train.log_every,
        generator=torch.Generator().manual_seed(run_seed("order", spec.task, spec.seed, spec.noise)),
        autocast=lambda: _autocast(device),
    )
    policy.eval()
    train_time = time.perf_counter() - start - ref_time

    flags = list(outcome.flags)
    ev = bundle["eval"]
    width = task.max_response_len + 1
    with torch.no_grad(), _autocast(device):
        ev_prefix = ev["prefix"].to(device)
        gen = torch.Generator().manual_seed(run_seed("policy-samples", spec.task, spec.seed))
        try:
            resp, length = sample(policy, ev_prefix, width, gen)
        except RuntimeError as exc:  # e.g. non-finite probabilities after a blown-up update
            flags.append("nan")
            return _failed_run(spec, flags, f"sampling failed: {exc}"[:300], start, outcome, meta)
        rewards = rewards_of(task, vocab, ev_prefix.cpu(), resp.cpu(), length.cpu())
        lp_pi = response_logps(policy, ev_prefix, resp, length).float()
        lp_ref = response_logps(reference, ev_prefix, resp, length).float()
        kl = float((lp_pi - lp_ref).mean())
        ho = {k: v.to(device) for k, v in bundle["heldout"].items()}
        imp_a = response_logps(policy, ho["prefix"], ho["a"], ho["a_len"]).float() - ho["ref_a"]
        imp_b = response_logps(policy, ho["prefix"], ho["b"], ho["b_len"]).float() - ho["ref_b"]
        gold_sign = torch.sign(ho["ra"] - ho["rb"]).to(imp_a.dtype)
        keep = gold_sign != 0
        margin = ((imp_a - imp_b) * gold_sign)[keep]
        accuracy = float(((margin > 0).double() + 0.5 * (margin == 0).double()).mean()) \
            if bool(keep.any()) else math.nan
    gold = float(rewards.mean())
    win = win_rate(rewards.tolist(), ev["reward"].tolist())
    if not all(math.isfinite(x) for x in (gold, kl)):
        flags.append("nan")
    elif kl > cfg.train.diverge_kl:
        flags.append("diverged")
    return RunResult(
        task=spec.task, tier="tinylm", seed=spec.seed, beta=spec.beta, noise=spec.noise,
        gold_reward=gold, kl=kl, win_rate=win, accuracy=accuracy, flags=flags,
        wall_time_s=time.perf_counter() - start, curve=outcome.curve,
        extra=_extra(meta, task.reward_range, outcome, cfg, ref_time, train_time, device),
    )


def _extra(meta: dict, reward_range: tuple[float, float], outcome: Any, cfg: TinyLMConfig,
           ref_time: float, train_time: float, device: str) -> dict[str, Any]:
    return {
        "reference_reward": meta["reference_reward"],
        "reward_range": reward_range[1] - reward_range[0],
        "steps_done": outcome.steps_done, "message": outcome.message,
        "n_params": meta["n_params"], "device": device,
        "reference_time_s": ref_time, "train_time_s": train_time,
        "train": asdict(cfg.train),
    }


def _failed_run(spec: RunSpec, flags: list[str], message: str, start: float, outcome: Any,
                meta: dict) -> RunResult:
    return RunResult(
        task=spec.task, tier="tinylm", seed=spec.seed, beta=spec.beta, noise=spec.noise,
        gold_reward=math.nan, kl=math.nan, win_rate=math.nan, accuracy=math.nan, flags=flags,
        wall_time_s=time.perf_counter() - start, curve=outcome.curve,
        extra={"reference_reward": meta["reference_reward"], "message": message,
               "steps_done": outcome.steps_done},
    )
