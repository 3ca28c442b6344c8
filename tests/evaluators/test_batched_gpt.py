"""The batched GPT-2 and its trainer: equal to transformers' GPT-2 trained one model at a time."""

from __future__ import annotations

import pytest
import torch

from evaluators.batched_gpt import BatchedGPT, GPTShape, response_logps, sample
from evaluators.batched_training import PairData, train_batched
from evaluators.lm import ModelConfig, build_model
from evaluators.lm import response_logps as hf_response_logps
from evaluators.training import candidate_loss
from tests.evaluators.conftest import dpo

SHAPE = GPTShape(vocab_size=23, n_positions=12, n_layer=2, n_embd=16, n_head=2)


def hf_models(n: int) -> list[torch.nn.Module]:
    cfg = ModelConfig(n_layer=SHAPE.n_layer, n_embd=SHAPE.n_embd, n_head=SHAPE.n_head)
    return [build_model(SHAPE.vocab_size, SHAPE.n_positions, cfg, seed).eval() for seed in range(n)]


def test_logits_and_logps_match_transformers() -> None:
    models = hf_models(3)
    batched = BatchedGPT.from_hf([m.state_dict() for m in models], SHAPE)
    assert sum(p.numel() for p in models[0].parameters()) == SHAPE.n_params()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, SHAPE.vocab_size, (3, 5, 11), generator=gen)
    logits = batched(ids)
    assert logits.shape == (3, 5, 11, SHAPE.vocab_size)
    prefix, resp = ids[..., :4], ids[..., 4:]
    length = torch.randint(1, 8, (3, 5), generator=gen)
    lp = response_logps(batched, prefix, resp, length)
    assert lp.shape == (3, 5)
    for m, model in enumerate(models):
        with torch.no_grad():
            ref = model(input_ids=ids[m]).logits
            ref_lp = hf_response_logps(model, prefix[m], resp[m], length[m])
        assert torch.allclose(logits[m], ref, atol=1e-5)
        assert torch.allclose(lp[m], ref_lp, atol=1e-5)


def test_to_hf_round_trip() -> None:
    models = hf_models(2)
    batched = BatchedGPT.from_hf([m.state_dict() for m in models], SHAPE)
    back = batched.to_hf(1)
    for key, value in models[1].state_dict().items():
        if key in back:
            assert torch.equal(back[key], value), key


def random_pairs(M: int, N: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "prefix": torch.randint(4, SHAPE.vocab_size, (M, N, 3), generator=gen),
        "chosen": torch.randint(4, SHAPE.vocab_size, (M, N, 6), generator=gen),
        "rejected": torch.randint(4, SHAPE.vocab_size, (M, N, 6), generator=gen),
        "chosen_len": torch.randint(1, 7, (M, N), generator=gen),
        "rejected_len": torch.randint(1, 7, (M, N), generator=gen),
    }


def hf_train_one(model: torch.nn.Module, pairs: dict[str, torch.Tensor], m: int, beta: float, *,
                 epochs: int, batch_size: int, lr: float, grad_clip: float, seed: int, loss_fn=dpo) -> None:
    """The plain sequential loop: transformers GPT-2, torch AdamW, clip_grad_norm_ (one model)."""
    model.train()
    with torch.no_grad():
        ref_c = hf_response_logps(model, pairs["prefix"][m], pairs["chosen"][m], pairs["chosen_len"][m])
        ref_r = hf_response_logps(model, pairs["prefix"][m], pairs["rejected"][m], pairs["rejected_len"][m])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    N = ref_c.shape[0]
    for _ in range(epochs):
        order = torch.randperm(N, generator=gen)
        for k in range(N // batch_size):
            idx = order[k * batch_size:(k + 1) * batch_size]
            pc = hf_response_logps(model, pairs["prefix"][m][idx], pairs["chosen"][m][idx], pairs["chosen_len"][m][idx])
            pr = hf_response_logps(model, pairs["prefix"][m][idx], pairs["rejected"][m][idx],
                                   pairs["rejected_len"][m][idx])
            loss = candidate_loss(loss_fn, pc, pr, ref_c[idx], ref_r[idx], beta, {})
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()


def batched_train(models: list[torch.nn.Module], pairs: dict[str, torch.Tensor], betas: list[float], *,
                  epochs: int, batch_size: int, lr: float, grad_clip: float, seeds: list[int], loss_fn=dpo):
    batched = BatchedGPT.from_hf([m.state_dict() for m in models], SHAPE)
    with torch.no_grad():
        rc = response_logps(batched, pairs["prefix"], pairs["chosen"], pairs["chosen_len"])
        rr = response_logps(batched, pairs["prefix"], pairs["rejected"], pairs["rejected_len"])
    data = PairData(ref_chosen=rc, ref_rejected=rr, **pairs)
    outs = train_batched(batched, data, loss_fn, betas, {}, epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=0.0, grad_clip=grad_clip,
                         order_generators=[torch.Generator().manual_seed(s) for s in seeds], log_every=2)
    return batched, outs


def test_vectorised_training_equals_sequential_transformers_loop() -> None:
    M, N = 3, 24
    pairs = random_pairs(M, N, torch.Generator().manual_seed(1))
    betas, seeds = [0.05, 0.5, 2.0], [7, 8, 9]
    kw = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "grad_clip": 0.5}   # clipping active at beta 2
    batched, outs = batched_train(hf_models(M), pairs, betas, seeds=seeds, **kw)
    assert all(o.steps_done == 6 and not o.flags for o in outs)
    sequential = hf_models(M)
    for m, model in enumerate(sequential):
        hf_train_one(model, pairs, m, betas[m], seed=seeds[m], **kw)
        trained = batched.to_hf(m)
        for key, value in model.state_dict().items():
            if key in trained:
                assert torch.allclose(trained[key], value, atol=1e-5), key
        with torch.no_grad():
            lp = hf_response_logps(model.eval(), pairs["prefix"][m], pairs["chosen"][m], pairs["chosen_len"][m])
        lp_b = response_logps(batched, pairs["prefix"], pairs["chosen"], pairs["chosen_len"])[m].detach()
        assert torch.allclose(lp, lp_b, atol=1e-5)


def beta_dependent_nan(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                       reference_rejected_logps, beta):
    """Fine at small beta, non-finite at beta >= 1: one failing run must not disturb the others."""
    out = dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta)
    return out * float("nan") if beta >= 1 else out


def test_a_failing_run_is_frozen_and_leaves_the_others_unchanged() -> None:
    M, N = 3, 16
    pairs = random_pairs(M, N, torch.Generator().manual_seed(2))
    kw = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "grad_clip": 1.0}
    models = hf_models(M)
    batched, outs = batched_train(models, pairs, [0.1, 1.0, 0.3], seeds=[1, 2, 3], loss_fn=beta_dependent_nan, **kw)
    assert outs[1].flags == ["nan"] and outs[1].steps_done == 0
    assert not outs[0].flags and not outs[2].flags and outs[0].steps_done == 4
    untouched = BatchedGPT.from_hf([models[1].state_dict()], SHAPE)
    for p, q in zip(batched.parameters(), untouched.parameters()):
        assert torch.equal(p.detach()[1], q.detach()[0])
    alone, _ = batched_train([models[2]], {k: v[2:3] for k, v in pairs.items()}, [0.3], seeds=[3], **kw)
    for p, q in zip(batched.parameters(), alone.parameters()):
        assert torch.allclose(p.detach()[2], q.detach()[0], atol=1e-6)


def test_constant_loss_flags_no_gradient() -> None:
    pairs = random_pairs(2, 16, torch.Generator().manual_seed(3))
    models = hf_models(2)
    batched, outs = batched_train(models, pairs, [0.1, 0.2], seeds=[1, 2], epochs=1, batch_size=8, lr=1e-2,
                                  grad_clip=1.0, loss_fn=lambda pc, pr, rc, rr, beta: torch.zeros_like(pc))
    assert all(o.flags == ["no_gradient"] and o.steps_done == 0 for o in outs)
    start = BatchedGPT.from_hf([m.state_dict() for m in models], SHAPE)
    for p, q in zip(batched.parameters(), start.parameters()):
        assert torch.equal(p, q)


def test_sampling_shares_noise_between_models_with_one_seed() -> None:
    models = hf_models(1) * 2
    batched = BatchedGPT.from_hf([m.state_dict() for m in models], SHAPE)
    prefix = torch.randint(4, SHAPE.vocab_size, (2, 32, 3), generator=torch.Generator().manual_seed(4))
    prefix[1] = prefix[0]
    resp, length = sample(batched, prefix, 6, [torch.Generator().manual_seed(5) for _ in range(2)])
    assert resp.shape == (2, 32, 6) and length.shape == (2, 32)
    assert torch.equal(resp[0], resp[1]) and torch.equal(length[0], length[1])
    assert int(length.min()) >= 1 and int(length.max()) <= 6


@pytest.mark.parametrize("loss", ["dpo", "lrml", "aqfl"])
def test_registry_losses_train_batched(loss: str) -> None:
    from candidate_losses import get_loss

    pairs = random_pairs(2, 16, torch.Generator().manual_seed(6))
    _, outs = batched_train(hf_models(2), pairs, [0.1, 0.5], seeds=[1, 2], epochs=1, batch_size=8, lr=1e-3,
                            grad_clip=1.0, loss_fn=get_loss(loss).fn)
    assert all(o.steps_done == 2 and not o.flags for o in outs)
