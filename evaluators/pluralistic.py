"""Tier "pluralistic": preference training when annotator groups want different things.

One run = one (task, seed, noise, beta) of a tinylm task, but the labels come from a simulated
annotator population instead of one gold reward: each group has its own gold utility (e.g. one
values positivity, one values brevity), its own share of the annotator pool and of the target
population, and every annotator flips a ``noise`` fraction of answers. Each cached reference pair
is judged by ``overlap`` random annotators (Bradley-Terry on the group's utility); the judgments
go through the real aggregation pipeline (`preference_data.aggregation`: majority / Dawid-Skene /
BT, optional per-group pairs with post-stratified or raked weights); the policy is trained with
the candidate loss, reduced by weighted mean or by the group-robust (GRPO) reducer; then samples
of the policy are scored by every group's utility.

Per-group reward = mean normalised utility (in [0, 1]) of policy samples on the eval prompts.
RunResult.gold_reward is the configured objective: ``worst_group`` (min over groups) or
``population`` (population-share-weighted mean); the per-group numbers are in ``extra["groups"]``.
The reference (SFT model, sampled pairs, eval prompts) is the tinylm tier's cache, shared with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from evaluators.lm import Vocab, response_logps, sample
from evaluators.metrics import win_rate
from evaluators.reference import _autocast, load_or_build_reference
from evaluators.results import RunResult
from evaluators.suites import RunSpec
from evaluators.tasks import TextTask, make_task
from evaluators.tinylm import reference_and_policy
from evaluators.tinylm_config import TinyLMConfig
from evaluators.training import run_seed, train_preference

Utility = Callable[[list[str], list[str]], float]  # (prompt words, response words) -> [0, 1]


def make_utility(name: str, task: TextTask) -> Utility:
    """Normalised group utilities: ``task`` (the task's gold reward), ``brevity``, ``keyword:W``."""
    lo, hi = task.reward_range
    if name == "task":
        return lambda p, r: (task.gold_reward(p, r) - lo) / (hi - lo)
    if name == "brevity":
        return lambda p, r: 1.0 - min(len(r), task.max_response_len) / task.max_response_len
    if name.startswith("keyword:"):
        word = name.split(":", 1)[1]
        return lambda p, r: float(word in r)
    raise ValueError(f"unknown group utility {name!r}; use task, brevity or keyword:WORD")


@dataclass(frozen=True)
class GroupSpec:
    name: str
    utility: str = "task"            # task | brevity | keyword:WORD
    annotator_share: float = 0.5     # share of the annotator pool
    population_share: float = 0.5    # target share in the population the policy serves
    temperature: float = 0.1         # Bradley-Terry temperature on the normalised utility


DEFAULT_GROUPS = (GroupSpec("positivity", "task", 0.85, 0.7), GroupSpec("brevity", "brevity", 0.15, 0.3))


@dataclass(frozen=True)
class PluralisticConfig:
    groups: tuple[GroupSpec, ...] = DEFAULT_GROUPS
    annotators: int = 20             # pool size (split by annotator_share, at least 1 per group)
    overlap: int = 5                 # annotators per pair
    aggregation: str = "majority"    # majority | dawid-skene | bradley-terry | plackett-luce
    weighting: str = "none"          # none | poststrat | raking (targets = population_share)
    by_group: bool = False           # one decision per group; pair weights carry group mass
    robust: str = "none"             # none | grpo (needs by_group)
    grpo_eta: float = 0.5            # GRPO step size on the group weights
    objective: str = "worst_group"   # worst_group | population: what RunResult.gold_reward holds

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> "PluralisticConfig":
        raw = dict(raw or {})
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"pluralistic: unknown keys {sorted(unknown)}")
        if "groups" in raw:
            raw["groups"] = tuple(GroupSpec(**g) for g in raw["groups"])
        cfg = cls(**raw)
        if cfg.robust not in ("none", "grpo") or (cfg.robust == "grpo" and not cfg.by_group):
            raise ValueError("pluralistic.robust must be none, or grpo with by_group: true")
        if cfg.objective not in ("worst_group", "population"):
            raise ValueError("pluralistic.objective must be worst_group or population")
        if abs(sum(g.population_share for g in cfg.groups) - 1) > 1e-6:
            raise ValueError("pluralistic group population_share values must sum to 1")
        return cfg


def annotator_pool(cfg: PluralisticConfig) -> list[int]:
    """Group index of each annotator: shares rounded, every group keeps at least one member."""
    counts = [max(1, round(g.annotator_share * cfg.annotators)) for g in cfg.groups]
    return [gi for gi, n in enumerate(counts) for _ in range(n)]


def simulate_rows(prompts: list[str], texts_a: list[str], texts_b: list[str], utilities: np.ndarray,
                  cfg: PluralisticConfig, noise: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Export-format judgment rows. utilities: [groups, pairs, 2] normalised utilities of (a, b)."""
    pool = annotator_pool(cfg)
    temps = np.array([g.temperature for g in cfg.groups])
    rows = []
    k = min(cfg.overlap, len(pool))
    for i in range(len(prompts)):
        responses = [{"response_id": f"{i}a", "text": texts_a[i]}, {"response_id": f"{i}b", "text": texts_b[i]}]
        for ann in rng.choice(len(pool), size=k, replace=False):
            g = pool[ann]
            p_a = 1.0 / (1.0 + math.exp(-(utilities[g, i, 0] - utilities[g, i, 1]) / max(temps[g], 1e-8)))
            a_wins = (rng.random() < p_a) != (rng.random() < noise)
            rows.append({"judgment_id": f"j{len(rows)}", "project": "pluralistic", "item_id": str(i),
                         "prompt": prompts[i], "responses": responses, "dimension": "overall",
                         "scale": "pairwise", "value": f"{i}a" if a_wins else f"{i}b",
                         "annotator_id": f"ann{ann:03d}", "annotator_attributes": {"group": cfg.groups[g].name}})
    return rows


def _decode(vocab: Vocab, prefix: torch.Tensor, resp: torch.Tensor, length: torch.Tensor
            ) -> tuple[list[list[str]], list[list[str]]]:
    prompts = [[vocab.tokens[t] for t in p[1:-1]] for p in prefix.tolist()]
    return prompts, [vocab.decode_response(r, n) for r, n in zip(resp.tolist(), length.tolist())]


def _group_utilities(utils: list[Utility], prompts: list[list[str]], responses: list[list[str]]) -> np.ndarray:
    return np.array([[u(p, r) for p, r in zip(prompts, responses)] for u in utils])


def aggregate_pairs(rows: list[dict[str, Any]], cfg: PluralisticConfig) -> tuple[list[dict[str, Any]], dict]:
    from preference_data.aggregation import AggregationConfig, aggregate, parse_judgments
    shares = {"group": {g.name: g.population_share for g in cfg.groups}}
    res = aggregate(parse_judgments(rows), AggregationConfig(
        method=cfg.aggregation, weighting=cfg.weighting, by_group=cfg.by_group, group_attribute="group",
        population_shares=shares, with_report=False))
    return res.pairs, res.report


def reference_specs(spec: RunSpec, cache_dir: Any = None) -> list[tuple[Any, int, TinyLMConfig]]:
    """The cached reference one run needs (built by the parent before the job)."""
    return [(make_task(spec.task, **spec.task_params), spec.seed, TinyLMConfig.from_dict(spec.config))]


def run_pluralistic(spec: RunSpec, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any],
                    cache_dir: Path, device: str | None = None) -> RunResult:
    from evaluators.tinylm import pick_device
    from preference_data.weighting import example_scales, group_robust_step

    start = time.perf_counter()
    device = device or pick_device()
    cfg = TinyLMConfig.from_dict(spec.config)
    pcfg = PluralisticConfig.from_dict(spec.config.get("pluralistic"))
    task = make_task(spec.task, **spec.task_params)
    bundle = load_or_build_reference(task, spec.seed, cfg, cache_dir, device)
    meta, vocab = bundle["meta"], Vocab(task.vocabulary())
    utils = [make_utility(g.utility, task) for g in pcfg.groups]
    tr = bundle["train"]

    # 1. simulated annotators judge the reference's pairs; the pipeline aggregates them
    prompts, resp_a = _decode(vocab, tr["prefix"], tr["a"], tr["a_len"])
    _, resp_b = _decode(vocab, tr["prefix"], tr["b"], tr["b_len"])
    utilities = np.stack([_group_utilities(utils, prompts, resp_a), _group_utilities(utils, prompts, resp_b)], axis=-1)
    rng = np.random.default_rng(run_seed("pluralistic-annotators", spec.task, spec.seed, spec.noise) % 2**32)
    rows = simulate_rows([" ".join(p) for p in prompts], [" ".join(r) for r in resp_a],
                         [" ".join(r) for r in resp_b], utilities, pcfg, spec.noise, rng)
    pairs, agg_report = aggregate_pairs(rows, pcfg)

    # 2. training tensors: one row per aggregated pair (a pair may appear once per group)
    names = [g.name for g in pcfg.groups]
    idx = torch.tensor([int(p["provenance"]["item_id"]) for p in pairs], dtype=torch.long)
    a_chosen = torch.tensor([p["provenance"]["chosen_response_id"].endswith("a") for p in pairs])
    weights = torch.tensor([p["weight"] for p in pairs], dtype=torch.float32)
    groups = torch.tensor([names.index(p["group"]) if p["group"] in names else 0 for p in pairs], dtype=torch.long)
    pick = a_chosen[:, None]
    chosen = torch.where(pick, tr["a"][idx], tr["b"][idx]).to(device)
    rejected = torch.where(pick, tr["b"][idx], tr["a"][idx]).to(device)
    chosen_len = torch.where(a_chosen, tr["a_len"][idx], tr["b_len"][idx]).to(device)
    rejected_len = torch.where(a_chosen, tr["b_len"][idx], tr["a_len"][idx]).to(device)
    ref_chosen = torch.where(a_chosen, tr["ref_a"][idx], tr["ref_b"][idx]).to(device)
    ref_rejected = torch.where(a_chosen, tr["ref_b"][idx], tr["ref_a"][idx]).to(device)
    prefix = tr["prefix"][idx].to(device)

    reference, policy = reference_and_policy(bundle, len(vocab), cfg, device)

    # 3. train with the candidate loss; the reducer sees the batch through the recorded indices
    state: dict[str, Any] = {"idx": None, "alpha": torch.full((len(names),), 1.0 / len(names))}

    def policy_logps(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state["idx"] = batch.cpu()
        both = response_logps(policy, torch.cat([prefix[batch], prefix[batch]]),
                              torch.cat([chosen[batch], rejected[batch]]),
                              torch.cat([chosen_len[batch], rejected_len[batch]]))
        return both[: batch.shape[0]], both[batch.shape[0]:]

    def reduced_loss(pc, pr, rc, rr, beta, **kw):  # type: ignore[no-untyped-def]
        losses = loss_fn(pc, pr, rc, rr, beta, **kw)
        if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (pc.shape[0],):
            return losses  # let the shared loop flag the contract violation
        b = state["idx"]
        if pcfg.robust == "grpo":
            _, state["alpha"] = group_robust_step(losses.detach().float().cpu(), groups[b], state["alpha"],
                                                  pcfg.grpo_eta, weights[b])
            scales = example_scales(groups[b], state["alpha"], weights[b])
        else:
            scales = example_scales(None, weights=weights[b])
        return losses * scales.to(losses.device, losses.dtype)

    policy.train()
    outcome = train_preference(
        parameters=policy.parameters(), policy_logps=policy_logps, reference_chosen=ref_chosen,
        reference_rejected=ref_rejected, loss_fn=reduced_loss, beta=spec.beta, loss_kwargs=loss_kwargs,
        steps=cfg.train.steps, batch_size=min(cfg.train.batch_size, len(pairs)), lr=cfg.train.lr,
        grad_clip=cfg.train.grad_clip, weight_decay=cfg.train.weight_decay, log_every=cfg.train.log_every,
        generator=torch.Generator().manual_seed(run_seed("order", spec.task, spec.seed, spec.noise)),
        autocast=lambda: _autocast(device))
    policy.eval()

    # 4. every group scores the policy's samples and the reference's samples
    flags = list(outcome.flags)
    ev = bundle["eval"]
    with torch.no_grad(), _autocast(device):
        ev_prefix = ev["prefix"].to(device)
        gen = torch.Generator().manual_seed(run_seed("policy-samples", spec.task, spec.seed))
        try:
            resp, length = sample(policy, ev_prefix, task.max_response_len + 1, gen)
        except RuntimeError:
            flags.append("nan")
            resp, length = None, None
        if resp is not None:
            kl = float((response_logps(policy, ev_prefix, resp, length).float()
                        - response_logps(reference, ev_prefix, resp, length).float()).mean())
            accuracy = _heldout_accuracy(policy, bundle["heldout"], vocab, utils, pcfg, device)
    if resp is None:
        return RunResult(task=spec.task, tier="pluralistic", seed=spec.seed, beta=spec.beta, noise=spec.noise,
                         gold_reward=math.nan, kl=math.nan, win_rate=math.nan, accuracy=math.nan, flags=flags,
                         wall_time_s=time.perf_counter() - start, curve=outcome.curve,
                         extra={"reference_reward": math.nan, "reward_range": 1.0})
    ev_prompts, ev_pol = _decode(vocab, ev_prefix.cpu(), resp.cpu(), length.cpu())
    _, ev_ref = _decode(vocab, ev["prefix"], ev["resp"], ev["len"])
    u_pol, u_ref = _group_utilities(utils, ev_prompts, ev_pol), _group_utilities(utils, ev_prompts, ev_ref)
    shares = np.array([g.population_share for g in pcfg.groups])
    per_group = {g.name: {"gold": float(u_pol[i].mean()), "reference": float(u_ref[i].mean()),
                          "gain": float(u_pol[i].mean() - u_ref[i].mean()), "utility": g.utility,
                          "annotator_share": g.annotator_share, "population_share": g.population_share}
                 for i, g in enumerate(pcfg.groups)}
    worst, ref_worst = float(u_pol.mean(axis=1).min()), float(u_ref.mean(axis=1).min())
    popw, ref_popw = float(shares @ u_pol.mean(axis=1)), float(shares @ u_ref.mean(axis=1))
    gold, ref_gold = (worst, ref_worst) if pcfg.objective == "worst_group" else (popw, ref_popw)
    win = win_rate((shares @ u_pol).tolist(), (shares @ u_ref).tolist())
    if not all(math.isfinite(x) for x in (gold, kl)):
        flags.append("nan")
    elif kl > cfg.train.diverge_kl:
        flags.append("diverged")
    minority = min(range(len(pcfg.groups)), key=lambda i: pcfg.groups[i].annotator_share)
    return RunResult(
        task=spec.task, tier="pluralistic", seed=spec.seed, beta=spec.beta, noise=spec.noise,
        gold_reward=gold, kl=kl, win_rate=win, accuracy=accuracy, flags=flags,
        wall_time_s=time.perf_counter() - start, curve=outcome.curve,
        extra={"reference_reward": ref_gold, "reward_range": 1.0, "objective": pcfg.objective,
               "groups": per_group, "worst_group": worst, "population_weighted": popw,
               "minority_group": pcfg.groups[minority].name,
               "pairs": len(pairs), "judgments": len(rows), "ties_dropped": agg_report["ties_dropped"],
               "pair_weight_by_group": {g: v["pair_weight_total"] for g, v in agg_report["groups"].items()},
               "grpo_alpha": state["alpha"].tolist() if pcfg.robust == "grpo" else None,
               "pluralistic": _plain(asdict(pcfg)), "steps_done": outcome.steps_done,
               "message": outcome.message, "reference_time_s": meta.get("build_time_s")})


def _heldout_accuracy(policy: torch.nn.Module, ho: dict[str, torch.Tensor], vocab: Vocab, utils: list[Utility],
                      pcfg: PluralisticConfig, device: str) -> float:
    """Held-out pairs ordered by the implicit reward log pi - log pi_ref vs the population utility."""
    shares = np.array([g.population_share for g in pcfg.groups])
    prompts, ra = _decode(vocab, ho["prefix"], ho["a"], ho["a_len"])
    _, rb = _decode(vocab, ho["prefix"], ho["b"], ho["b_len"])
    gold = shares @ _group_utilities(utils, prompts, ra) - shares @ _group_utilities(utils, prompts, rb)
    h = {k: v.to(device) for k, v in ho.items()}
    imp = ((response_logps(policy, h["prefix"], h["a"], h["a_len"]).float() - h["ref_a"])
           - (response_logps(policy, h["prefix"], h["b"], h["b_len"]).float() - h["ref_b"])).cpu().numpy()
    keep = np.abs(gold) > 1e-12
    if not keep.any():
        return math.nan
    right = np.sign(imp[keep]) == np.sign(gold[keep])
    ties = imp[keep] == 0
    return float((right & ~ties).mean() + 0.5 * ties.mean())


def _plain(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x
