"""SPA over the `hf` backend (TRL): the smoothing column, the batch refiner, the config, and an end-to-end run
on a tiny random-init GPT-2 (saved to tmp) with a tiny local JSONL dataset, offline."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from tests import tiny_hf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent



def _logp(model, tokenizer, prompt: str, completion: str) -> float:
    """log pi(completion + eos | prompt), tokenized the way TRL does (prompt + completion + eos)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    assert full[:len(prompt_ids)] == prompt_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full])).logits[0, len(prompt_ids) - 1:-1].double()
    return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(full[len(prompt_ids):])[:, None]).sum())


def _dpo(pc, pr, rc, rr, beta):
    return -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr)))


# ---- fast ------------------------------------------------------------------------------------------------

def test_batch_refiner_smooths_only_low_confidence_self_labelled_pairs_after_warmup():
    from preference_data.spa.hf_refine import BatchRefiner

    refiner = BatchRefiner(beta=0.1, noise_fraction=0.5, warmup_fraction=0.2, window=64)
    margins = torch.tensor([-1.0, 2.0, -3.0, 4.0, -5.0])
    may = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.0])          # last one: a gold seed pair
    idx = torch.tensor([0, 1, 2, 3, -1])
    assert refiner.epsilon(margins, may, idx, step=0, total_steps=10).tolist() == [0.0] * 5   # warm-up
    eps = refiner.epsilon(margins, may, idx, step=5, total_steps=10)
    # tau = median of the eligible margins seen so far (-1, 2, -3, 4 twice) = 0.5; seed pair never smoothed
    assert eps.tolist() == pytest.approx([0.1, 0.0, 0.1, 0.0, 0.0])
    assert refiner.confidence == {0: -1.0, 1: 2.0, 2: -3.0, 3: 4.0} and -1 not in refiner.smoothing


def test_smoothing_column_gives_the_smoothed_contract_loss(tmp_path):
    """The trainer's loss on a batch with a `smoothing` column equals
    mean((1-eps) L(pc,pr,rc,rr) + eps L(pr,pc,rr,rc)), computed here from scratch."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    from candidate_losses import get_loss
    from preference_data.spa.hf_refine import SmoothingDPOTrainer

    policy_dir = tiny_hf.build_tiny_gpt2(tmp_path / "policy", seed=0)
    ref_dir = tiny_hf.build_tiny_gpt2(tmp_path / "ref", seed=1)       # differs, so log-ratios are non-zero
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    policy, reference = (AutoModelForCausalLM.from_pretrained(d) for d in (policy_dir, ref_dir))
    smoothing = [0.0, 0.2, 0.5, 0.1]
    rows = [{**r, "smoothing": e, "pair_index": k} for k, (r, e) in enumerate(zip(tiny_hf.review_pairs(4), smoothing))]
    args = DPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, beta=0.5,
                     use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True)
    trainer = SmoothingDPOTrainer(model=policy, ref_model=reference, args=args,
                                  train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
                                  loss_fn=get_loss("dpo").fn)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["smoothing"].tolist() == pytest.approx([smoothing[i] for i in batch["pair_index"].tolist()])
    order = batch["pair_index"].tolist()
    trainer.model.eval()
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, dict(batch)))
    direct, smoothed = [], []
    for i in order:
        r = rows[i]
        pc, pr = (_logp(policy, tokenizer, r["prompt"], r[k]) for k in ("chosen", "rejected"))
        rc, rr = (_logp(reference, tokenizer, r["prompt"], r[k]) for k in ("chosen", "rejected"))
        pc, pr, rc, rr = map(torch.tensor, (pc, pr, rc, rr))
        d, s = _dpo(pc, pr, rc, rr, 0.5), _dpo(pr, pc, rr, rc, 0.5)
        direct.append(float(d))
        smoothed.append(float((1 - r["smoothing"]) * d + r["smoothing"] * s))
    assert loss == pytest.approx(sum(smoothed) / 4, rel=1e-4)
    assert abs(loss - sum(direct) / 4) > 1e-3          # the column changed the loss

    # DND's extra forward scores the same tokens as TRL: at lambda = 0 it gives the policy's log-probs
    inputs = {k: v for k, v in batch.items() if k not in ("smoothing", "pair_index")}
    chosen, rejected = trainer._extrapolated_logps(trainer.model, inputs, 0.0)
    expected = [_logp(policy, tokenizer, rows[i]["prompt"], rows[i]["chosen"]) for i in order]
    assert chosen.tolist() == pytest.approx(expected, abs=1e-4)
    lam = trainer._extrapolated_logps(trainer.model, inputs, 0.5)[1]
    assert not torch.allclose(lam, rejected)            # extrapolation renormalises per token


def test_config_dispatch_and_validation(tmp_path):
    from preference_data.spa.config import SPAConfig
    from preference_data.spa.hf_config import SPAHFConfig, load_spa_yaml, spa_hf_config_from_dict

    shipped = load_spa_yaml(REPO / "configs" / "spa_hf.yaml")
    assert isinstance(shipped, SPAHFConfig) and shipped.judge.kind == "implicit" and shipped.iterations == 3
    assert isinstance(load_spa_yaml(REPO / "configs" / "spa.yaml"), SPAConfig)
    with pytest.raises(ValueError, match="not available on the hf backend"):
        spa_hf_config_from_dict({"judge": {"kind": "gold"}})
    with pytest.raises(ValueError, match="unknown key"):
        spa_hf_config_from_dict({"sampling": {"temprature": 1.0}})
    (tmp_path / "bad.yaml").write_text("backend: bandit\n")
    with pytest.raises(ValueError, match="backend must be"):
        load_spa_yaml(tmp_path / "bad.yaml")
    (tmp_path / "old.yaml").write_text("tier: hf\nmodel: m\n")  # the older spelling still selects the backend
    assert isinstance(load_spa_yaml(tmp_path / "old.yaml"), SPAHFConfig)


# ---- slow: end to end -----------------------------------------------------------------------------------

def _config(tmp_path: Path, out: str) -> dict:
    model = tmp_path / "policy"
    if not model.exists():
        tiny_hf.build_tiny_gpt2(model)
        tiny_hf.write_jsonl(tmp_path / "pairs.jsonl", tiny_hf.review_pairs(48))
    return {"model": str(model), "seed": 3,
            "data": {"dataset": str(tmp_path / "pairs.jsonl"), "seed_pairs": 12, "prompts_per_iteration": [16, 12],
                     "eval_prompts": 6},
            "sampling": {"temperature": 1.0, "max_new_tokens": 5},
            "refinement": {"noise_fraction": 0.3, "warmup_fraction": 0.0},
            "train": {"learning_rate": 5e-3, "beta": 0.5, "batch_size": 8, "gradient_accumulation_steps": 1,
                      "device": "cpu", "lr_scheduler": "constant", "warmup": 0},
            "out_dir": str(tmp_path / out), "save_policies": True}


@pytest.mark.slow
def test_spa_hf_end_to_end(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluators.hf import load_preference_dataset
    from preference_data.spa.hf import run_spa_hf
    from preference_data.spa.store import PairStore

    torch.set_num_threads(1)
    result = run_spa_hf(_config(tmp_path, "a"))
    assert [s.iteration for s in result.stages] == [0, 1, 2]
    assert all(math.isfinite(s.kl) and s.steps >= 1 and s.curve for s in result.stages)
    for stage in result.stages[1:]:                 # fresh prompts came from labelled rows: agreement known
        assert stage.agreement_pairs > 0 and 0.0 <= stage.label_agreement <= 1.0
    store = result.store
    assert len(store.iteration(0)) == 12 and all(p.judge == "gold-seed" for p in store.iteration(0))
    self_labelled = store.iteration(1) + store.iteration(2)
    assert self_labelled and all(p.judge == "implicit" and 0.5 <= p.label_prob <= 1.0 for p in self_labelled)
    assert all(p.confidence is not None and math.isfinite(p.confidence) for p in self_labelled)
    assert any(p.flagged for p in self_labelled) and not all(p.flagged for p in self_labelled)
    assert all((p.smoothing > 0) == p.flagged for p in self_labelled)

    # TRL-format export round-trips, and TRL's loader reads it as preference pairs
    out = tmp_path / "a" / "pairs.jsonl"
    assert PairStore.load_trl_jsonl(out).pairs == store.pairs
    trl_rows = load_preference_dataset(str(out))
    assert len(trl_rows) == len(store) and trl_rows[0]["chosen"] == store.pairs[0].chosen

    # labels of iteration 1 agree with beta * (log pi_0 - log pi_init), recomputed here from scratch
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "policy")
    init = AutoModelForCausalLM.from_pretrained(tmp_path / "policy").eval()
    pi_0 = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "policy_0").eval()
    for pair in store.iteration(1):
        reward = {k: 0.5 * (_logp(pi_0, tokenizer, pair.prompt, getattr(pair, k))
                            - _logp(init, tokenizer, pair.prompt, getattr(pair, k))) for k in ("chosen", "rejected")}
        assert reward["chosen"] >= reward["rejected"] - 1e-5
        assert pair.label_prob == pytest.approx(1 / (1 + math.exp(reward["rejected"] - reward["chosen"])), abs=1e-4)

    # same seed, same config, run again through `prefdisco spa` (backend: hf) -> the same pairs and labels
    import yaml
    from typer.testing import CliRunner

    from discovery.commands import app

    raw = _config(tmp_path, "unused")
    del raw["out_dir"], raw["save_policies"]
    path = tmp_path / "spa_hf.yaml"
    path.write_text(yaml.safe_dump({"backend": "hf", **raw}))
    shown = CliRunner().invoke(app, ["spa", str(path), "--out", str(tmp_path / "b")])
    assert shown.exit_code == 0, shown.output
    assert "seed DPO" in shown.output and "iter 2" in shown.output and "label agreement" in shown.output
    assert "KL" in shown.output
    again = PairStore.load_trl_jsonl(tmp_path / "b" / "pairs.jsonl")
    key = [(p.prompt, p.chosen, p.rejected, round(p.label_prob, 6), p.confidence) for p in store]
    assert key == [(p.prompt, p.chosen, p.rejected, round(p.label_prob, 6), p.confidence) for p in again]
    stages = json.loads((tmp_path / "b" / "stages.json").read_text())["stages"]
    assert [s["kl"] for s in stages] == [s.kl for s in result.stages]

    # fresh prompts from a prompt file: no labelled pairs behind them, so agreement is n/a
    (tmp_path / "prompts.txt").write_text("review : it was\nreview : the film is\nreview : it is very\n" * 3)
    raw["data"].update(prompt_file=str(tmp_path / "prompts.txt"), prompts_per_iteration=[4])
    raw["train"]["seed_epochs"] = 1
    path.write_text(yaml.safe_dump({"backend": "hf", **raw}))
    shown = CliRunner().invoke(app, ["spa", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "label agreement n/a" in shown.output
    raw["model"] = str(tmp_path / "no-such-model")
    path.write_text(yaml.safe_dump({"backend": "hf", **raw}))
    bad = CliRunner().invoke(app, ["spa", str(path)])
    assert bad.exit_code != 0 and "cannot load model" in str(bad.exception) + bad.output   # a UserError
