"""Published preference losses, written to the prefdisco contract (see ``contract.py``).

Notation used in every docstring (all quantities are per example):
    r_w = policy_chosen_logps - reference_chosen_logps        (chosen log-ratio)
    r_l = policy_rejected_logps - reference_rejected_logps    (rejected log-ratio)
    h   = r_w - r_l                                           (log-ratio margin)
    z   = beta * h
    logsigmoid(x) = log(1 / (1 + exp(-x)))

TRL's ``DPOTrainer`` implements most of these as ``loss_type`` values; ours agree with it
numerically (see tests/candidate_losses/test_trl_agreement.py). Where a paper and TRL differ,
the docstring says which we follow and why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from candidate_losses.registry import register


@register(name="dpo", reference="Rafailov et al. 2023, Direct Preference Optimization, arXiv:2305.18290")
def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps, beta):
    """DPO (sigmoid): loss = -logsigmoid(beta * h).

    The Bradley-Terry negative log-likelihood of the implicit reward beta*log(pi/pi_ref).
    TRL: loss_type="sigmoid".
    """
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h)


@register(name="cdpo", reference="Mitchell 2023, A note on DPO with noisy preferences (conservative DPO)")
def cdpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
              reference_rejected_logps, beta, label_smoothing=0.1):
    """Conservative / label-smoothed DPO: loss = -(1 - eps) * logsigmoid(z) - eps * logsigmoid(-z).

    eps = label_smoothing is the assumed probability that a label is flipped. The loss has a
    finite minimiser (z* = log((1-eps)/eps)), so margins stop growing once they are confident.
    TRL: loss_type="sigmoid" with label_smoothing=eps.
    """
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    z = beta * h
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


@register(name="robust", reference="Chowdhury et al. 2024, Provably Robust DPO, arXiv:2403.00409")
def robust_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                reference_rejected_logps, beta, label_smoothing=0.1):
    """Robust DPO (rDPO): loss = (-(1 - eps) * logsigmoid(z) + eps * logsigmoid(-z)) / (1 - 2 eps).

    An unbiased estimate of the clean-label DPO loss when labels flip with probability eps < 0.5.
    TRL: loss_type="robust".
    """
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    z = beta * h
    eps = label_smoothing
    return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


@register(name="hinge", reference="Zhao et al. 2023, SLiC-HF: Sequence Likelihood Calibration, arXiv:2305.10425")
def hinge_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
               reference_rejected_logps, beta):
    """Hinge / SLiC: loss = max(0, 1 - beta * h).

    SLiC's calibration hinge with margin 1/beta, applied to the reference-normalised margin as in
    the DPO paper's comparison. TRL: loss_type="hinge".
    """
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return torch.relu(1 - beta * h)


@register(name="ipo", reference="Azar et al. 2023, A General Theoretical Paradigm (IPO), arXiv:2310.12036")
def ipo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps, beta):
    """IPO: loss = (h - 1 / (2 * beta))^2.

    Regresses the margin onto a fixed target instead of pushing it to infinity (beta is the
    paper's tau). We follow the paper on summed sequence log-probs; TRL divides each log-ratio by
    the completion length first, which equals ours for one-token completions.
    """
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return (h - 1 / (2 * beta)) ** 2


@register(name="exo_pair", reference="Ji et al. 2024, Towards Efficient Exact Optimization of LM Alignment (EXO), arXiv:2402.00856")
def exo_pair_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                  reference_rejected_logps, beta, epsilon=1e-3):
    """EXO (pairwise): loss = KL(q || p) with q = (sigmoid(z), sigmoid(-z)), p = (1 - eps, eps).

    Written out: sigmoid(z) * (logsigmoid(z) - log(1 - eps)) + sigmoid(-z) * (logsigmoid(-z) - log eps).
    Reverse-KL (mode-seeking) counterpart of DPO's forward-KL fit. TRL: loss_type="exo_pair" with
    label_smoothing=eps.
    """
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    z = beta * h
    log_pw = torch.log1p(torch.tensor(-epsilon, dtype=z.dtype, device=z.device))
    log_pl = torch.log(torch.tensor(epsilon, dtype=z.dtype, device=z.device))
    return torch.sigmoid(z) * (F.logsigmoid(z) - log_pw) + torch.sigmoid(-z) * (F.logsigmoid(-z) - log_pl)


@register(name="nca_pair", reference="Chen et al. 2024, Noise Contrastive Alignment (NCA), arXiv:2402.05369")
def nca_pair_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                  reference_rejected_logps, beta):
    """NCA (pairwise): loss = -logsigmoid(beta r_w) - 0.5 logsigmoid(-beta r_w) - 0.5 logsigmoid(-beta r_l).

    Scores each response on its own absolute reward, so the chosen likelihood is not allowed to
    fall just because the margin grows. TRL: loss_type="nca_pair".
    """
    rw = beta * (policy_chosen_logps - reference_chosen_logps)
    rl = beta * (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(rw) - 0.5 * F.logsigmoid(-rw) - 0.5 * F.logsigmoid(-rl)


@register(name="bco_pair", reference="Jung et al. 2024, Binary Classifier Optimization (BCO), arXiv:2404.04656")
def bco_pair_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                  reference_rejected_logps, beta, delta=0.0):
    """BCO (pairwise): loss = -logsigmoid(beta r_w - delta) - logsigmoid(-(beta r_l - delta)).

    A binary classifier that calls chosen responses good and rejected ones bad. The paper's delta is
    a running mean of the rewards (state the contract cannot hold); here it is a constant keyword,
    0 by default, which is exactly TRL 1.16's loss_type="bco_pair".
    """
    rw = beta * (policy_chosen_logps - reference_chosen_logps)
    rl = beta * (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(rw - delta) - F.logsigmoid(-(rl - delta))


@register(name="sppo_hard", reference="Wu et al. 2024, Self-Play Preference Optimization (SPPO), arXiv:2405.00675")
def sppo_hard_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                   reference_rejected_logps, beta):
    """SPPO (hard labels): loss = (r_w - 1/(2 beta))^2 + (r_l + 1/(2 beta))^2.

    SPPO's square loss with the win probability set to 1 for the chosen and 0 for the rejected
    response. TRL: loss_type="sppo_hard".
    """
    rw = policy_chosen_logps - reference_chosen_logps
    rl = policy_rejected_logps - reference_rejected_logps
    return (rw - 0.5 / beta) ** 2 + (rl + 0.5 / beta) ** 2


@register(name="apo_zero", reference="D'Oosterlinck et al. 2024, Anchored Preference Optimization (APO), arXiv:2408.06266")
def apo_zero_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                  reference_rejected_logps, beta):
    """APO-zero: loss = (1 - sigmoid(beta r_w)) + sigmoid(beta r_l).

    Anchored: raises the chosen likelihood and lowers the rejected one independently; for data
    whose chosen answers beat the model's own. TRL: loss_type="apo_zero".
    """
    rw = beta * (policy_chosen_logps - reference_chosen_logps)
    rl = beta * (policy_rejected_logps - reference_rejected_logps)
    return (1 - torch.sigmoid(rw)) + torch.sigmoid(rl)


@register(name="apo_down", reference="D'Oosterlinck et al. 2024, Anchored Preference Optimization (APO), arXiv:2408.06266")
def apo_down_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                  reference_rejected_logps, beta):
    """APO-down: loss = sigmoid(beta r_w) + (1 - sigmoid(beta (r_w - r_l))).

    Anchored: lowers both likelihoods, the rejected one more; for data whose chosen answers are
    worse than the model's own. At zero margin its gradient on r_w is exactly 0 (the two terms
    cancel): it pushes the rejected response down and leaves the chosen one. TRL: loss_type="apo_down".
    """
    rw = beta * (policy_chosen_logps - reference_chosen_logps)
    rl = beta * (policy_rejected_logps - reference_rejected_logps)
    return torch.sigmoid(rw) + (1 - torch.sigmoid(rw - rl))


@register(name="aot", batch_coupled=True,
          reference="Melnyk et al. 2024, Distributional Preference Alignment via Optimal Transport (AOT), arXiv:2406.05882")
def aot_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps, beta, label_smoothing=0.0):
    """AOT (paired): sort the batch's policy log-ratio log pi_w - log pi_l and the reference one
    separately, d = sorted_policy - sorted_reference, loss = -(1-eps) logsigmoid(beta d) - eps logsigmoid(-beta d).

    Batch-coupled: enforces first-order stochastic dominance between the two *distributions* of
    margins, so an example's loss depends on its rank in the batch. TRL: loss_type="aot".
    """
    logratios, _ = torch.sort(policy_chosen_logps - policy_rejected_logps, dim=0)
    ref_logratios, _ = torch.sort(reference_chosen_logps - reference_rejected_logps, dim=0)
    d = beta * (logratios - ref_logratios)
    return -(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)


@register(name="aot_unpaired", batch_coupled=True,
          reference="Melnyk et al. 2024, Distributional Preference Alignment via Optimal Transport (AOT), arXiv:2406.05882")
def aot_unpaired_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                      reference_rejected_logps, beta, label_smoothing=0.0):
    """AOT (unpaired): d = sort(r_w) - sort(r_l) over the batch, loss = -(1-eps) logsigmoid(beta d) - eps logsigmoid(-beta d).

    Batch-coupled: the chosen and rejected log-ratio distributions are matched by quantile, not by
    pair. TRL: loss_type="aot_unpaired".
    """
    rw, _ = torch.sort(policy_chosen_logps - reference_chosen_logps, dim=0)
    rl, _ = torch.sort(policy_rejected_logps - reference_rejected_logps, dim=0)
    d = beta * (rw - rl)
    return -(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)


@register(name="kto_pair", batch_coupled=True,
          reference="Ethayarajh et al. 2024, KTO: Model Alignment as Prospect Theoretic Optimization, arXiv:2402.01306")
def kto_pair_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                  reference_rejected_logps, beta):
    """KTO, paired form: z0_w = max(0, mean_batch(r_w)), z0_l = max(0, mean_batch(r_l)) (no gradient),
    loss = (1 - sigmoid(beta (r_w - z0_l))) + (1 - sigmoid(beta (z0_w - r_l))).

    Honest caveat: KTO's reference point z0 is KL(pi || pi_ref) estimated on *mismatched* prompt/
    completion pairs, which this contract does not carry. Like TRL's former "kto_pair" loss we
    estimate it from the batch's own log-ratios (clamped at 0, detached as in the paper), with
    lambda_D = lambda_U = 1. Batch-coupled through z0.
    """
    rw = policy_chosen_logps - reference_chosen_logps
    rl = policy_rejected_logps - reference_rejected_logps
    z0_w = rw.mean().clamp(min=0).detach()
    z0_l = rl.mean().clamp(min=0).detach()
    return (1 - torch.sigmoid(beta * (rw - z0_l))) + (1 - torch.sigmoid(beta * (z0_w - rl)))
