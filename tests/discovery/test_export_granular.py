"""The exported TRL trainer's group-robust objective, checked against an independent computation.

Pairs carry `weight` and `group_id`; with group_robust_eta > 0 every logged step loss must equal
sum_g alpha_g L_g, where L_g is group g's weighted mean DPO loss on independently computed
log-probs and alpha follows alpha_g <- alpha_g exp(eta L_g) / Z from uniform (Ramesh et al. 2024).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from candidate_losses import get_loss
from candidate_losses.source import strip_decorators
from discovery.review.export import ExportableLoss, export_loss
from tests.discovery.test_export import _import_file, _sequence_logps, _train, tiny_models  # noqa: F401

pytestmark = pytest.mark.slow


def _group_robust_losses(model_dir, ref_model, states, dataset, beta, eta, n_groups):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ref_model.eval()
    rows = list(dataset)
    alpha = [1.0 / n_groups] * n_groups
    out = []
    for state in states:
        model.load_state_dict(state)
        logps = {key: torch.stack([_sequence_logps(m, r["prompt_ids"], r[f"{side}_ids"]) for r in rows])
                 for key, m, side in (("pc", model, "chosen"), ("pr", model, "rejected"),
                                      ("rc", ref_model, "chosen"), ("rr", ref_model, "rejected"))}
        losses = get_loss("dpo").fn(logps["pc"], logps["pr"], logps["rc"], logps["rr"], beta).tolist()
        group_loss = []
        for g in range(n_groups):
            members = [(r["weight"], l) for r, l in zip(rows, losses) if r["group_id"] == g]
            group_loss.append(sum(w * l for w, l in members) / sum(w for w, _ in members))
        raw = [a * math.exp(eta * lg) for a, lg in zip(alpha, group_loss)]
        alpha = [x / sum(raw) for x in raw]
        out.append(sum(a * lg for a, lg in zip(alpha, group_loss)))
    return out, alpha


def test_exported_group_robust_objective_matches_independent_computation(tmp_path, tiny_models):  # noqa: F811
    from transformers import AutoModelForCausalLM

    model_dir, ref_dir, pairs = tiny_models
    # group 1 gets the pairs with their preference reversed: a harder, conflicting group
    rows = [dict(p, weight=float(1 + i % 2), group_id=int(i % 4 == 0)) for i, p in enumerate(pairs)]
    rows = [dict(r, chosen=r["rejected"], rejected=r["chosen"]) if r["group_id"] else r for r in rows]
    written = export_loss(ExportableLoss("dpo", strip_decorators(get_loss("dpo").source)), "trl", tmp_path / "dpo_trl.py")
    module = _import_file(Path(written.module), "dpo_trl_granular")
    eta = 2.0
    trainer, states, logged = _train(module.DpoDPOTrainer, model_dir, ref_dir, rows, tmp_path,
                                     group_names=["agree", "reversed"], group_robust_eta=eta)
    ours, alpha = _group_robust_losses(model_dir, AutoModelForCausalLM.from_pretrained(ref_dir), states,
                                       trainer.train_dataset, 0.5, eta, 2)
    assert len(logged) == len(ours) == 3
    assert logged == pytest.approx(ours, abs=1e-5)
    assert trainer.group_reducer.alpha.tolist() == pytest.approx(alpha, abs=1e-6)
    assert alpha != pytest.approx([0.5, 0.5], abs=1e-3)  # the group weights moved
    group_logs = [h for h in trainer.state.log_history if "group_alpha/reversed" in h]
    assert group_logs and "group_loss/agree" in group_logs[-1]


def test_generated_group_robust_test_passes(tmp_path):
    written = export_loss(ExportableLoss("dpo", strip_decorators(get_loss("dpo").source)), "trl", tmp_path / "dpo_gen_trl.py")
    tests = _import_file(Path(written.test), "test_dpo_gen_trl_generated")
    tests.test_group_robust_training_on_aggregated_pairs(tmp_path / "g")
