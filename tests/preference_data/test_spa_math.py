"""SPA's judging and refinement math, as pure functions over sequence log-probs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from candidate_losses import get_loss
from preference_data.spa.judges import (GoldRewardJudge, ImplicitRewardJudge, PairBatch, bt_probability,
                                        decide, implicit_reward, judge_pairs)
from preference_data.spa.refinement import (ConfidenceThreshold, alpha_at, dnd_lambda, dpo_margins,
                                            extrapolated_sequence_logps, low_confidence, smoothed_loss,
                                            smoothing_epsilon)


def _batch(policy_a, policy_b, init_a, init_b) -> PairBatch:
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    n = len(policy_a)
    return PairBatch(prompts=["p"] * n, a=["a"] * n, b=["b"] * n, policy_a=t(policy_a),
                     policy_b=t(policy_b), init_a=t(init_a), init_b=t(init_b))


def test_implicit_judge_prefers_higher_beta_log_ratio():
    # pair 0: a gained log-prob vs pi_init, b lost some -> a; pair 1: the opposite -> b.
    # pair 2: b has the higher *absolute* log-prob but a the higher *ratio* -> a (ratio, not likelihood).
    batch = _batch([-3.0, -5.0, -9.0], [-6.0, -2.0, -1.0], [-4.0, -4.0, -12.0], [-5.0, -4.0, -0.5])
    judge = ImplicitRewardJudge(beta=0.5)
    p = judge.prob_a(batch)
    a_wins, label_prob = decide(p)
    assert a_wins.tolist() == [True, False, True]
    ra = implicit_reward(batch.policy_a, batch.init_a, 0.5)
    rb = implicit_reward(batch.policy_b, batch.init_b, 0.5)
    assert torch.allclose(p, torch.sigmoid(ra - rb))
    assert torch.allclose(p[0], torch.sigmoid(torch.tensor(0.5 * (1.0 - (-1.0)), dtype=torch.float64)))
    assert bool((label_prob >= 0.5).all())
    # beta scales confidence, not the decision
    p_hot = ImplicitRewardJudge(beta=5.0).prob_a(batch)
    assert decide(p_hot)[0].tolist() == a_wins.tolist()
    assert bool((decide(p_hot)[1] > label_prob).all())


def test_gold_judge_argmax_and_sampled_labels():
    gold_a = torch.tensor([0.9, 0.1, 0.5], dtype=torch.float64)
    gold_b = torch.tensor([0.1, 0.9, 0.5], dtype=torch.float64)
    batch = PairBatch(prompts=["p"] * 3, a=["a"] * 3, b=["b"] * 3, gold_a=gold_a, gold_b=gold_b)
    p = GoldRewardJudge(0.1, sample=False, generator=torch.Generator().manual_seed(0)).prob_a(batch)
    assert torch.allclose(p, bt_probability(gold_a, gold_b, 0.1))
    assert decide(p)[0].tolist() == [True, False, True]     # exact tie goes to a
    many = PairBatch(prompts=["p"] * 4000, a=["a"] * 4000, b=["b"] * 4000,
                     gold_a=torch.full((4000,), 0.55, dtype=torch.float64),
                     gold_b=torch.full((4000,), 0.5, dtype=torch.float64))
    a_wins, label_prob = judge_pairs(
        GoldRewardJudge(0.1, sample=True, generator=torch.Generator().manual_seed(0)), many)
    p_a = float(torch.sigmoid(torch.tensor(0.5)))
    assert abs(float(a_wins.double().mean()) - p_a) < 0.03
    assert torch.allclose(label_prob, torch.where(a_wins, torch.tensor(p_a, dtype=torch.float64),
                                                  torch.tensor(1 - p_a, dtype=torch.float64)))


def test_refinement_changes_only_low_confidence_labels():
    torch.manual_seed(0)
    n, beta, alpha = 12, 0.1, 0.1
    pc, pr = torch.randn(n, requires_grad=True), torch.randn(n, requires_grad=True)
    rc, rr = torch.randn(n), torch.randn(n)
    margins = dpo_margins(pc.detach(), pr.detach(), rc, rr, beta)
    eligible = torch.ones(n, dtype=torch.bool)
    eligible[:2] = False                                      # gold seed pairs: never smoothed
    tau = float(torch.quantile(margins, 0.4))
    flags = low_confidence(margins, tau, eligible)
    assert flags.any() and (~flags).any()
    assert not bool(flags[:2].any())
    assert bool((margins[flags] < tau).all()) and bool((margins[eligible & ~flags] >= tau).all())
    dpo = get_loss("dpo").fn
    plain = dpo(pc, pr, rc, rr, beta)
    smoothed = smoothed_loss(dpo, pc, pr, rc, rr, beta, smoothing_epsilon(flags, alpha), {})
    # confident pairs: bit-identical loss (and so identical gradients)
    assert torch.equal(smoothed[~flags], plain[~flags])
    # flagged pairs: the paper's label-smoothed DPO
    h = (pc - rc) - (pr - rr)
    expected = -(1 - alpha) * F.logsigmoid(beta * h) - alpha * F.logsigmoid(-beta * h)
    assert torch.allclose(smoothed[flags], expected[flags], atol=1e-6)
    assert not torch.allclose(smoothed[flags], plain[flags])
    # the gradient of a confident pair's loss is untouched
    g_plain = torch.autograd.grad(plain[~flags].sum(), pc, retain_graph=True)[0]
    g_smooth = torch.autograd.grad(smoothed[~flags].sum(), pc)[0]
    assert torch.equal(g_plain, g_smooth)


def test_no_flags_means_plain_contract_loss():
    pc, pr, rc, rr = (torch.randn(5) for _ in range(4))
    calls = []

    def loss(a, b, c, d, beta):
        calls.append(1)
        return -F.logsigmoid(beta * ((a - c) - (b - d)))

    out = smoothed_loss(loss, pc, pr, rc, rr, 0.1, torch.zeros(5), {})
    assert torch.equal(out, loss(pc, pr, rc, rr, 0.1)) and len(calls) == 2   # swapped term never run


def test_extrapolated_logps_reduce_to_plain_and_change_ranking():
    torch.manual_seed(1)
    B, L, V = 6, 4, 7
    zt, zr = torch.randn(B, L, V), torch.randn(B, L, V)
    tokens = torch.randint(V, (B, L))
    mask = torch.ones(B, L)
    plain = torch.log_softmax(zt, -1).gather(2, tokens[..., None]).squeeze(2).sum(1)
    assert torch.allclose(extrapolated_sequence_logps(zt, zr, tokens, mask, 0.0), plain, atol=1e-6)
    lp_ref = torch.log_softmax(zr, -1).gather(2, tokens[..., None]).squeeze(2).sum(1)
    plain_ratio = plain - lp_ref
    dnd_ratio = extrapolated_sequence_logps(zt, zr, tokens, mask, 2.0) - lp_ref
    # per-token renormalisation: not a mere rescaling of the log-ratio
    assert not torch.allclose(dnd_ratio, 3.0 * plain_ratio, atol=1e-3)
    # padding is ignored
    mask[:, -1] = 0
    short = extrapolated_sequence_logps(zt, zr, tokens, mask, 0.5)
    full = extrapolated_sequence_logps(zt, zr, tokens, torch.ones(B, L), 0.5)
    assert bool((short != full).all())


def test_schedules_and_running_threshold():
    assert [dnd_lambda(i, 0.5, 0.5) for i in (1, 2, 3)] == [0.5, 0.25, 0.125]
    assert [alpha_at(s, 10, 0.1, 0.2) for s in range(4)] == [0.0, 0.0, 0.1, 0.1]
    thr = ConfidenceThreshold(noise_fraction=0.1, window=100)
    t1 = thr.update(torch.arange(100, dtype=torch.float32))
    assert abs(t1 - 9.9) < 1e-6
    t2 = thr.update(torch.full((50,), 1000.0))                # the window forgets old margins
    assert t2 > t1


def test_smoothing_never_masks_a_wrong_shape():
    pc, pr, rc, rr = (torch.randn(4) for _ in range(4))
    out = smoothed_loss(lambda a, b, c, d, beta: (a - b).sum(), pc, pr, rc, rr, 0.1,
                        torch.full((4,), 0.1), {})
    assert out.shape == ()
