"""Granular training on aggregated human preferences: per-pair weights and group-robust reduction.

Pure torch functions over per-example losses (what every `candidate_losses` fn returns), used by
the pluralistic tier (the hf tier takes a ``weight`` column through its TRL trainer instead):

* `example_scales(...)` - per-example multipliers that turn a trainer's plain mean into the
  weighted mean sum_i w_i l_i / sum_i w_i, or into the group-robust objective below.
* `group_robust_step(...)` - Group Robust Preference Optimisation (Ramesh et al. 2024): the
  objective is max over group weights alpha on the simplex of sum_g alpha_g L_g, optimised by
  exponentiated-gradient ascent on alpha, alpha_g <- alpha_g * exp(eta * L_g), renormalised.
* `condition_on_dimension(prompt, dimension)` - SteerLM-style attribute prefix so one policy can
  learn per-dimension preferences without conflating them.
"""

from __future__ import annotations


import torch


DIMENSION_TEMPLATE = "[{dimension}] "


def condition_on_dimension(prompt: str, dimension: str | None, template: str = DIMENSION_TEMPLATE) -> str:
    """Prefix the prompt with the judged dimension (unchanged when the pair has none)."""
    return prompt if not dimension else template.format(dimension=dimension) + prompt


def group_mean_losses(losses: torch.Tensor, groups: torch.Tensor, num_groups: int,
                      weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_g per group [num_groups], present mask). L_g is the (weighted) mean of group g's losses."""
    w = torch.ones_like(losses) if weights is None else weights.to(losses.dtype)
    sums = torch.zeros(num_groups, dtype=losses.dtype).index_add(0, groups, w * losses)
    mass = torch.zeros(num_groups, dtype=losses.dtype).index_add(0, groups, w)
    present = mass > 0
    return torch.where(present, sums / mass.clamp_min(torch.finfo(losses.dtype).tiny),
                       torch.zeros_like(sums)), present


def group_robust_step(losses: torch.Tensor, groups: torch.Tensor, alpha: torch.Tensor, eta: float,
                      weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One GRPO step: returns (loss to backpropagate, updated alpha). Pure: alpha is not mutated.

    Only groups present in the batch are updated (an absent group has no loss estimate); the
    updated alpha is renormalised over all groups. Gradients flow through L_g, not through alpha.
    """
    group_losses, present = group_mean_losses(losses, groups, alpha.numel(), weights)
    step = torch.where(present, eta * group_losses.detach(), torch.zeros_like(group_losses))
    log_alpha = torch.log(alpha.to(losses.dtype).clamp_min(1e-30)) + step
    new_alpha = torch.softmax(log_alpha, dim=0)  # = alpha*exp(eta L)/sum(...), computed stably
    loss = (new_alpha.detach() * group_losses * present).sum()
    return loss, new_alpha.detach()


def example_scales(groups: torch.Tensor | None, alpha: torch.Tensor | None = None,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example multipliers m_i such that mean_i(m_i * l_i) equals the granular reduction.

    For trainers that can only take the plain mean of per-example losses (TRL, a shared loop):
    * weights only: m_i = B * w_i / sum(w)                    -> sum_i w_i l_i / sum_i w_i
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
