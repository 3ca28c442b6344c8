"""Granular training: per-example weights, group-robust objectives and dimension conditioning.

Used by the pluralistic tier, the `hf` tier's TRL trainer and (copied verbatim, like
`evaluators/hf_trainer.py`) every `prefdisco export --to trl` module, so this file imports only
torch. Pure functions over per-example losses (what every `candidate_losses` fn returns):

* `weighted_mean(losses, weights)` - the reduction for pairs carrying a `weight` column.
* `condition_on_dimension(prompt, dimension)` - SteerLM-style attribute prefix so one policy can
  learn per-dimension preferences without conflating them.
* `group_robust_step(...)` / `GroupRobustReducer` - Group Robust Preference Optimisation
  (Ramesh et al. 2024): the objective is max over group weights alpha on the simplex of
  sum_g alpha_g L_g, optimised by exponentiated-gradient ascent on alpha,
  alpha_g <- alpha_g * exp(eta * L_g), renormalised, then loss = sum_g alpha_g L_g.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i w_i l_i / sum_i w_i (plain mean when weights is None; 0 when all weights are 0)."""
    if weights is None:
        return losses.mean()
    w = weights.to(losses.dtype)
    if w.shape != losses.shape:
        raise ValueError(f"weights shape {tuple(w.shape)} != losses shape {tuple(losses.shape)}")
    if bool((w < 0).any()):
        raise ValueError("example weights must be non-negative")
    return (w * losses).sum() / w.sum().clamp_min(torch.finfo(losses.dtype).tiny)


DIMENSION_TEMPLATE = "[{dimension}] "
ALL_GROUPS = "(all)"  # the group of pairs aggregated without --by-group


def condition_on_dimension(prompt, dimension: str | None, template: str = DIMENSION_TEMPLATE):
    """Prefix the prompt with the judged dimension (unchanged when the pair has none).

    A conversational prompt (list of {role, content}) gets the prefix on its first message."""
    if not dimension:
        return prompt
    tag = template.format(dimension=dimension)
    if isinstance(prompt, str):
        return tag + prompt
    messages = [dict(m) for m in prompt]
    if messages:
        messages[0]["content"] = tag + messages[0]["content"]
    return messages


def condition_pairs(pairs: Sequence[Mapping], template: str = DIMENSION_TEMPLATE) -> list[dict]:
    """TRL-format pairs with the dimension folded into the prompt (other fields kept)."""
    return [{**p, "prompt": condition_on_dimension(p["prompt"], p.get("dimension"), template)} for p in pairs]


def group_vocabulary(groups: Sequence) -> list[str]:
    """Sorted group names of a dataset's `group` column (None -> ALL_GROUPS)."""
    return sorted({ALL_GROUPS if g is None else str(g) for g in groups})


def prepare_granular_dataset(dataset, *, condition_dimensions: bool = True, groups: Sequence[str] | None = None,
                             group_column: str = "group", weight_column: str = "weight",
                             template: str = DIMENSION_TEMPLATE):
    """Ready `prefdisco aggregate` pairs (a `datasets.Dataset`) for the granular trainer.

    Adds an integer `group_id` column (index into the returned group names) when the dataset has
    `group_column`, folds `dimension` into the prompt when asked, renames `weight_column` to
    `weight`, and drops the other bookkeeping columns. Returns (dataset, group names).
    """
    names = list(groups) if groups is not None else (
        group_vocabulary(dataset[group_column]) if group_column in dataset.column_names else [])
    index = {g: i for i, g in enumerate(names)}

    def row(example):
        out = {}
        if condition_dimensions and "dimension" in example:
            out["prompt"] = condition_on_dimension(example["prompt"], example["dimension"], template)
        if names:
            g = example[group_column]
            out["group_id"] = index[ALL_GROUPS if g is None else str(g)]
        return out

    dataset = dataset.map(row)
    if weight_column in dataset.column_names and weight_column != "weight":
        dataset = dataset.rename_column(weight_column, "weight")
    drop = [c for c in ("provenance", "dimension", group_column) if c in dataset.column_names and c != "group_id"]
    return dataset.remove_columns(drop), names


def group_ids(groups: Sequence[Hashable], vocabulary: Sequence[Hashable] | None = None
              ) -> tuple[torch.Tensor, list[Hashable]]:
    """Map group labels (str/None) to a LongTensor of indices plus the label list."""
    vocab = list(vocabulary) if vocabulary is not None else sorted(set(groups), key=str)
    pos = {g: i for i, g in enumerate(vocab)}
    return torch.tensor([pos[g] for g in groups], dtype=torch.long), vocab


def group_mean_losses(losses: torch.Tensor, groups: torch.Tensor, num_groups: int,
                      weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_g per group [num_groups], present mask). L_g is the (weighted) mean of group g's losses."""
    w = torch.ones_like(losses) if weights is None else weights.to(device=losses.device, dtype=losses.dtype)
    zeros = torch.zeros(num_groups, dtype=losses.dtype, device=losses.device)
    sums = zeros.index_add(0, groups, w * losses)
    mass = zeros.index_add(0, groups, w)
    present = mass > 0
    return torch.where(present, sums / mass.clamp_min(torch.finfo(losses.dtype).tiny),
                       torch.zeros_like(sums)), present


def worst_group(group_losses: Mapping[str, float]) -> tuple[str, float] | None:
    """The group with the highest loss (the one a group-robust objective protects)."""
    return max(group_losses.items(), key=lambda kv: kv[1]) if group_losses else None


def group_robust_step(losses: torch.Tensor, groups: torch.Tensor, alpha: torch.Tensor, eta: float,
                      weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One GRPO step: returns (loss to backpropagate, updated alpha). Pure: alpha is not mutated.

    Only groups present in the batch are updated (an absent group has no loss estimate); the
    updated alpha is renormalised over all groups. Gradients flow through L_g, not through alpha.
    """
    group_losses, present = group_mean_losses(losses, groups, alpha.numel(), weights)
    step = torch.where(present, eta * group_losses.detach(), torch.zeros_like(group_losses))
    log_alpha = torch.log(alpha.to(device=losses.device, dtype=losses.dtype).clamp_min(1e-30)) + step
    new_alpha = torch.softmax(log_alpha, dim=0)  # = alpha*exp(eta L)/sum(...), computed stably
    loss = (new_alpha.detach() * group_losses * present).sum()
    return loss, new_alpha.detach()


def example_scales(groups: torch.Tensor | None, alpha: torch.Tensor | None = None,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example multipliers m_i such that mean_i(m_i * l_i) equals the granular reduction.

    For trainers that can only take the plain mean of per-example losses (TRL, a shared loop):
    * weights only: m_i = B * w_i / sum(w)                    -> weighted_mean(l, w)
    * groups + alpha: m_i = B * alpha_g w_i / sum_{j in g} w_j -> sum_g alpha_g L_g (GRPO)
    """
    if groups is None or alpha is None:
        if weights is None:
            raise ValueError("give weights, or groups and alpha")
        w = weights.double()
        return (w * w.numel() / w.sum().clamp_min(1e-300)).float()
    w = torch.ones(groups.shape, dtype=torch.float64) if weights is None else weights.double()
    mass = torch.zeros(alpha.numel(), dtype=torch.float64).index_add(0, groups, w)
    return (groups.numel() * alpha.double()[groups] * w / mass[groups].clamp_min(1e-300)).float()


class GroupRobustReducer:
    """Stateful wrapper for training loops: `loss = reducer(per_example_losses, group_ids)`."""

    def __init__(self, num_groups: int, eta: float = 0.01, initial: Sequence[float] | None = None):
        if num_groups < 1:
            raise ValueError("num_groups must be >= 1")
        a = torch.full((num_groups,), 1.0 / num_groups) if initial is None else torch.tensor(initial, dtype=torch.float64)
        self.alpha = (a / a.sum()).double()
        self.eta = eta

    def __call__(self, losses: torch.Tensor, groups: torch.Tensor, weights: torch.Tensor | None = None
                 ) -> torch.Tensor:
        loss, alpha = group_robust_step(losses, groups, self.alpha, self.eta, weights)
        self.alpha = alpha.double().cpu()
        return loss

    def state_dict(self) -> dict:
        return {"alpha": self.alpha.tolist(), "eta": self.eta}
