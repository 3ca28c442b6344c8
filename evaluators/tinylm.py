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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from evaluators.lm import Vocab, build_model, response_logps, sample
from evaluators.metrics import win_rate
from evaluators.reference import _autocast, load_or_build_reference, rewards_of
from evaluators.results import RunResult
from evaluators.suites import RunSpec
from evaluators.tasks import TextTask, make_task
from evaluators.tinylm_config import TinyLMConfig
from evaluators.training import TrainOutcome, bradley_terry_labels, run_seed, train_preference


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


@dataclass
class TrainingPairs:
    """Labelled pairs for one run (chosen/rejected assigned, reference log-probs precomputed)."""

    prefix: torch.Tensor
    chosen: torch.Tensor
    chosen_len: torch.Tensor
    rejected: torch.Tensor
    rejected_len: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    batch_size: int                               # pairs per step
    loss_fn: Callable[..., Any] | None = None      # the candidate wrapped (e.g. a weighted reduction); None: as is
    on_batch: Callable[[torch.Tensor], None] | None = None  # told each step's pair indices before the loss


@dataclass
class PairsRun:
    """One run of a tier that trains the tinylm policy on labelled pairs: inputs, models, timings."""

    spec: RunSpec
    cfg: TinyLMConfig
    task: TextTask
    vocab: Vocab
    bundle: dict[str, Any]
    device: str
    start: float
    reference_time_s: float
    reference: torch.nn.Module | None = None
    policy: torch.nn.Module | None = None
    outcome: TrainOutcome | None = None
    train_time_s: float = 0.0

    def kl_to_reference(self, prefix: torch.Tensor, resp: torch.Tensor, length: torch.Tensor) -> float:
        """Monte-Carlo sequence KL(policy || reference) on policy samples."""
        lp_pi = response_logps(self.policy, prefix, resp, length).float()
        lp_ref = response_logps(self.reference, prefix, resp, length).float()
        return float((lp_pi - lp_ref).mean())

    def final_flags(self, flags: list[str], gold: float, kl: float) -> list[str]:
        if not all(math.isfinite(x) for x in (gold, kl)):
            flags.append("nan")
        elif kl > self.cfg.train.diverge_kl:
            flags.append("diverged")
        return flags


Label = Callable[[PairsRun, Callable[..., Any]], TrainingPairs]
Evaluate = Callable[[PairsRun, torch.Tensor, torch.Tensor, torch.Tensor, list[str]], RunResult]
OnSampleFailure = Callable[[PairsRun, list[str], str], RunResult]


def reference_specs(spec: RunSpec, cache_dir: Any = None) -> list[tuple[Any, int, TinyLMConfig]]:
    """The cached reference one run needs (built by the parent before a sandboxed job)."""
    return [(make_task(spec.task, **spec.task_params), spec.seed, TinyLMConfig.from_dict(spec.config))]


def run_on_pairs(spec: RunSpec, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any], cache_dir: Path,
                 device: str | None, *, label: Label, evaluate: Evaluate, on_sample_failure: OnSampleFailure
                 ) -> RunResult:
    """The skeleton of every pairs -> train -> evaluate tier (tinylm, pluralistic).

    Load (or build) the cached SFT reference of (task, seed); ``label`` turns its sampled pairs into
    ``TrainingPairs``; the policy (a copy of the reference) is trained on them with the candidate
    loss by the shared loop; the policy is sampled on the evaluation prompts and ``evaluate`` scores
    the samples (``on_sample_failure`` when sampling itself broke, e.g. non-finite probabilities).
    """
    start = time.perf_counter()
    device = device or pick_device()
    cfg = TinyLMConfig.from_dict(spec.config)
    task = make_task(spec.task, **spec.task_params)
    bundle = load_or_build_reference(task, spec.seed, cfg, cache_dir, device)
    run = PairsRun(spec, cfg, task, Vocab(task.vocabulary()), bundle, device, start,
                   reference_time_s=time.perf_counter() - start)
    pairs = label(run, loss_fn)
    run.reference, run.policy = reference_and_policy(bundle, len(run.vocab), cfg, device)
    policy = run.policy

    def policy_logps(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if pairs.on_batch is not None:
            pairs.on_batch(idx)
        both = response_logps(
            policy, torch.cat([pairs.prefix[idx], pairs.prefix[idx]]),
            torch.cat([pairs.chosen[idx], pairs.rejected[idx]]),
            torch.cat([pairs.chosen_len[idx], pairs.rejected_len[idx]]))
        return both[: idx.shape[0]], both[idx.shape[0]:]

    policy.train()
    run.outcome = train_preference(
        parameters=policy.parameters(), policy_logps=policy_logps,
        reference_chosen=pairs.ref_chosen, reference_rejected=pairs.ref_rejected,
        loss_fn=pairs.loss_fn or loss_fn, beta=spec.beta, loss_kwargs=loss_kwargs, steps=cfg.train.steps,
        batch_size=pairs.batch_size, lr=cfg.train.lr, grad_clip=cfg.train.grad_clip,
        weight_decay=cfg.train.weight_decay, log_every=cfg.train.log_every,
        generator=torch.Generator().manual_seed(run_seed("order", spec.task, spec.seed, spec.noise)),
        autocast=lambda: _autocast(device),
    )
    policy.eval()
    run.train_time_s = time.perf_counter() - start - run.reference_time_s

    flags = list(run.outcome.flags)
    with torch.no_grad(), _autocast(device):
        ev_prefix = bundle["eval"]["prefix"].to(device)
        gen = torch.Generator().manual_seed(run_seed("policy-samples", spec.task, spec.seed))
        try:
            resp, length = sample(policy, ev_prefix, task.max_response_len + 1, gen)
        except RuntimeError as exc:  # e.g. non-finite probabilities after a blown-up update
            flags.append("nan")
            return on_sample_failure(run, flags, f"sampling failed: {exc}"[:300])
        return evaluate(run, ev_prefix, resp, length, flags)


def _gold_labelled_pairs(run: PairsRun, loss_fn: Callable[..., Any]) -> TrainingPairs:
    """tinylm: the reference's pairs labelled by Bradley-Terry on the gold reward, plus label noise."""
    spec, device = run.spec, run.device
    tr = {k: v.to(device) for k, v in run.bundle["train"].items()}
    labels = bradley_terry_labels(
        tr["ra"].cpu(), tr["rb"].cpu(), run.task.label_temperature, spec.noise,
        torch.Generator().manual_seed(run_seed("labels", spec.task, spec.seed, spec.noise)),
    ).to(device)
    pick = labels[:, None]
    return TrainingPairs(
        prefix=tr["prefix"], chosen=torch.where(pick, tr["a"], tr["b"]),
        chosen_len=torch.where(labels, tr["a_len"], tr["b_len"]), rejected=torch.where(pick, tr["b"], tr["a"]),
        rejected_len=torch.where(labels, tr["b_len"], tr["a_len"]),
        ref_chosen=torch.where(labels, tr["ref_a"], tr["ref_b"]),
        ref_rejected=torch.where(labels, tr["ref_b"], tr["ref_a"]), batch_size=run.cfg.train.batch_size)


def _gold_reward_scores(run: PairsRun, ev_prefix: torch.Tensor, resp: torch.Tensor, length: torch.Tensor,
                        flags: list[str]) -> RunResult:
    """tinylm: gold reward of the policy's samples, KL, win rate against the reference's samples, and
    the held-out accuracy of the implicit reward log pi - log pi_ref."""
    spec, task, ev, device = run.spec, run.task, run.bundle["eval"], run.device
    rewards = rewards_of(task, run.vocab, ev_prefix.cpu(), resp.cpu(), length.cpu())
    kl = run.kl_to_reference(ev_prefix, resp, length)
    ho = {k: v.to(device) for k, v in run.bundle["heldout"].items()}
    imp_a = response_logps(run.policy, ho["prefix"], ho["a"], ho["a_len"]).float() - ho["ref_a"]
    imp_b = response_logps(run.policy, ho["prefix"], ho["b"], ho["b_len"]).float() - ho["ref_b"]
    gold_sign = torch.sign(ho["ra"] - ho["rb"]).to(imp_a.dtype)
    keep = gold_sign != 0
    margin = ((imp_a - imp_b) * gold_sign)[keep]
    accuracy = float(((margin > 0).double() + 0.5 * (margin == 0).double()).mean()) \
        if bool(keep.any()) else math.nan
    gold = float(rewards.mean())
    win = win_rate(rewards.tolist(), ev["reward"].tolist())
    outcome, meta = run.outcome, run.bundle["meta"]
    return RunResult(
        task=spec.task, tier="tinylm", seed=spec.seed, beta=spec.beta, noise=spec.noise,
        gold_reward=gold, kl=kl, win_rate=win, accuracy=accuracy, flags=run.final_flags(flags, gold, kl),
        wall_time_s=time.perf_counter() - run.start, curve=outcome.curve,
        extra={"reference_reward": meta["reference_reward"], "reward_range": task.reward_range[1] - task.reward_range[0],
               "steps_done": outcome.steps_done, "message": outcome.message,
               "n_params": meta["n_params"], "device": device,
               "reference_time_s": run.reference_time_s, "train_time_s": run.train_time_s,
               "train": asdict(run.cfg.train)},
    )


def _failed_run(run: PairsRun, flags: list[str], message: str) -> RunResult:
    spec, outcome = run.spec, run.outcome
    return RunResult(
        task=spec.task, tier="tinylm", seed=spec.seed, beta=spec.beta, noise=spec.noise,
        gold_reward=math.nan, kl=math.nan, win_rate=math.nan, accuracy=math.nan, flags=flags,
        wall_time_s=time.perf_counter() - run.start, curve=outcome.curve,
        extra={"reference_reward": run.bundle["meta"]["reference_reward"], "message": message,
               "steps_done": outcome.steps_done},
    )


def run_tinylm(spec: RunSpec, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any],
               cache_dir: Path, device: str | None = None) -> RunResult:
    """One tinylm run: gold-labelled pairs -> train -> gold reward, KL, win rate, held-out accuracy."""
    return run_on_pairs(spec, loss_fn, loss_kwargs, cache_dir, device, label=_gold_labelled_pairs,
                        evaluate=_gold_reward_scores, on_sample_failure=_failed_run)
