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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from evaluators.lm import Vocab, response_logps
from evaluators.metrics import win_rate
from evaluators.results import RunResult
from evaluators.suites import RunSpec
from evaluators.tasks import TextTask, make_task
from evaluators.tinylm import PairsRun, TrainingPairs, run_on_pairs
from evaluators.training import run_seed
from evaluators.typed_config import Config, build_dataclass

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
class GroupSpec(Config):
    name: str
    utility: str = "task"            # task | brevity | keyword:WORD
    annotator_share: float = 0.5     # share of the annotator pool
    population_share: float = 0.5    # target share in the population the policy serves
    temperature: float = 0.1         # Bradley-Terry temperature on the normalised utility


DEFAULT_GROUPS = (GroupSpec("positivity", "task", 0.85, 0.7), GroupSpec("brevity", "brevity", 0.15, 0.3))


@dataclass(frozen=True)
class PluralisticConfig(Config):
    groups: tuple[GroupSpec, ...] = DEFAULT_GROUPS
    annotators: int = 20             # pool size (split by annotator_share, at least 1 per group)
    overlap: int = 5                 # annotators per pair
    aggregation: Literal["majority", "dawid-skene", "bradley-terry", "plackett-luce"] = "majority"
    weighting: Literal["none", "poststrat", "raking"] = "none"  # targets = population_share
    by_group: bool = False           # one decision per group; pair weights carry group mass
    robust: Literal["none", "grpo"] = "none"   # grpo needs by_group
    grpo_eta: float = 0.5            # GRPO step size on the group weights
    objective: Literal["worst_group", "population"] = "worst_group"  # what RunResult.gold_reward holds

    def check(self) -> None:
        if self.robust == "grpo" and not self.by_group:
            raise ValueError("robust: grpo needs by_group: true")
        if abs(sum(g.population_share for g in self.groups) - 1) > 1e-6:
            raise ValueError("group population_share values must sum to 1")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> "PluralisticConfig":
        return build_dataclass(cls, raw, "pluralistic")


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


def _annotated_pairs(pcfg: PluralisticConfig, utils: list[Utility], state: dict[str, Any]):
    """The pluralistic ``label`` step: simulated annotators judge the reference's pairs, the aggregation
    pipeline turns the judgments into (weighted, per-group) pairs, and the candidate loss is wrapped
    in the weighted or group-robust reduction."""

    def label(run: PairsRun, loss_fn: Callable[..., Any]) -> TrainingPairs:
        from evaluators.granular import example_scales, group_robust_step

        spec, vocab, device, tr = run.spec, run.vocab, run.device, run.bundle["train"]
        # 1. simulated annotators judge the reference's pairs; the pipeline aggregates them
        prompts, resp_a = _decode(vocab, tr["prefix"], tr["a"], tr["a_len"])
        _, resp_b = _decode(vocab, tr["prefix"], tr["b"], tr["b_len"])
        utilities = np.stack([_group_utilities(utils, prompts, resp_a), _group_utilities(utils, prompts, resp_b)],
                             axis=-1)
        rng = np.random.default_rng(run_seed("pluralistic-annotators", spec.task, spec.seed, spec.noise) % 2**32)
        rows = simulate_rows([" ".join(p) for p in prompts], [" ".join(r) for r in resp_a],
                             [" ".join(r) for r in resp_b], utilities, pcfg, spec.noise, rng)
        pairs, agg_report = aggregate_pairs(rows, pcfg)
        state.update(pairs=len(pairs), judgments=len(rows), report=agg_report)

        # 2. training tensors: one row per aggregated pair (a pair may appear once per group)
        names = [g.name for g in pcfg.groups]
        idx = torch.tensor([int(p["provenance"]["item_id"]) for p in pairs], dtype=torch.long)
        a_chosen = torch.tensor([p["provenance"]["chosen_response_id"].endswith("a") for p in pairs])
        weights = torch.tensor([p["weight"] for p in pairs], dtype=torch.float32)
        groups = torch.tensor([names.index(p["group"]) if p["group"] in names else 0 for p in pairs],
                              dtype=torch.long)
        pick = a_chosen[:, None]

        # 3. the candidate loss, reduced over the batch the loop reports through on_batch
        def on_batch(batch: torch.Tensor) -> None:
            state["idx"] = batch.cpu()

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

        return TrainingPairs(
            prefix=tr["prefix"][idx].to(device),
            chosen=torch.where(pick, tr["a"][idx], tr["b"][idx]).to(device),
            chosen_len=torch.where(a_chosen, tr["a_len"][idx], tr["b_len"][idx]).to(device),
            rejected=torch.where(pick, tr["b"][idx], tr["a"][idx]).to(device),
            rejected_len=torch.where(a_chosen, tr["b_len"][idx], tr["a_len"][idx]).to(device),
            ref_chosen=torch.where(a_chosen, tr["ref_a"][idx], tr["ref_b"][idx]).to(device),
            ref_rejected=torch.where(a_chosen, tr["ref_b"][idx], tr["ref_a"][idx]).to(device),
            batch_size=min(run.cfg.train.batch_size, len(pairs)), loss_fn=reduced_loss, on_batch=on_batch)

    return label


def _group_scores(pcfg: PluralisticConfig, utils: list[Utility], state: dict[str, Any]):
    """The pluralistic ``evaluate`` step: every group scores the policy's and the reference's samples."""

    def evaluate(run: PairsRun, ev_prefix: torch.Tensor, resp: torch.Tensor, length: torch.Tensor,
                 flags: list[str]) -> RunResult:
        spec, ev, outcome = run.spec, run.bundle["eval"], run.outcome
        kl = run.kl_to_reference(ev_prefix, resp, length)
        accuracy = _heldout_accuracy(run.policy, run.bundle["heldout"], run.vocab, utils, pcfg, run.device)
        ev_prompts, ev_pol = _decode(run.vocab, ev_prefix.cpu(), resp.cpu(), length.cpu())
        _, ev_ref = _decode(run.vocab, ev["prefix"], ev["resp"], ev["len"])
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
        minority = min(range(len(pcfg.groups)), key=lambda i: pcfg.groups[i].annotator_share)
        agg_report = state["report"]
        return RunResult(
            task=spec.task, tier="pluralistic", seed=spec.seed, beta=spec.beta, noise=spec.noise,
            gold_reward=gold, kl=kl, win_rate=win, accuracy=accuracy, flags=run.final_flags(flags, gold, kl),
            wall_time_s=time.perf_counter() - run.start, curve=outcome.curve,
            extra={"reference_reward": ref_gold, "reward_range": 1.0, "objective": pcfg.objective,
                   "groups": per_group, "worst_group": worst, "population_weighted": popw,
                   "minority_group": pcfg.groups[minority].name,
                   "pairs": state["pairs"], "judgments": state["judgments"],
                   "ties_dropped": agg_report["ties_dropped"],
                   "pair_weight_by_group": {g: v.get("pair_weight_total") for g, v in agg_report["groups"].items()},
                   "grpo_alpha": state["alpha"].tolist() if pcfg.robust == "grpo" else None,
                   "pluralistic": _plain(asdict(pcfg)), "steps_done": outcome.steps_done,
                   "message": outcome.message, "reference_time_s": run.bundle["meta"].get("build_time_s")})

    return evaluate


def _sampling_failed(run: PairsRun, flags: list[str], message: str) -> RunResult:
    spec = run.spec
    return RunResult(task=spec.task, tier="pluralistic", seed=spec.seed, beta=spec.beta, noise=spec.noise,
                     gold_reward=math.nan, kl=math.nan, win_rate=math.nan, accuracy=math.nan, flags=flags,
                     wall_time_s=time.perf_counter() - run.start, curve=run.outcome.curve,
                     extra={"reference_reward": math.nan, "reward_range": 1.0})


def run_pluralistic(spec: RunSpec, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any],
                    cache_dir: Path, device: str | None = None) -> RunResult:
    """One pluralistic run: annotated, aggregated pairs -> train (weighted / GRPO) -> every group's utility."""
    pcfg = PluralisticConfig.from_dict(spec.config.get("pluralistic"))
    task = make_task(spec.task, **spec.task_params)
    utils = [make_utility(g.utility, task) for g in pcfg.groups]
    state: dict[str, Any] = {"idx": None, "alpha": torch.full((len(pcfg.groups),), 1.0 / len(pcfg.groups))}
    return run_on_pairs(spec, loss_fn, loss_kwargs, cache_dir, device, label=_annotated_pairs(pcfg, utils, state),
                        evaluate=_group_scores(pcfg, utils, state), on_sample_failure=_sampling_failed)


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
