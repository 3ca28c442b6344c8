"""`prefdisco export` / `promote`: the rendered code, the files, and the TRL round trip.

The round trip trains a tiny offline GPT-2 with the *exported* module under the installed TRL and
checks, step by step, that the loss TRL logged equals our loss function applied to log-probs we
compute independently (plain forward, log-softmax, gather) from a snapshot of the model taken at
the start of that step. For DPO the exported trainer must also reproduce TRL's built-in sigmoid loss.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from candidate_losses import get_loss, load_loss_from_source
from candidate_losses.source import strip_decorators
from discovery.errors import UserError
from discovery.review.export import (
    ExportableLoss,
    contract_function,
    export_loss,
    formula_text,
    promote_loss,
    render_function_module,
    render_trl_module,
    safe_identifier,
    undefined_names,
)

GATED_LOSS = '''def gated_blend(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
               reference_rejected_logps, beta, tau=0.5):
    """Logistic loss blended into an exponential one by a sigmoid gate on z / tau."""
    z = beta * ((policy_chosen_logps - reference_chosen_logps)
                - (policy_rejected_logps - reference_rejected_logps))
    gate = torch.sigmoid(z / tau)
    return -F.logsigmoid(z) * (1 - gate) + torch.exp(-z) * gate
'''

METADATA = {"campaign": "/runs/demo", "candidate_id": "g003-s01", "status": "evaluated",
            "fitness": 0.81, "fitness_se": 0.02, "loss_kwargs": {"tau": 0.5}, "thought": "gate it"}


def _import_file(path: Path, module_name: str):
    """Import a module by path: generated code (trusted: this test wrote it) or a tests/ helper."""
    if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(path):
        return sys.modules[module_name]
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


# ---- fast: parsing and rendering ---------------------------------------------------------------

def test_safe_identifier_and_contract_function():
    assert safe_identifier("LRML (tau=.05)") == "lrml_tau_05"
    assert safe_identifier("3-way") == "loss_3_way"
    assert contract_function(GATED_LOSS).name == "gated_blend"
    with pytest.raises(UserError, match="expected one top-level function"):
        contract_function("def f(x):\n    return x\n")
    with pytest.raises(UserError, match="does not parse"):
        contract_function("def broken(:\n")


def test_undefined_names_catches_module_helpers():
    code = GATED_LOSS.replace("torch.sigmoid(z / tau)", "_helper(z / tau)")
    assert undefined_names(code) == ["_helper"]
    assert undefined_names(GATED_LOSS) == []
    with pytest.raises(UserError, match="_helper"):
        render_function_module(ExportableLoss("x", code))


def test_names_the_trl_glue_needs_are_refused():
    code = GATED_LOSS + "\n\nclass PreferenceLossDPOTrainer:\n    pass\n"
    with pytest.raises(UserError, match="PreferenceLossDPOTrainer"):
        render_trl_module(ExportableLoss("gated_blend", code))


def test_formula_text_has_docstring_and_computation():
    text = formula_text(GATED_LOSS)
    assert text.startswith("Logistic loss blended")
    assert "gate = torch.sigmoid(z / tau)" in text


def test_registry_source_loses_its_decorator():
    source = strip_decorators(get_loss("dpo").source)
    assert not source.lstrip().startswith("@")
    assert contract_function(source).name == "dpo_loss"


def test_trl_module_is_standalone_and_embeds_the_reviewed_code():
    text = render_trl_module(ExportableLoss("gated_blend", GATED_LOSS, METADATA))
    assert GATED_LOSS.strip() in text  # verbatim, as reviewed
    modules = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module.split(".")[0])
    assert modules <= {"math", "torch", "trl", "dataclasses", "typing", "warnings"}, modules
    assert "class GatedBlendDPOTrainer(PreferenceLossDPOTrainer)" in text
    assert "LOSS_KWARGS: dict = {'tau': 0.5}" in text
    assert '"fitness": 0.81' not in text and "fitness: 0.81" in text


def test_hostile_metadata_cannot_break_out_of_the_docstring():
    meta = {"campaign": 'x"""\nimport os; os.system("echo pwned")\n"""', "fitness": float("nan")}
    text = render_trl_module(ExportableLoss("gated_blend", GATED_LOSS, meta))
    tree = ast.parse(text)
    assert not any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) for n in tree.body)
    assert "fitness: null" in ast.get_docstring(tree)


def test_export_writes_module_and_test_and_refuses_overwrite(tmp_path):
    loss = ExportableLoss("gated_blend", GATED_LOSS, METADATA)
    written = export_loss(loss, "trl", tmp_path / "gated_trl.py")
    assert Path(written.module).name == "gated_trl.py"
    assert Path(written.test).name == "test_gated_trl.py"
    assert "from gated_trl import" in Path(written.test).read_text()
    with pytest.raises(UserError, match="--force"):
        export_loss(loss, "trl", tmp_path / "gated_trl.py")
    only_fn = export_loss(loss, "function", tmp_path)
    module = _import_file(Path(only_fn.module), "exported_gated_fn")
    assert module.LOSS_KWARGS == {"tau": 0.5}
    assert module.gated_blend.__name__ == "gated_blend"


def test_promote_registers_itself_with_provenance(tmp_path, monkeypatch):
    import candidate_losses.registry as registry

    monkeypatch.setattr(registry, "DISCOVERED_DIR", tmp_path)
    written = promote_loss(ExportableLoss("gated_blend_test", GATED_LOSS, METADATA), tmp_path)
    sidecar = json.loads(Path(written.sidecar).read_text())
    assert sidecar["fitness"] == 0.81 and sidecar["campaign"] == "/runs/demo" and "date" in sidecar
    try:
        _import_file(Path(written.module), "promoted_gated_blend_test")
        spec = get_loss("gated_blend_test")
        assert spec.origin == "discovered"
        assert spec.provenance["candidate_id"] == "g003-s01"
        assert spec.hyperparameters == {"tau": 0.5}
    finally:
        registry._REGISTRY.pop("gated_blend_test", None)
    with pytest.raises(UserError, match="already registered"):
        promote_loss(ExportableLoss("dpo", GATED_LOSS, METADATA), tmp_path / "other", registered_names={"dpo"})


# ---- fast: the CLI over a campaign database ------------------------------------------------------

@pytest.fixture
def campaign_dir(tmp_path):
    from discovery.archive.campaign_dir import CampaignDir
    from discovery.archive.candidate import Candidate
    from discovery.config import CampaignConfig

    directory = tmp_path / "campaign"
    db = CampaignDir.create(directory, CampaignConfig()).database()
    for cid, status, code in (("g001-s00", "evaluated", GATED_LOSS), ("g001-s01", "failed", GATED_LOSS)):
        db.add_candidate(Candidate(id=cid, seq=1_000_000 + int(cid[-1]), generation=1, slot=int(cid[-1]),
                                   island=0, origin="proposal", name="Gated Blend", code=code, code_hash=None,
                                   parent_ids=["base-00"], proposer="llm", thought="blend two losses"))
        db.update(cid, status=status, fitness=0.8, fitness_se=0.01)
    db.close()
    return directory


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from discovery.commands import app

    return CliRunner().invoke(app, args)


def test_cli_exports_a_campaign_candidate(campaign_dir, tmp_path):
    result = _cli(["export", str(campaign_dir), "g001-s00", "--to", "trl", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    paths = json.loads(result.output)
    text = Path(paths["module"]).read_text()
    assert Path(paths["module"]).name == "gated_blend_trl.py"
    assert "candidate_id: \"g001-s00\"" in text and "fitness: 0.8" in text
    assert Path(paths["test"]).exists()


def test_cli_refuses_failed_candidates_and_unknown_ids(campaign_dir, tmp_path):
    failed = _cli(["export", str(campaign_dir), "g001-s01", "--out", str(tmp_path / "x.py")])
    assert isinstance(failed.exception, UserError) and "not evaluated" in str(failed.exception)
    unknown = _cli(["export", str(campaign_dir), "nope", "--out", str(tmp_path / "x.py")])
    assert isinstance(unknown.exception, UserError) and "g001-s00" in str(unknown.exception)
    neither = _cli(["export", "--out", str(tmp_path / "x.py")])
    assert isinstance(neither.exception, UserError)


def test_cli_exports_registry_losses_and_files(tmp_path):
    result = _cli(["export", "--loss", "ipo", "--to", "function", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert "def ipo_loss(" in Path(json.loads(result.output)["module"]).read_text()
    source = tmp_path / "my_loss.py"
    source.write_text(GATED_LOSS)
    result = _cli(["export", "--loss", str(source), "--to", "trl", "--out", str(tmp_path / "mine_trl.py")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "test_mine_trl.py").exists()


def test_cli_promote(campaign_dir, tmp_path, monkeypatch):
    import candidate_losses.registry as registry

    monkeypatch.setattr(registry, "DISCOVERED_DIR", tmp_path / "discovered")
    result = _cli(["promote", str(campaign_dir), "g001-s00", "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)
    assert written["name"] == "gated_blend"
    assert json.loads(Path(written["sidecar"]).read_text())["parents"] == ["base-00"]


# ---- slow: the TRL round trip --------------------------------------------------------------------

class _Snapshots:
    """A TrainerCallback recording the model's weights at the start of every optimizer step."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def __init__(self):
                self.states = []

            def on_step_begin(self, args, state, control, model=None, **kwargs):
                self.states.append(copy.deepcopy(model.state_dict()))

        return Callback()


def _sequence_logps(model, prompt_ids, completion_ids):
    """Summed log p(completion | prompt), computed without TRL: forward, log-softmax, gather."""
    import torch

    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    token_logps = torch.log_softmax(logits.double(), dim=-1).gather(-1, ids[0, 1:, None])[:, 0]
    return token_logps[len(prompt_ids) - 1:].sum()


def _independent_losses(model_dir, ref_model, states, dataset, loss_fn, beta, loss_kwargs):
    """Per step: our loss on independently computed log-probs of the whole (one-batch) dataset."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ref_model.eval()
    rows = list(dataset)
    out = []
    for state in states:
        model.load_state_dict(state)
        logps = {key: torch.stack([_sequence_logps(m, r["prompt_ids"], r[f"{side}_ids"]) for r in rows])
                 for key, m, side in (("pc", model, "chosen"), ("pr", model, "rejected"),
                                      ("rc", ref_model, "chosen"), ("rr", ref_model, "rejected"))}
        losses = loss_fn(logps["pc"], logps["pr"], logps["rc"], logps["rr"], beta, **loss_kwargs)
        if "weight" in rows[0]:
            weight = torch.tensor([r["weight"] for r in rows], dtype=losses.dtype)
            out.append(((losses * weight).sum() / weight.sum()).item())
        else:
            out.append(losses.mean().item())
    return out


def _train(trainer_cls, model_dir, ref_dir, pairs, tmp_path, **trainer_kwargs):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    snapshots = _Snapshots()
    # bf16=False: TRL defaults to bf16 autocast, which would blur a 1e-5 comparison.
    args = DPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[], max_steps=3, beta=0.5,
                     per_device_train_batch_size=len(pairs), learning_rate=5e-3, logging_steps=1,
                     save_strategy="no", disable_tqdm=True, seed=0)
    trainer = trainer_cls(model=str(model_dir), ref_model=AutoModelForCausalLM.from_pretrained(ref_dir),
                          args=args, train_dataset=Dataset.from_list(pairs),
                          processing_class=AutoTokenizer.from_pretrained(model_dir),
                          callbacks=[snapshots], **trainer_kwargs)
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return trainer, snapshots.states, logged


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests import tiny_hf

    build_tiny_gpt2, review_pairs = tiny_hf.build_tiny_gpt2, tiny_hf.review_pairs
    root = tmp_path_factory.mktemp("tiny")
    # A reference that differs from the policy's init, so every step has non-zero log-ratios.
    return build_tiny_gpt2(root / "policy", seed=0), build_tiny_gpt2(root / "reference", seed=1), review_pairs(8)


@pytest.mark.slow
def test_exported_gated_loss_round_trip_with_weights(tmp_path, tiny_models):
    from transformers import AutoModelForCausalLM

    model_dir, ref_dir, pairs = tiny_models
    pairs = [dict(p, weight=float(1 + i % 3)) for i, p in enumerate(pairs)]
    written = export_loss(ExportableLoss("gated_blend", GATED_LOSS, METADATA), "trl", tmp_path / "gated_blend_trl.py")
    module = _import_file(Path(written.module), "gated_blend_trl_roundtrip")
    trainer, states, logged = _train(module.GatedBlendDPOTrainer, model_dir, ref_dir, pairs, tmp_path)
    ours = _independent_losses(model_dir, AutoModelForCausalLM.from_pretrained(ref_dir), states,
                               trainer.train_dataset, load_loss_from_source(GATED_LOSS), 0.5, {"tau": 0.5})
    assert len(logged) == len(ours) == 3
    assert logged == pytest.approx(ours, abs=1e-5)
    assert logged[-1] < logged[0]  # it trained
    # The weights matter: the unweighted mean on the same log-probs is different.
    unweighted = _independent_losses(model_dir, AutoModelForCausalLM.from_pretrained(ref_dir), states[:1],
                                     trainer.train_dataset.remove_columns("weight"),
                                     load_loss_from_source(GATED_LOSS), 0.5, {"tau": 0.5})
    assert abs(unweighted[0] - logged[0]) > 1e-4


@pytest.mark.slow
def test_exported_dpo_round_trip_equals_trl_sigmoid(tmp_path, tiny_models):
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    model_dir, ref_dir, pairs = tiny_models
    written = export_loss(ExportableLoss("dpo", strip_decorators(get_loss("dpo").source)), "trl", tmp_path / "dpo_trl.py")
    module = _import_file(Path(written.module), "dpo_trl_roundtrip")
    trainer, states, logged = _train(module.DpoDPOTrainer, model_dir, ref_dir, pairs, tmp_path / "ours")
    ours = _independent_losses(model_dir, AutoModelForCausalLM.from_pretrained(ref_dir), states,
                               trainer.train_dataset, get_loss("dpo").fn, 0.5, {})
    assert logged == pytest.approx(ours, abs=1e-5)
    _, _, builtin = _train(DPOTrainer, model_dir, ref_dir, pairs, tmp_path / "trl")  # loss_type="sigmoid"
    assert logged == pytest.approx(builtin, abs=1e-5)
    assert logged[-1] < logged[0]


@pytest.mark.slow
def test_generated_pytest_file_passes(tmp_path):
    written = export_loss(ExportableLoss("gated_blend", GATED_LOSS, METADATA), "trl", tmp_path / "gated_gen_trl.py")
    tests = _import_file(Path(written.test), "test_gated_gen_trl_generated")
    tests.test_loss_is_per_example_finite_and_differentiable()
    tests.test_trainer_trains_and_logs_the_loss(tmp_path / "a")
    tests.test_weight_column_is_accepted(tmp_path / "b")
