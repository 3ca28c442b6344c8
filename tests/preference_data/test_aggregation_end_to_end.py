"""Annotation app DB -> export -> aggregate -> TRL-format JSONL -> one weighted-DPO training run.

The training run is the project's own loop (`evaluators.training.train_preference`) on a tiny
random-init GPT-2 (`evaluators.lm.build_model`, character vocabulary), with the registered DPO loss
and each pair's weight applied as the pluralistic tier applies it (`weighting.example_scales`).
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import torch

from preference_data.aggregation import AggregationConfig, aggregate, read_pairs, write_pairs
from preference_data.annotation.sources import load_judgments, load_population_shares
from preference_data.annotation import demo as annotation


def _annotate(tmp_path: Path) -> tuple[str, list[str]]:
    """6 north + 2 south annotators answer every item through the store API; north prefers the
    first stored response on helpfulness, south the second; population target is 50/50."""
    from preference_data.annotation.assignment import next_assignment
    from preference_data.annotation.db import session_factory
    from preference_data.annotation.judging import record_submission
    from preference_data.annotation.models import Annotator, Item
    from preference_data.annotation.store import get_project, project_spec

    url = f"sqlite:///{tmp_path}/annot.db"
    attrs = [{"region": "north"}] * 6 + [{"region": "south"}] * 2
    demo = annotation.build_demo_project(url, tmp_path, n_items=5, n_annotators=8, attributes=attrs,
                                         spec_overrides={"overlap": 8}, n_responses=3)
    rng = random.Random(0)
    with session_factory(url)() as s:
        project = get_project(s, demo.name)
        spec = project_spec(project)
        for ann_id, a in zip(demo.annotator_ids, attrs):
            ann = s.get(Annotator, ann_id)
            while (asg := next_assignment(s, project, spec, ann, rng)) is not None:
                rids = [r.id for r in sorted(s.get(Item, asg.item_id).responses, key=lambda r: r.position)]
                fav = rids[0] if a["region"] == "north" else rids[1]
                rest = [r for r in rids if r != fav]
                answers = {"helpfulness": fav, "overall": [fav] + rest,
                           "politeness": {r: (5 if r == fav else 2) for r in rids}, "reason": "ok"}
                record_submission(s, project, ann, asg.item_id, answers, comment="")
    return url, demo.annotator_ids


def _train_one_run(pairs: list[dict], steps: int = 15) -> tuple[float, float, float]:
    """Weighted DPO on a char-level tiny GPT-2; returns (first loss, last loss, final train margin)."""
    from candidate_losses import get_loss
    from evaluators.lm import ModelConfig, Vocab, build_model, response_logps
    from evaluators.training import train_preference
    from evaluators.granular import condition_on_dimension, example_scales

    torch.manual_seed(0)
    prompts = [condition_on_dimension(p["prompt"], p["dimension"])[-24:].rjust(24) for p in pairs]
    chars = sorted({c for t in prompts + [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs] for c in t})
    vocab = Vocab(chars)
    width = max(len(p[k]) for p in pairs for k in ("chosen", "rejected")) + 1
    prefix = torch.tensor([vocab.prefix(list(t)) for t in prompts])

    def enc(key: str) -> tuple[torch.Tensor, torch.Tensor]:
        e = [vocab.encode_response(list(p[key]), width) for p in pairs]
        return torch.tensor([x[0] for x in e]), torch.tensor([x[1] for x in e])

    (c, cl), (r, rl) = enc("chosen"), enc("rejected")
    weights = torch.tensor([p["weight"] for p in pairs], dtype=torch.float32)
    ref = build_model(len(vocab), prefix.shape[1] + width, ModelConfig(n_layer=1, n_embd=32, n_head=2), 0).eval()
    policy = copy.deepcopy(ref).train()
    with torch.no_grad():
        ref_c, ref_r = response_logps(ref, prefix, c, cl), response_logps(ref, prefix, r, rl)
    dpo = get_loss("dpo").fn
    batch: dict[str, torch.Tensor] = {}

    def policy_logps(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch["idx"] = idx
        return response_logps(policy, prefix[idx], c[idx], cl[idx]), response_logps(policy, prefix[idx], r[idx], rl[idx])

    def weighted_dpo(pc, pr, rc, rr, beta):  # mean of these = the weighted mean of DPO's losses
        return dpo(pc, pr, rc, rr, beta) * example_scales(None, weights=weights[batch["idx"]])

    out = train_preference(parameters=policy.parameters(), policy_logps=policy_logps, reference_chosen=ref_c,
                           reference_rejected=ref_r, loss_fn=weighted_dpo, beta=0.1, loss_kwargs={}, steps=steps,
                           batch_size=len(pairs), lr=3e-3, grad_clip=0.0, weight_decay=0.01,
                           generator=torch.Generator().manual_seed(0), log_every=1)
    assert out.flags == [] and out.steps_done == steps, out.message
    losses = out.curve
    with torch.no_grad():
        margin = ((response_logps(policy, prefix, c, cl) - ref_c) - (response_logps(policy, prefix, r, rl) - ref_r))
    return losses[0], losses[-1], float((weights * margin).sum() / weights.sum())


@pytest.mark.slow
def test_app_db_to_trl_pairs_to_training(tmp_path: Path) -> None:
    from preference_data.annotation.store import export_judgments, write_export
    url, _ = _annotate(tmp_path)
    export = write_export(export_judgments(url, "demo"), tmp_path / "judgments.jsonl")

    from_file = load_judgments(export, "demo")
    from_db = load_judgments(url, "demo")
    assert [j.judgment_id for j in from_file] == [j.judgment_id for j in from_db]
    assert len(from_file) == 5 * 8 * 4  # items x annotators x dimensions (text included)
    shares = load_population_shares("demo", url)
    assert shares == {"region": {"north": 0.5, "south": 0.5}}

    res = aggregate(from_file, AggregationConfig(method="majority", weighting="poststrat", by_dimension=True,
                                                 by_group=True, population_shares=shares))
    out = write_pairs(res.pairs, tmp_path / "pairs.jsonl")
    pairs = read_pairs(out)
    assert pairs and {"prompt", "chosen", "rejected", "weight", "group", "dimension", "provenance"} <= set(pairs[0])
    # each group's pairs carry its 50% population share, although south is 25% of annotators
    mass = {g: sum(p["weight"] for p in pairs if p["group"] == g) for g in ("north", "south")}
    assert mass["north"] == pytest.approx(mass["south"], rel=1e-6)
    ids = {j.judgment_id for j in from_file}
    assert all(set(p["provenance"]["judgment_ids"]) <= ids for p in pairs)
    assert res.report["agreement"]["by_group"]["north"]["helpfulness"]["alpha"] == 1.0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; a 1-layer model gains nothing from threads
    try:
        first, last, margin = _train_one_run(pairs)
    finally:
        torch.set_num_threads(threads)
    assert last < first and margin > 0


def test_cli_on_app_export(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from discovery.commands import app
    from preference_data.annotation.store import export_judgments, write_export
    url, _ = _annotate(tmp_path)
    export = write_export(export_judgments(url, "demo"), tmp_path / "judgments.jsonl")
    runner = CliRunner()
    res = runner.invoke(app, ["aggregate", "--judgments", str(export), "--project", "demo", "--method",
                              "bradley-terry", "--by-dimension", "--out", str(tmp_path / "p.jsonl"),
                              "--report", str(tmp_path / "r.json"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["pairs"] == len(read_pairs(tmp_path / "p.jsonl")) > 0
    assert json.loads((tmp_path / "r.json").read_text())["n_judgments"] == 160
    # DB source with poststrat: targets come from the project stored in the DB
    res = runner.invoke(app, ["aggregate", "--judgments", url, "--project", "demo", "--weighting", "raking",
                              "--by-group", "--out", str(tmp_path / "q.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["weighting"]["margins"]["region"]["south"]["weighted_share"] == pytest.approx(0.5)
