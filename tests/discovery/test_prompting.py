"""Prompt rendering from typed contexts; held-out scores never reach a proposer."""

from __future__ import annotations

import dataclasses

from discovery.search.campaign import summary_of
from discovery.archive.candidate import Candidate
from discovery.archive.database import ProgramDatabase
from discovery.proposers.prompting import ProgramSummary, ProposalContext, RepairContext, render_propose, render_repair, render_system

CODE = "def a(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))\n"


def test_system_prompt_states_contract_constraints_and_stability_advice():
    text = render_system()
    for needle in ("policy_chosen_logps", "reference_rejected_logps", "[batch]", "F.logsigmoid", "JSON",
                   "no other imports", "batch statistics"):
        assert needle in text, needle


def test_propose_prompt_shows_parents_fitness_breakdown_and_behaviour():
    parent = ProgramSummary("g001-s00", "alpha", CODE, fitness=0.61234, fitness_se=0.0123,
                            screen_fitness=0.7, metrics={"bandit_easy": 0.81}, behaviour="loss vs z: steep")
    insp = ProgramSummary("base-01", "ipo", CODE, fitness=0.5)
    text = render_propose(ProposalContext(generation=3, island=1, slot=0, seed=1, parents=[parent],
                                          inspirations=[insp], dpo_fitness=0.6))
    for needle in ("alpha", "0.6123 ± 0.0123", "bandit_easy=0.8100", "loss vs z: steep", "ipo", "0.6000"):
        assert needle in text, needle


def test_heldout_scores_never_reach_the_prompt(tmp_path):
    assert "heldout" not in {f.name for f in dataclasses.fields(ProgramSummary)}
    db = ProgramDatabase(f"sqlite:///{tmp_path / 'c.db'}")
    db.add_candidate(Candidate(id="g001-s00", seq=1, generation=1, slot=0, island=0, origin="proposal",
                               name="secretive", code=CODE, code_hash="h", parent_ids=[], proposer="t"))
    db.update("g001-s00", status="evaluated", fitness=0.5, fitness_se=0.01, heldout=0.987654, heldout_se=0.0456789,
              metrics={"fitness": {"per_task": {"t1": 0.5}}, "heldout": {"per_task": {"t_held": 0.987654}}})
    row = db.get("g001-s00")
    summary = summary_of(row)
    text = render_propose(ProposalContext(generation=2, island=0, slot=0, seed=0, parents=[summary],
                                          inspirations=[summary]))
    text += render_repair(RepairContext(generation=2, seed=0, failed=summary, failure_class="crash", message="m"))
    assert "0.9876" not in text and "0.0457" not in text and "t_held" not in text
    assert "heldout" not in text.lower() and "held-out" not in text.lower()
    assert "0.5000" in text  # the search fitness itself is shown


def test_repair_prompt_carries_the_classified_error():
    failed = ProgramSummary("g002-s01", "broken", "def broken(:\n")
    text = render_repair(RepairContext(generation=3, seed=0, failed=failed, failure_class="syntax",
                                       message="line 1: invalid syntax"))
    assert "Failure class: syntax" in text and "line 1: invalid syntax" in text and "def broken(:" in text
