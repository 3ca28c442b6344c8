"""The tinylm backend of the SPA loop (``loop.run_loop``): a tinylm task whose gold reward is ground truth.

The gold seed is the tier's cached reference pairs labelled by Bradley-Terry on the gold reward;
fresh prompts come from the task; every label is audited against the gold reward (never trained
on), and after every stage the policy is measured like the tinylm tier measures a run: mean gold
reward of its samples on the evaluation prompts, Monte-Carlo sequence KL to pi_init, win rate
against pi_init's samples, held-out implicit-reward accuracy.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

from evaluators.lm import Vocab, build_model, sample
from evaluators.metrics import win_rate
from evaluators.paths import default_cache_dir
from evaluators.reference import _autocast, load_or_build_reference, rewards_of
from evaluators.tasks import TextTask, make_task
from evaluators.tinylm_config import TinyLMConfig
from evaluators.training import bradley_terry_labels, run_seed
from preference_data.spa.config import SPAConfig
from preference_data.spa.judges import PairBatch, judge_pairs, make_judge
from preference_data.spa.loop import SPAResult, StageRecord, resolve_loss, run_loop
from preference_data.spa.refinement import dnd_lambda
from preference_data.spa.rounds import (PairTensors, RoundConfig, sequence_logps, steps_for,
                                        train_round)
from preference_data.spa.store import LabelledPair


class _Tempered(torch.nn.Module):
    """Divides a causal LM's logits by a temperature, so the tier's sampler samples at T != 1."""

    def __init__(self, model: torch.nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, **kwargs: Any) -> SimpleNamespace:
        return SimpleNamespace(logits=self.model(**kwargs).logits / self.temperature)


def _texts(vocab: Vocab, prefix: torch.Tensor, resp: torch.Tensor, length: torch.Tensor
           ) -> tuple[list[str], list[str]]:
    prompts = [" ".join(vocab.tokens[i] for i in p[1:-1]) for p in prefix.tolist()]
    responses = [" ".join(vocab.decode_response(r, n)) for r, n in zip(resp.tolist(), length.tolist())]
    return prompts, responses


def _same_response(a: torch.Tensor, a_len: torch.Tensor, b: torch.Tensor, b_len: torch.Tensor) -> torch.Tensor:
    width = a.shape[1]
    mask = torch.arange(width, device=a.device)[None, :] < a_len[:, None]
    return (a_len == b_len) & ((a == b) | ~mask).all(dim=1)


class TinyLMBackend:
    """Models, data and training of one SPA run on a tinylm task (see ``loop.Backend``)."""

    name = "tinylm"

    def __init__(self, cfg: SPAConfig, device: str, seed_noise: float = 0.0) -> None:
        self.cfg, self.device, self.seed_noise = cfg, device, seed_noise
        self.task: TextTask = make_task(cfg.task.name, **cfg.task.params)
        self.tcfg = TinyLMConfig.from_dict({"model": cfg.reference.model, "sft": cfg.reference.sft,
                                            "data": cfg.reference.data})
        if cfg.data.seed_pairs > self.tcfg.data.train_pairs:
            raise ValueError(f"data.seed_pairs ({cfg.data.seed_pairs}) exceeds the reference's "
                             f"train_pairs ({self.tcfg.data.train_pairs}); raise reference.data.train_pairs")
        cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        self.bundle = load_or_build_reference(self.task, cfg.seed, self.tcfg, cache, device)
        meta = self.bundle["meta"]
        self.vocab = Vocab(self.task.vocabulary())
        self.init = build_model(len(self.vocab), meta["n_positions"], self.tcfg.model, 0)
        self.init.load_state_dict(self.bundle["model"])
        self.init.to(device).eval().requires_grad_(False)
        self.width = self.task.max_response_len + 1
        self.autocast = lambda: _autocast(device)

    def seed(self, tag: str, *parts: Any) -> int:
        return run_seed("spa", tag, self.cfg.task.name, self.cfg.seed, *parts)

    def judges(self, client: Any | None) -> tuple[Any, list[Any]]:
        cfg = self.cfg
        return make_judge(cfg.judge, beta=cfg.judge_beta(), label_temperature=self.task.label_temperature,
                          generator=torch.Generator().manual_seed(self.seed("judge")), device=self.device,
                          client=client), []

    def dnd_lambda(self, stage: int) -> float | None:
        r = self.cfg.refinement
        return dnd_lambda(stage, r.dnd_lambda, r.dnd_decay) if r.dnd and stage > 0 else None

    def count(self, pairs: PairTensors) -> int:
        return len(pairs)

    def with_seed(self, fresh: PairTensors, seed: PairTensors) -> PairTensors:
        return PairTensors.cat([fresh, seed])

    def seed_pairs(self) -> tuple[PairTensors, list[LabelledPair]]:
        """The first ``data.seed_pairs`` reference pairs, labelled by Bradley-Terry on the gold reward
        (each label flipped with probability ``seed_noise``: the suite's noise axis)."""
        noise = self.seed_noise
        n = self.cfg.data.seed_pairs
        tr = {k: v[:n] for k, v in self.bundle["train"].items()}
        a_wins = bradley_terry_labels(tr["ra"], tr["rb"], self.task.label_temperature, noise,
                                      torch.Generator().manual_seed(self.seed("seed-labels", noise)))
        p_a = torch.sigmoid((tr["ra"] - tr["rb"]) / max(self.task.label_temperature, 1e-8))
        label_prob = torch.where(a_wins, p_a, 1 - p_a)
        tensors, records = self._assign(tr["prefix"], tr["a"], tr["a_len"], tr["b"], tr["b_len"], a_wins,
                                        tr["ra"], tr["rb"], label_prob, 0, "gold-seed", self_labelled=False)
        return _to(tensors, self.device), records

    def _assign(self, prefix, a, a_len, b, b_len, a_wins, ra, rb, label_prob, iteration: int,
                judge: str, self_labelled: bool) -> tuple[PairTensors, list[LabelledPair]]:
        pick = a_wins[:, None]
        tensors = PairTensors(
            prefix=prefix, chosen=torch.where(pick, a, b), chosen_len=torch.where(a_wins, a_len, b_len),
            rejected=torch.where(pick, b, a), rejected_len=torch.where(a_wins, b_len, a_len),
            self_labelled=torch.full((prefix.shape[0],), self_labelled, dtype=torch.bool))
        prompts, chosen = _texts(self.vocab, prefix, tensors.chosen, tensors.chosen_len)
        _, rejected = _texts(self.vocab, prefix, tensors.rejected, tensors.rejected_len)
        gold_c, gold_r = torch.where(a_wins, ra, rb), torch.where(a_wins, rb, ra)
        records = [LabelledPair(pair_id=f"i{iteration}-{k}", iteration=iteration, prompt=prompts[k],
                                chosen=chosen[k], rejected=rejected[k], judge=judge,
                                label_prob=float(label_prob[k]), gold_chosen=float(gold_c[k]),
                                gold_rejected=float(gold_r[k]))
                   for k in range(prefix.shape[0])]
        return tensors, records

    @torch.no_grad()
    def self_label(self, policy: torch.nn.Module, iteration: int, judge: Any, others: list[Any],
                   record: StageRecord) -> tuple[PairTensors, list[LabelledPair]]:
        """Sample two responses per fresh prompt from ``policy`` and label them with ``judge``."""
        n = self.cfg.data.prompts_per_iteration[iteration - 1]
        rng = random.Random(self.seed("prompts", iteration))
        prefix = torch.tensor([self.vocab.prefix(self.task.sample_prompt(rng)) for _ in range(n)],
                              dtype=torch.long, device=self.device)
        gen = torch.Generator().manual_seed(self.seed("responses", iteration))
        tempered = _Tempered(policy, self.cfg.sampling.temperature)
        with self.autocast():
            a, a_len = sample(tempered, prefix, self.width, gen)
            b, b_len = sample(tempered, prefix, self.width, gen)
        keep = torch.ones(n, dtype=torch.bool, device=self.device)
        if self.cfg.sampling.drop_identical:
            keep = ~_same_response(a, a_len, b, b_len)
        prefix, a, a_len, b, b_len = (t[keep] for t in (prefix, a, a_len, b, b_len))
        record.dropped_identical = n - int(keep.sum())
        cpu = [t.cpu() for t in (prefix, a, a_len, b, b_len)]
        ra, rb = rewards_of(self.task, self.vocab, cpu[0], cpu[1], cpu[2]), \
            rewards_of(self.task, self.vocab, cpu[0], cpu[3], cpu[4])
        prompts, a_text = _texts(self.vocab, *cpu[:3])
        _, b_text = _texts(self.vocab, cpu[0], cpu[3], cpu[4])
        batch = PairBatch(prompts, a_text, b_text, gold_a=ra, gold_b=rb,
                          len_a=cpu[2].double(), len_b=cpu[4].double())
        if self.cfg.judge.kind == "implicit":
            batch.policy_a = sequence_logps(policy, prefix, a, a_len).double().cpu()
            batch.policy_b = sequence_logps(policy, prefix, b, b_len).double().cpu()
            batch.init_a = sequence_logps(self.init, prefix, a, a_len).double().cpu()
            batch.init_b = sequence_logps(self.init, prefix, b, b_len).double().cpu()
        a_wins, label_prob = judge_pairs(judge, batch)
        tensors, records = self._assign(*cpu, a_wins, ra, rb, label_prob, iteration, judge.name, True)
        return _to(tensors, self.device), records

    def train(self, policy: torch.nn.Module, reference: torch.nn.Module, pairs: PairTensors,
              new: list[LabelledPair], stage: int, record: StageRecord, loss_fn: Callable[..., Any],
              loss_kwargs: dict[str, Any]) -> None:
        """One round of the tier's trainer (reference = pi_{i-1}, refinement after stage 0)."""
        cfg = self.cfg
        epochs = cfg.train.seed_epochs if stage == 0 else cfg.train.iteration_epochs
        record.steps = steps_for(epochs, len(pairs), cfg.train.batch_size)
        rc = _round_config(cfg, record.steps, stage)
        if len(pairs) == 0:
            return
        out = train_round(policy, reference, pairs, loss_fn, loss_kwargs, rc,
                          torch.Generator().manual_seed(self.seed("order", stage)), self.autocast)
        record.flags += out.train.flags
        record.message, record.curve = out.train.message, out.train.curve
        for k, rec in enumerate(new):
            if stage > 0:
                conf = float(out.confidence[k])
                rec.confidence = conf if math.isfinite(conf) else None
                rec.flagged, rec.smoothing = bool(out.flagged[k]), float(out.smoothing[k])
            rec.extra = {"dnd_lambda": rc.dnd_lambda, "seed": cfg.seed}

    def label_stats(self, record: StageRecord, new: list[LabelledPair], stage: int) -> None:
        _label_stats(record, new)

    def result_fields(self) -> dict[str, Any]:
        rr = self.task.reward_range
        ev = self.bundle["eval"]
        n = self.cfg.data.eval_prompts or ev["prefix"].shape[0]
        return {"reference_reward": float(self.bundle["meta"]["reference_reward"]), "reward_range": rr[1] - rr[0],
                "gold_fraction": self.cfg.data.gold_fraction,
                "reference_length": float(ev["len"][:n].double().mean())}

    @torch.no_grad()
    def measure(self, policy: torch.nn.Module, record: StageRecord, stage: int) -> None:
        """Gold reward, KL to pi_init and win rate of ``policy`` (the tinylm tier's measurements);
        nothing after a failed stage."""
        if record.flags and record.flags != ["no_gradient"]:
            return
        ev = self.bundle["eval"]
        n = self.cfg.data.eval_prompts or ev["prefix"].shape[0]
        prefix = ev["prefix"][:n].to(self.device)
        gen = torch.Generator().manual_seed(run_seed("policy-samples", self.cfg.task.name, self.cfg.seed))
        try:
            with self.autocast():
                resp, length = sample(policy, prefix, self.width, gen)
        except RuntimeError as exc:   # non-finite probabilities after a blown-up update
            record.flags.append("nan")
            record.message = f"sampling failed: {exc}"[:300]
            return
        rewards = rewards_of(self.task, self.vocab, prefix.cpu(), resp.cpu(), length.cpu())
        with self.autocast():
            kl = (sequence_logps(policy, prefix, resp, length) - sequence_logps(self.init, prefix, resp, length))
            ho = {k: v.to(self.device) for k, v in self.bundle["heldout"].items()}
            imp_a = sequence_logps(policy, ho["prefix"], ho["a"], ho["a_len"]) - ho["ref_a"]
            imp_b = sequence_logps(policy, ho["prefix"], ho["b"], ho["b_len"]) - ho["ref_b"]
        sign = torch.sign(ho["ra"] - ho["rb"]).to(imp_a.dtype)
        margin = ((imp_a - imp_b) * sign)[sign != 0]
        record.gold_reward = float(rewards.mean())
        record.response_length = float(length.double().mean())
        record.kl = float(kl.float().mean())
        record.win_rate = win_rate(rewards.tolist(), ev["reward"][:n].tolist())
        record.heldout_accuracy = float(((margin > 0).double() + 0.5 * (margin == 0).double()).mean()) \
            if margin.numel() else math.nan
        if not math.isfinite(record.gold_reward + record.kl):
            record.flags.append("nan")


def _to(p: PairTensors, device: str) -> PairTensors:
    return PairTensors(*(getattr(p, k).to(device) for k in
                         ("prefix", "chosen", "chosen_len", "rejected", "rejected_len", "self_labelled")))


def _round_config(cfg: SPAConfig, steps: int, iteration: int) -> RoundConfig:
    r, t = cfg.refinement, cfg.train
    return RoundConfig(
        steps=steps, batch_size=t.batch_size, lr=t.lr, grad_clip=t.grad_clip,
        weight_decay=t.weight_decay, beta=t.beta, refine=r.enabled and iteration > 0,
        alpha=r.alpha, noise_fraction=r.noise_fraction, warmup_fraction=r.warmup_fraction,
        threshold_window=r.threshold_window,
        dnd_lambda=dnd_lambda(iteration, r.dnd_lambda, r.dnd_decay) if r.dnd and iteration > 0 else None,
        threshold_rule=r.threshold, lr_schedule=t.lr_schedule, warmup=t.warmup)


def _label_stats(record: StageRecord, pairs: list[LabelledPair]) -> None:
    def acc(items: list[LabelledPair]) -> float:
        votes = [p.gold_agrees for p in items if p.gold_agrees is not None]
        return sum(votes) / len(votes) if votes else math.nan

    record.label_accuracy = acc(pairs)
    record.label_ties = sum(p.gold_agrees is None for p in pairs)
    record.mean_label_prob = sum(p.label_prob for p in pairs) / max(1, len(pairs))
    record.flagged_share = sum(p.flagged for p in pairs) / max(1, len(pairs))
    record.flagged_label_accuracy = acc([p for p in pairs if p.flagged])
    record.unflagged_label_accuracy = acc([p for p in pairs if not p.flagged])


def run_spa(cfg: SPAConfig, loss_fn: Callable[..., Any] | None = None, *,
            loss_kwargs: dict[str, Any] | None = None, seed_noise: float = 0.0,
            device: str | None = None, judge_client: Any | None = None,
            on_stage: Callable[[StageRecord], None] | None = None) -> SPAResult:
    """Seed DPO + ``cfg.iterations`` SPA rounds on a tinylm task; ``loss_fn`` (contract) defaults to
    ``cfg.train.loss``. ``seed_noise`` flips each gold seed label with that probability."""
    start = time.perf_counter()
    if device is None:
        from evaluators.tinylm import pick_device
        device = pick_device()
    loss_fn, loss_kwargs = resolve_loss(cfg, loss_fn, loss_kwargs)
    torch.manual_seed(cfg.seed)
    backend = TinyLMBackend(cfg, device, seed_noise)
    return run_loop(backend, cfg, loss_fn, loss_kwargs, judge_client=judge_client, on_stage=on_stage, start=start)
