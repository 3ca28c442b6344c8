"""DiscoPOP's AQL and PFL as the LLM first wrote them, before the paper's clean-up.

The authors' released code keeps the first-written forms next to the cleaned ones. For LRML, AQFL
and DBAQL the two agree at the beta the search used (0.05, with tau = 0.05), so only AQL and PFL
get separate entries here; their cleaned forms are ``aql`` and ``pfl`` in ``discopop.py``.
Written from the published description (rho = (pc - rc) - (pr - rr), z = beta * rho):

* ``aql_original``: the quantile weight is sigmoid(-beta * (rho - m)), with the batch-adapted
  offset m = 0.5 + 0.01 * (sigmoid(mean_batch(rho)) - 0.5) taken on rho itself; the cleaned AQL
  uses sigmoid(-(z / tau - m)) instead, a weight 1 / tau = 20 times sharper at beta = 0.05.
  Batch-coupled (through m).
* ``pfl_original``: PFL acting on the raw margin rho rather than on beta * rho, i.e. as if
  beta were 1 whatever beta the run uses.

Both keep the contract (``[batch]`` losses, beta passed in) so they run wherever the cleaned forms
do; they exist to measure what the clean-up changed, not as recommended losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from candidate_losses.registry import register

_PAPER = ("Lu et al. 2024, DiscoPOP (arXiv:2406.08414), first-written form from the authors' released "
          "code (SakanaAI/DiscoPOP)")


@register(name="aql_original", batch_coupled=True, reference=_PAPER)
def aql_original_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                      reference_rejected_logps, beta):
    """AQL as first written: m = 0.5 + 0.01 * (sigmoid(mean_batch(rho)) - 0.5),
    q = sigmoid(-beta * (rho - m)); loss = q * (-logsigmoid(beta * rho)) + (1 - q) * max(0, 1 - beta * rho).

    The logistic/hinge switch is 1 / beta wide in rho (20 nats at beta 0.05), so it blends the two
    losses smoothly where the cleaned AQL switches within ~1 nat. Batch-coupled.
    """
    rho = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    z = beta * rho
    m = 0.5 + 0.01 * (torch.sigmoid(rho.mean()) - 0.5)
    q = torch.sigmoid(-beta * (rho - m))
    return q * (-F.logsigmoid(z)) + (1 - q) * torch.relu(1 - z)


@register(name="pfl_original", reference=_PAPER)
def pfl_original_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                      reference_rejected_logps, beta):
    """PFL as first written, on the unscaled margin rho: loss = -logsigmoid(rho) / 2 where the policy
    prefers the chosen answer (log pi_w > log pi_l), else 2 * max(0, 1 - rho). ``beta`` is accepted and unused:
    that is the difference from the cleaned ``pfl``.
    """
    rho = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    agrees = policy_chosen_logps > policy_rejected_logps
    return torch.where(agrees, -F.logsigmoid(rho) / 2, 2 * torch.relu(1 - rho))
