"""The sandbox seen from a campaign: a poisoner cannot move DPO's score, and a campaign whose
baselines cannot be evaluated stops with one line instead of finishing empty."""

from __future__ import annotations

import pytest

from conftest import FakeJob, FakePool, FakeProbe
from discovery.archive.campaign_dir import CampaignDir
from discovery.config import config_from_dict
from discovery.search.campaign import Campaign, CampaignCannotEvaluate
from discovery.search.progress import ProgressView
from discovery.proposers.base import Proposal
from discovery.sandbox import validate_source

# The review's poisoner, public torch API only: a TorchFunctionMode made with type(), kept pushed
# by a suspended generator parked in a module-level dict, flips F.logsigmoid for later jobs.
POISONER = '''
def poison(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
           reference_rejected_logps, beta):
    if not F.warnings.onceregistry.get("prefdisco"):
        def flip(mode, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            return -out if func is F.logsigmoid else out
        Flip = type("Flip", (torch.overrides.TorchFunctionMode,), {"_" + "_torch_function_" + "_": flip})
        def park():
            with Flip():
                yield 1
        g = park()
        next(g)
        F.warnings.onceregistry["prefdisco"] = g
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h)
'''
DPO_AGAIN = '''
def dpo_again(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
              reference_rejected_logps, beta):
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    return -F.logsigmoid(beta * (chosen - rejected))
'''


class Scripted:
    """Fixed proposals, one per slot, in order (a test fixture, not a discovery method)."""

    name = "scripted"

    def __init__(self, codes: list[str]) -> None:
        self.codes = list(codes)

    def propose(self, context):
        code = self.codes.pop(0)
        return [Proposal(thought="t", name=f"s{context.slot}", code=code,
                         parent_ids=[context.parents[0].id], proposer=self.name)]


@pytest.mark.slow
def test_dpo_then_poisoner_then_dpo_gives_dpo_the_same_scores(tmp_path):
    cfg = config_from_dict({
        "seed": 0, "baselines": ["dpo"], "generation_size": 2, "workers": 1, "pipeline_lag": 0,
        "budget": {"max_candidates": 2}, "database": {"fingerprint_dedupe": False},
        "cascade": {"screen_suite": "screen", "fitness_suite": "screen", "screen_seeds": 1,
                    "fitness_seeds": 1, "screen_margin": 10.0, "heldout_top_k": 0,
                    "cache_dir": str(tmp_path / "cache")},
    })
    Campaign.create(cfg, tmp_path / "run", proposer=Scripted([POISONER, DPO_AGAIN]),
                    validate=validate_source, progress=ProgressView(enabled=False)).run()
    rows = {r.name: r for r in CampaignDir.open(tmp_path / "run").database().all()}
    dpo, again = rows["dpo"], rows["s1"]
    assert again.status == "evaluated", again
    assert again.screen_fitness == pytest.approx(dpo.screen_fitness, rel=1e-6, abs=1e-9)
    assert again.fitness == pytest.approx(dpo.fitness, rel=1e-6, abs=1e-9)
    assert rows["s0"].status == "failed"  # the poisoner itself is refused


class BrokenSandbox(FakePool):
    """Every request fails the way a sandbox that cannot start a worker fails."""

    def probe(self, code):
        self._note("probe", code)
        return FakeProbe(False, "infrastructure", "sandbox worker failed to start: No module named 'torch'")

    def run_job(self, code, job, kwargs, timeout_s=None):
        self._note(kwargs["suite"], code or "")
        return FakeJob(False, None, "infrastructure", "sandbox worker failed to start")


class FailingDPO(FakePool):
    """The sandbox works, but the DPO baseline itself crashes (e.g. a broken evaluator install)."""

    def run_job(self, code, job, kwargs, timeout_s=None):
        if code is None and kwargs.get("loss_name") == "dpo":
            return FakeJob(False, None, "crash", "ModuleNotFoundError: No module named 'evaluators.tinylm'")
        return super().run_job(code, job, kwargs, timeout_s)


@pytest.mark.parametrize("pool_cls, words", [(BrokenSandbox, "outside the candidate"),
                                             (FailingDPO, "DPO baseline failed")])
def test_a_campaign_that_cannot_evaluate_its_baselines_stops_loudly(tmp_path, pool_cls, words):
    cfg = config_from_dict({"seed": 0, "baselines": ["dpo", "ipo"], "generation_size": 4,
                            "budget": {"max_candidates": 8}})
    campaign = Campaign.create(cfg, tmp_path, pool=pool_cls(), validate=validate_source,
                               progress=ProgressView(enabled=False))
    with pytest.raises(CampaignCannotEvaluate) as err:
        campaign.run()
    message = str(err.value)
    assert words in message and "\n" not in message and "budget" not in message
    assert "--resume" in message
    proposals = [r for r in CampaignDir.open(tmp_path).database().all() if not r.is_baseline]
    assert proposals == []  # nothing was proposed against a baseline that never ran
