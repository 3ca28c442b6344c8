"""Tier "calibrated_lm": the tinylm protocol (SFT'd tiny GPT-2 reference, Bradley-Terry labels
on a gold reward, preference training, sampled gold reward / KL / win rate) in the regime where
published preference-optimisation behaviour shows up: several epochs over a fixed preference
set at a small learning rate, so a loss's shape and beta decide where the policy ends up
(``benchmarks/calibration.py`` checks the published facts; ``benchmarks/results/`` has its output).

All runs of a suite group (seeds x label-noise rates x betas) train together in one vectorised
pass (``evaluators.batched_training``); ``run_calibrated_lm`` runs a single instance the same way
and gives the same numbers. The reference is the tinylm tier's cached bundle (same ``model``,
``sft``, ``data`` sections -> same cache file). Sampling noise is common across the runs of a seed:
policy samples use uniforms seeded by (task, seed) only, whatever the loss, beta or noise.

Fixed-length tasks (``sentiment`` with ``length: L``) are generated like IMDb continuations with
``min_new_tokens = max_new_tokens = L``: EOS is banned (its logit is -inf for policy and reference
alike, in sampling and in every log-prob), so responses are exactly L words and a policy cannot
buy reward or KL with its stopping time. Reference pairs whose sample stopped early are skipped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from evaluators.batched_gpt import BatchedGPT, GPTShape, response_logps, sample
from evaluators.batched_training import PairData, train_batched
from evaluators.lm import EOS, ModelConfig, Vocab
from evaluators.metrics import win_rate
from evaluators.reference import _autocast, load_or_build_reference, rewards_of
from evaluators.results import RunResult
from evaluators.suites import RunSpec
from evaluators.tasks import make_task
from evaluators.tinylm import pick_device
from evaluators.tinylm_config import DataConfig, SFTConfig, TinyLMConfig, TrainConfig
from evaluators.training import bradley_terry_labels, run_seed
from evaluators.typed_config import Config, build_dataclass

TIER = "calibrated_lm"


@dataclass(frozen=True)
class CalibratedTrainConfig(Config):
    """Preference training of one candidate (the YAML ``train:`` mapping of a calibrated_lm group)."""

    epochs: int = 8             # passes over the fixed preference set (converged training)
    steps: int = 0              # if > 0: stop after this many optimiser steps (schedule over them)
    pairs: int = 512            # train on the first `pairs` of the reference's sampled pairs (0 = all)
    batch_size: int = 32        # pairs per step
    lr: float = 1e-4            # AdamW peak learning rate
    warmup: float = 0.1         # fraction of the steps with a linear warm-up from ~0
    decay: bool = True          # then linear decay to 0 at the last step (TRL's default schedule)
    weight_decay: float = 0.0   # 0: a loss that ignores the policy leaves it at the reference
    grad_clip: float = 1.0      # per-run global-norm clipping
    log_every: int = 10         # steps per point of the training-loss curve
    diverge_kl: float = 60.0    # sequence KL (nats) beyond which a run is flagged "diverged"
    eval_prompts: int = 0       # evaluate on the first `eval_prompts` prompts (0 = all of data.eval_prompts)
    eval_epochs: tuple[int, ...] = ()   # also record gold reward and KL after these epochs


@dataclass(frozen=True)
class CalibratedLMConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: CalibratedTrainConfig = field(default_factory=CalibratedTrainConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CalibratedLMConfig":
        """The model/sft/data/train sections of a suite group, checked by the typed loader."""
        return build_dataclass(cls, {k: raw.get(k) or {} for k in ("model", "sft", "data", "train")}, TIER)

    def reference_config(self) -> TinyLMConfig:
        """The tinylm config whose cached reference this tier trains from (train unused)."""
        return TinyLMConfig(self.model, self.sft, self.data, TrainConfig())


def reference_specs(spec: RunSpec, cache_dir: Any = None) -> list[tuple[Any, int, TinyLMConfig]]:
    """The cached tinylm reference one run trains from (built by the parent before a sandboxed job)."""
    cfg = CalibratedLMConfig.from_dict(spec.config)
    return [(make_task(spec.task, **spec.task_params), spec.seed, cfg.reference_config())]


def run_calibrated_lm(spec: RunSpec, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any],
                      cache_dir: Path, device: str | None = None) -> RunResult:
    """One instance (the tier-runner signature); equal to its row of ``run_calibrated_group``."""
    return run_calibrated_group([spec], loss_fn, loss_kwargs, cache_dir, device)[0]


def run_calibrated_group(specs: list[RunSpec], loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any],
                         cache_dir: Path, device: str | None = None) -> list[RunResult]:
    """Train and measure every instance of one group in one vectorised pass (results in order)."""
    start = time.perf_counter()
    device = device or pick_device()
    first = specs[0]
    if any((s.task, s.task_params, s.config) != (first.task, first.task_params, first.config) for s in specs):
        raise ValueError("run_calibrated_group: instances must share task, task_params and config")
    cfg = CalibratedLMConfig.from_dict(first.config)
    task = make_task(first.task, **first.task_params)
    vocab = Vocab(task.vocabulary())
    bundles = {s.seed: load_or_build_reference(task, s.seed, cfg.reference_config(), cache_dir, device)
               for s in specs}
    ref_time = time.perf_counter() - start
    meta = bundles[first.seed]["meta"]
    shape = GPTShape(len(vocab), meta["n_positions"], cfg.model.n_layer, cfg.model.n_embd, cfg.model.n_head)
    states = [bundles[s.seed]["model"] for s in specs]
    reference = BatchedGPT.from_hf(states, shape).to(device).requires_grad_(False)
    policy = BatchedGPT.from_hf(states, shape).to(device)

    length = getattr(task, "length", None)
    window = _Window(length, EOS if length else None, length or task.max_response_len + 1)
    data = _pair_data(specs, bundles, task, cfg, reference, window, device)
    evaluation = _Evaluation(specs, bundles, task, vocab, cfg, reference, window, device)
    trajectory: list[list[dict[str, float]]] = [[] for _ in specs]

    def on_epoch(epoch: int, active: list[bool]) -> None:
        if epoch in cfg.train.eval_epochs:
            for m, point in enumerate(evaluation.measure(policy, with_accuracy=False)):
                trajectory[m].append({"epoch": epoch, "gold_reward": point["gold_reward"], "kl": point["kl"]})

    outcomes = train_batched(
        policy, data, loss_fn, [s.beta for s in specs], loss_kwargs,
        epochs=cfg.train.epochs, max_steps=cfg.train.steps, batch_size=cfg.train.batch_size, lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay, grad_clip=cfg.train.grad_clip,
        order_generators=[torch.Generator().manual_seed(run_seed("order", s.task, s.seed, s.noise))
                          for s in specs],
        warmup=cfg.train.warmup, decay=cfg.train.decay,
        log_every=cfg.train.log_every, autocast=lambda: _autocast(device), on_epoch=on_epoch)
    train_time = time.perf_counter() - start - ref_time
    points = evaluation.measure(policy, with_accuracy=True)
    wall = time.perf_counter() - start
    results = []
    for m, (spec, outcome, point) in enumerate(zip(specs, outcomes, points)):
        flags = list(outcome.flags)
        gold, kl = point["gold_reward"], point["kl"]
        if not all(math.isfinite(x) for x in (gold, kl)):
            flags.append("nan")
        elif kl > cfg.train.diverge_kl:
            flags.append("diverged")
        results.append(RunResult(
            task=spec.task, tier=TIER, seed=spec.seed, beta=spec.beta, noise=spec.noise,
            gold_reward=gold, kl=kl, win_rate=point["win_rate"], accuracy=point["accuracy"],
            flags=flags, wall_time_s=wall / len(specs), curve=outcome.curve,
            extra={"reference_reward": evaluation.reference_reward[m],
                   "reward_range": task.reward_range[1] - task.reward_range[0],
                   "steps_done": outcome.steps_done, "message": outcome.message,
                   "n_params": shape.n_params(), "device": device, "group_size": len(specs),
                   "group_wall_time_s": wall, "reference_time_s": ref_time, "train_time_s": train_time,
                   "train": asdict(cfg.train), "trajectory": trajectory[m]},
        ))
    return results


@dataclass(frozen=True)
class _Window:
    """How responses are generated and scored: ``length`` words exactly with ``banned`` EOS
    (fixed-length tasks), or up to ``width`` tokens ending at EOS (length None)."""

    length: int | None
    banned: int | None
    width: int

    def clip(self, split: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The pairs cut to the window, and which of them are usable (no early stop)."""
        if self.length is None:
            return dict(split), torch.ones(split["a"].shape[0], dtype=torch.bool)
        L = self.length
        ok = (split["a_len"] == L + 1) & (split["b_len"] == L + 1)
        out = dict(split)
        for key in ("a", "b"):
            out[key] = split[key][:, :L].clone()
            out[key][~ok] = split["prefix"][~ok, 1:2]   # placeholder word for unusable pairs
            out[f"{key}_len"] = torch.full_like(split[f"{key}_len"], L)
        return out, ok


def _pair_data(specs: list[RunSpec], bundles: dict[int, dict[str, Any]], task: Any,
               cfg: CalibratedLMConfig, reference: BatchedGPT, window: _Window, device: str) -> PairData:
    """Each run's labelled pairs (labels drawn exactly as the tinylm tier draws them), with
    reference log-probs recomputed by the batched reference so the margin is exactly 0 at step 0."""
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("prefix", "a", "b", "a_len", "b_len", "pick")}
    for s in specs:
        tr, ok = window.clip(bundles[s.seed]["train"])
        keep = ok.nonzero().squeeze(1)
        n = cfg.train.pairs or int(keep.numel())
        if n > keep.numel():
            raise ValueError(f"{TIER}: train.pairs={n} but seed {s.seed} has {keep.numel()} usable pairs "
                             f"(raise data.train_pairs)")
        keep = keep[:n]
        labels = bradley_terry_labels(
            tr["ra"][keep], tr["rb"][keep], task.label_temperature, s.noise,
            torch.Generator().manual_seed(run_seed("labels", s.task, s.seed, s.noise)))
        for key in ("prefix", "a", "b", "a_len", "b_len"):
            rows[key].append(tr[key][keep])
        rows["pick"].append(labels)
    t = {k: torch.stack(v).to(device) for k, v in rows.items()}
    with torch.no_grad(), _autocast(device):
        ref_a = response_logps(reference, t["prefix"], t["a"], t["a_len"], window.banned).float()
        ref_b = response_logps(reference, t["prefix"], t["b"], t["b_len"], window.banned).float()
    pick = t["pick"]
    return PairData(
        prefix=t["prefix"],
        chosen=torch.where(pick[..., None], t["a"], t["b"]),
        rejected=torch.where(pick[..., None], t["b"], t["a"]),
        chosen_len=torch.where(pick, t["a_len"], t["b_len"]),
        rejected_len=torch.where(pick, t["b_len"], t["a_len"]),
        ref_chosen=torch.where(pick, ref_a, ref_b),
        ref_rejected=torch.where(pick, ref_b, ref_a),
        banned=window.banned,
    )


class _Evaluation:
    """Gold reward, MC sequence KL and win rate of policy samples on the evaluation prompts, and
    held-out accuracy of the implicit reward -- for all M runs at once."""

    def __init__(self, specs: list[RunSpec], bundles: dict[int, dict[str, Any]], task: Any, vocab: Vocab,
                 cfg: CalibratedLMConfig, reference: BatchedGPT, window: _Window, device: str) -> None:
        self.specs, self.task, self.vocab, self.reference, self.device = specs, task, vocab, reference, device
        self.window = window
        k = cfg.train.eval_prompts or None
        self.prefix = torch.stack([bundles[s.seed]["eval"]["prefix"][:k] for s in specs]).to(device)
        with torch.no_grad(), _autocast(device):   # same uniforms as the policy's samples: coupled
            resp, length = sample(reference, self.prefix, window.width, self._generators(), window.banned)
        self.ref_reward = [rewards_of(task, vocab, self.prefix[m].cpu(), resp[m].cpu(), length[m].cpu())
                           for m in range(len(specs))]
        self.reference_reward = [float(r.mean()) for r in self.ref_reward]
        clipped = [window.clip(bundles[s.seed]["heldout"]) for s in specs]
        self.heldout = {key: torch.stack([c[0][key] for c in clipped]).to(device)
                        for key in ("prefix", "a", "b", "a_len", "b_len", "ra", "rb")}
        self.heldout_ok = torch.stack([c[1] for c in clipped]).to(device)
        with torch.no_grad(), _autocast(device):
            self.ho_ref_a = response_logps(reference, self.heldout["prefix"], self.heldout["a"],
                                           self.heldout["a_len"], window.banned).float()
            self.ho_ref_b = response_logps(reference, self.heldout["prefix"], self.heldout["b"],
                                           self.heldout["b_len"], window.banned).float()

    def _generators(self) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(run_seed("policy-samples", s.task, s.seed)) for s in self.specs]

    def measure(self, policy: BatchedGPT, *, with_accuracy: bool) -> list[dict[str, float]]:
        gens = self._generators()
        out: list[dict[str, float]] = []
        with torch.no_grad(), _autocast(self.device):
            banned, width = self.window.banned, self.window.width
            try:
                resp, length = sample(policy, self.prefix, width, gens, banned)
            except RuntimeError:  # non-finite probabilities after a blown-up update
                return [dict.fromkeys(("gold_reward", "kl", "win_rate", "accuracy"), math.nan)
                        for _ in self.specs]
            lp_pi = response_logps(policy, self.prefix, resp, length, banned).float()
            lp_ref = response_logps(self.reference, self.prefix, resp, length, banned).float()
            if with_accuracy:
                h = self.heldout
                imp_a = response_logps(policy, h["prefix"], h["a"], h["a_len"], banned).float() - self.ho_ref_a
                imp_b = response_logps(policy, h["prefix"], h["b"], h["b_len"], banned).float() - self.ho_ref_b
        for m in range(len(self.specs)):
            rewards = rewards_of(self.task, self.vocab, self.prefix[m].cpu(), resp[m].cpu(), length[m].cpu())
            point = {"gold_reward": float(rewards.mean()), "kl": float((lp_pi[m] - lp_ref[m]).mean()),
                     "win_rate": win_rate(rewards.tolist(), self.ref_reward[m].tolist()), "accuracy": math.nan}
            if with_accuracy:
                sign = torch.sign(self.heldout["ra"][m] - self.heldout["rb"][m]).to(imp_a.dtype)
                keep = (sign != 0) & self.heldout_ok[m]
                margin = ((imp_a[m] - imp_b[m]) * sign)[keep]
                if bool(keep.any()):
                    point["accuracy"] = float(((margin > 0).double() + 0.5 * (margin == 0).double()).mean())
            out.append(point)
        return out
