"""Grammar of structural moves: each renders a valid, distinct loss whose gradient does what the move says.

The rendered losses are executed here (test process) only to check their gradients; in a campaign the
same code reaches only the sandbox.
"""

from __future__ import annotations

import random

import pytest
import torch

from candidate_losses import get_loss
from candidate_losses.contract import load_loss_from_source
from candidate_losses.source import code_hash
from discovery.config import MutationConfig
from discovery.proposers.grammar import (
    GateMix,
    LabelSmoothing,
    Link,
    MarginTransform,
    Mixture,
    Regulariser,
    random_move,
)
from discovery.proposers.mutation import MutationProposer
from discovery.proposers.prompting import ProgramSummary, ProposalContext
from discovery.sandbox import validate_source
from discovery.search.campaign import baseline_code

DPO, HINGE, IPO = (baseline_code(get_loss(n).source) for n in ("dpo", "hinge", "ipo"))
MOVES = [MarginTransform("scale", 2.0), MarginTransform("shift", 0.5), MarginTransform("clip", 2.0),
         MarginTransform("tanh", 2.0), MarginTransform("softsign", 2.0), Link("logistic", 2.0), Link("hinge", 1.0),
         Link("squared", 1.0), Link("exp", 1.0), Link("smooth_hinge", 1.0), GateMix(0.5), Mixture(0.3),
         LabelSmoothing(0.1), Regulariser("chosen_nll", 0.01), Regulariser("chosen_floor", 0.5),
         Regulariser("rejected_floor", 0.5, -5.0)]


def grad_at(code: str, z: float, beta: float = 0.1, split: float = 0.5) -> tuple[float, float]:
    """(dL/d chosen log-prob, dL/d rejected log-prob) at margin z / beta, half of it on each side."""
    fn = load_loss_from_source(code)
    margin = z / beta
    pc = torch.tensor([-50.0 + split * margin], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([-60.0 - (1 - split) * margin], dtype=torch.float64, requires_grad=True)
    rc, rr = torch.tensor([-50.0], dtype=torch.float64), torch.tensor([-60.0], dtype=torch.float64)
    fn(pc, pr, rc, rr, beta).sum().backward()
    return float(pc.grad), float(pr.grad)


def test_every_move_renders_a_valid_distinct_loss():
    codes = [m.render([DPO, HINGE], "child") for m in MOVES]
    assert all(c is not None for c in codes)
    for move, code in zip(MOVES, codes):
        assert validate_source(code) == [], (move, code)
    assert len({code_hash(c) for c in codes}) == len(codes)
    assert code_hash(DPO) not in {code_hash(c) for c in codes}


def test_random_moves_always_render_valid_code_on_library_parents():
    rng = random.Random(0)
    for _ in range(150):
        move = random_move(rng, 2)
        parent = rng.choice([DPO, IPO])
        code = move.render([parent, HINGE], "n")
        if code is None:  # only a link swap on a parent without a logistic link does not apply
            assert isinstance(move, Link) and parent is IPO
        else:
            assert validate_source(code) == [], (move, code)


def test_label_smoothing_keeps_a_gradient_on_a_confidently_right_pair():
    smoothed = LabelSmoothing(0.1).render([DPO], "ls")
    assert abs(grad_at(DPO, z=20.0)[0]) < 1e-6  # DPO has stopped pulling at z = 20
    g = grad_at(smoothed, z=20.0)[0]
    assert g == pytest.approx(0.1 * 0.1, rel=1e-3)  # eps * beta: the swapped pair pulls the margin back (lower loss for a smaller margin)


def test_hinge_link_has_zero_gradient_beyond_its_margin_and_pulls_inside():
    hinged = Link("hinge", 1.0).render([DPO], "h")
    assert grad_at(hinged, z=1.5) == (0.0, 0.0)
    dc, dr = grad_at(hinged, z=0.5)
    assert dc < 0 < dr  # inside the margin: raise chosen, lower rejected


def test_link_can_be_swapped_again_and_squared_link_pushes_back_past_its_target():
    squared = Link("squared", 1.0).render([Link("hinge", 1.0).render([DPO], "h")], "s")
    assert "relu" not in squared
    assert grad_at(squared, z=2.0)[0] > 0 and grad_at(squared, z=0.0)[0] < 0  # IPO-like: target margin 1


def test_margin_clip_stops_the_gradient_outside_the_clip():
    clipped = MarginTransform("clip", 2.0).render([DPO], "c")
    assert grad_at(clipped, z=-3.0) == (0.0, 0.0)
    assert grad_at(clipped, z=-1.0)[0] < 0


def test_margin_scale_is_an_effective_beta():
    scaled = MarginTransform("scale", 2.0).render([DPO], "s")
    assert grad_at(scaled, z=0.5)[0] == pytest.approx(2.0 * grad_at(DPO, z=1.0)[0], rel=1e-9)


def test_rejected_floor_acts_only_below_the_floor():
    floored = Regulariser("rejected_floor", 0.5, -5.0).render([DPO], "r")
    # rejected log-ratio = -(1 - split) * margin: split 0 puts the whole margin on it
    assert grad_at(floored, z=0.3, split=0.0)[1] == pytest.approx(grad_at(DPO, z=0.3, split=0.0)[1])
    assert grad_at(floored, z=1.0, split=0.0)[1] == pytest.approx(grad_at(DPO, z=1.0, split=0.0)[1] - 0.5)


def test_gate_mix_follows_one_parent_where_the_gate_is_shut():
    gated = GateMix(0.05).render([DPO, HINGE], "g")
    assert grad_at(gated, z=-2.0)[0] == pytest.approx(grad_at(DPO, z=-2.0)[0], rel=1e-6)  # gate ~ 0: DPO
    assert grad_at(gated, z=0.8)[0] == pytest.approx(grad_at(HINGE, z=0.8)[0], rel=1e-4)  # gate ~ 1: hinge


def context(seed: int) -> ProposalContext:
    parents = [ProgramSummary(id="base-00", name="dpo", code=DPO, fitness=0.5),
               ProgramSummary(id="base-01", name="hinge", code=HINGE, fitness=0.4)]
    return ProposalContext(parents=parents, generation=1, island=0, slot=0, seed=seed)


def test_mutation_proposer_mixes_grammar_moves_by_rate():
    off = MutationProposer(MutationConfig())
    on = MutationProposer(MutationConfig(grammar_rate=1.0))
    thoughts_off = [off.propose(context(s))[0].thought for s in range(20)]
    made = [on.propose(context(s))[0] for s in range(20)]
    assert not any(t.startswith("grammar:") for t in thoughts_off)
    assert all(p.thought.startswith("grammar:") and validate_source(p.code) == [] for p in made)
    assert len({p.thought.split(":")[1].split()[0] for p in made}) >= 4  # several move kinds
    default = MutationProposer(MutationConfig(grammar_rate=0.0))
    assert [p.code for s in range(10) for p in default.propose(context(s))] == \
           [p.code for s in range(10) for p in off.propose(context(s))]
