"""The losses discovered in DiscoPOP (Lu et al. 2024, "Discovering Preference Optimization
Algorithms with and for Large Language Models", arXiv:2406.08414), to the prefdisco contract.

Notation as in ``baselines.py``: h = (pc - rc) - (pr - rr), z = beta * h, tau = 0.05 is the
temperature the paper uses to re-normalise its losses.

Every function is self-contained (only torch, F and math), so its source runs as-is in the
sandbox and seeds the discovery archive.

Numerical notes (the only places we differ from a literal transcription; values change only
where exp(-z) would exceed exp(30) ~ 1e13, far outside any healthy run):
- ``exp(-z)`` terms overflow float32 for z < -88. Where the exponential is multiplied by a
  sigmoid weight we compute the product in log space (exact). Where it stands alone we use
  exp(x) for x <= 30 and its first-order continuation beyond (value and
  slope continuous), so losses and gradients stay finite at any input.
- Batch variance / std use the unbiased estimator as the published code does, except for a batch
  of one, where they are defined as 0 instead of NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from candidate_losses.registry import register

_PAPER = "Lu et al. 2024, Discovering Preference Optimization Algorithms with and for LLMs (DiscoPOP), arXiv:2406.08414"


@register(name="lrml", reference=_PAPER)
def lrml_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
              reference_rejected_logps, beta, tau=0.05):
    """LRML / "DiscoPOP" (log-ratio modulated loss): w = sigmoid(z / tau),
    loss = (1 - w) * (-logsigmoid(z)) + w * exp(-z).

    Blends DPO's logistic loss (for negative margins) with an exponential loss (for positive ones);
    non-convex around z = 0, and non-monotone there: at zero margin its gradient on z is
    +0.75 (it pushes the margin *down* until |z| leaves the ~tau-wide bump), which is why it
    collapses at small beta. The product w * exp(-z) is computed as exp(logsigmoid(z/tau) - z),
    which is exact and finite. TRL: loss_type="discopop" with discopop_tau=tau.
    """
    z = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    w = torch.sigmoid(z / tau)
    return (1 - w) * (-F.logsigmoid(z)) + torch.exp(F.logsigmoid(z / tau) - z)


@register(name="padll", reference=_PAPER)
def padll_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
               reference_rejected_logps, beta, decay=0.9):
    """PADLL (performance-adaptive decay logistic loss):
    loss = decay * (1 - 0.5 * [h < 0]) * (-logsigmoid(z)).

    DPO's logistic loss, halved on pairs the policy currently ranks the wrong way round (h < 0),
    which down-weights likely-mislabelled pairs.
    """
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    factor = decay * (1 - 0.5 * (h < 0).to(h.dtype))
    return factor * (-F.logsigmoid(beta * h))


@register(name="aqfl", batch_coupled=True, reference=_PAPER)
def aqfl_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
              reference_rejected_logps, beta, tau=0.05):
    """AQFL (adaptive quantile feedback loss): s = z / tau,
    a = std_batch(s) * mean_batch(sigmoid(-s)); a = a + 0.05 * (sigmoid(mean_batch(s)) - a);
    r = sigmoid(0.1 * |s - a|); loss = r * (-logsigmoid(z)) + (1 - r) * max(0, 1 - z).

    Mixes logistic and hinge losses per example by its distance from a batch-level anchor a.
    Batch-coupled.
    """
    z = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    s = z / tau
    a = (s.std() if s.numel() > 1 else s.new_zeros(())) * torch.sigmoid(-s).mean()
    a = a + 0.05 * (torch.sigmoid(s.mean()) - a)
    r = torch.sigmoid(0.1 * (s - a).abs())
    return r * (-F.logsigmoid(z)) + (1 - r) * torch.relu(1 - z)


@register(name="aql", batch_coupled=True, reference=_PAPER)
def aql_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps, beta, tau=0.05):
    """AQL (adaptive quantile loss): s = z / tau, m = 0.5 + 0.01 * (sigmoid(mean_batch(s)) - 0.5),
    q = sigmoid(-(s - m)); loss = q * (-logsigmoid(z)) + (1 - q) * max(0, 1 - z).

    Logistic loss for pairs below a batch-adapted quantile, hinge above it. Batch-coupled.
    Non-monotone at zero margin: the weight q moves from logistic to hinge within |z| ~ tau, and
    that switch gives a gradient on z of about +0.75 at z = 0 (the margin is pushed down there).
    """
    z = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    s = z / tau
    m = 0.5 + 0.01 * (torch.sigmoid(s.mean()) - 0.5)
    q = torch.sigmoid(-(s - m))
    return q * (-F.logsigmoid(z)) + (1 - q) * torch.relu(1 - z)


@register(name="dbaql", batch_coupled=True, reference=_PAPER)
def dbaql_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
               reference_rejected_logps, beta, tau=0.05):
    """DBAQL (dynamic blended adaptive quantile loss): w = sigmoid(Var_batch(z / tau)),
    loss = w * (-logsigmoid(z / 0.9)) + (1 - w) * exp(-0.9 * z).

    Leans on the logistic term when the batch's margins are spread out, on the exponential term when
    they agree. Batch-coupled. exp uses the finite linear tail (module docstring).
    """
    z = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    w = torch.sigmoid((z / tau).var() if z.numel() > 1 else z.new_zeros(()))
    x = -0.9 * z  # exp(x) with a linear tail beyond x = 30 (module docstring)
    exp_term = torch.where(x <= 30.0, torch.exp(x.clamp(max=30.0)), math.exp(30.0) * (x - 29.0))
    return w * (-F.logsigmoid(z / 0.9)) + (1 - w) * exp_term


@register(name="cell", reference=_PAPER)
def cell_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
              reference_rejected_logps, beta):
    """CELL (combined exponential + logistic loss): loss = 0.5 * (-logsigmoid(z)) + 0.5 * exp(-z).

    An even blend of DPO and an exponential (boosting-style) loss. exp uses the finite linear tail.
    """
    z = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    x = -z  # exp(x) with a linear tail beyond x = 30 (module docstring)
    exp_term = torch.where(x <= 30.0, torch.exp(x.clamp(max=30.0)), math.exp(30.0) * (x - 29.0))
    return 0.5 * (-F.logsigmoid(z)) + 0.5 * exp_term


@register(name="pfl", reference=_PAPER)
def pfl_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps, beta):
    """PFL (policy focused loss): loss = -logsigmoid(z) / 2 if log pi_w > log pi_l, else 2 * max(0, 1 - z).

    Switches on the *policy's own* preference (not the reference-normalised margin): a gentle
    logistic loss where the policy already prefers the chosen answer, a strong hinge where not.
    """
    z = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    agrees = policy_chosen_logps > policy_rejected_logps
    return torch.where(agrees, -F.logsigmoid(z) / 2, 2 * torch.relu(1 - z))
