"""Proposers: code extraction, normalised hashing, MutationProposer edits, LLMProposer over HTTP."""

from __future__ import annotations

import ast

import pytest

from candidate_losses.source import code_hash, normalize_code
from discovery.proposers.reply import extract_reply
from discovery.config import LLMConfig, ModelEndpoint, MutationConfig
from discovery.errors import UserError
from discovery.proposers.prompting import ProgramSummary, ProposalContext, RepairContext
from discovery.proposers.llm import LLMProposer
from discovery.proposers.mutation import MutationProposer, crossover
from discovery.sandbox import validate_source
from openai_test_server import ScriptedOpenAIServer, Status, json_reply

DPO = '''def dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """DPO."""
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * h)
'''
LRML = '''def lrml(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta, tau=0.05):
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    z = beta * h
    w = torch.sigmoid(z / tau)
    return (1 - w) * -F.logsigmoid(z) + w * torch.exp(-z)
'''


def context(seed: int, parents: list[ProgramSummary] | None = None) -> ProposalContext:
    parents = parents or [ProgramSummary("base-00", "dpo", DPO, fitness=0.5), ProgramSummary("base-01", "lrml", LRML)]
    return ProposalContext(generation=1, island=0, slot=seed % 4, seed=seed, parents=parents)


# ---- extraction and hashing --------------------------------------------------------------------
def test_extract_from_json_fenced_json_and_markdown():
    r = extract_reply('Sure!\n```json\n' + json_reply("My Loss", DPO) + '\n```')
    assert r.code is not None and r.name == "my_loss" and "logsigmoid" in r.code
    r = extract_reply("Here is my idea.\n```python\n" + DPO + "```\nThanks")
    assert r.code is not None and r.name == "dpo" and "idea" in r.thought
    r = extract_reply('{"thought": "x", "name": "a", "code": "def f(a):\n  return a"')  # truncated JSON
    assert r.code is None and "malformed" in r.problem
    assert extract_reply("I cannot help with that.").code is None


def test_normalised_hash_ignores_formatting_names_comments_and_docstrings():
    variant = DPO.replace('"""DPO."""', "# a comment").replace("h =", "margin =").replace("* h)", "* margin)")
    variant = variant.replace("def dpo", "def renamed")
    assert code_hash(variant) == code_hash(DPO)
    assert code_hash(DPO.replace("beta * h", "beta * h * 2.0")) != code_hash(DPO)
    assert normalize_code("def f(:") == "def f(:"  # unparsable code still hashes stably


# ---- MutationProposer ---------------------------------------------------------------------------
def test_mutation_is_deterministic_per_seed_and_varied_across_seeds():
    p = MutationProposer()
    a = [p.propose(context(s))[0].code for s in range(12)]
    b = [p.propose(context(s))[0].code for s in range(12)]
    assert a == b
    assert len(set(map(code_hash, a))) >= 10


def test_mutation_children_are_valid_contract_code_with_lineage():
    p = MutationProposer(MutationConfig(crossover_rate=0.5))
    kinds = set()
    for s in range(40):
        (child,) = p.propose(context(s))
        assert validate_source(child.code) == [], child.code
        fn = ast.parse(child.code).body[0]
        assert [a.arg for a in fn.args.args][:5] == ["policy_chosen_logps", "policy_rejected_logps",
                                                     "reference_chosen_logps", "reference_rejected_logps", "beta"]
        assert child.parent_ids and set(child.parent_ids) <= {"base-00", "base-01"}
        assert code_hash(child.code) not in {code_hash(DPO), code_hash(LRML)}
        kinds.update(op.split()[0] for op in child.meta["ops"])
    assert {"crossover", "constant", "margin"} <= kinds  # several edit families are exercised


def test_crossover_gate_mixes_two_losses_like_discopop():
    import random

    for seed in range(20):
        code, how = crossover(DPO, LRML, "mix", random.Random(seed))
        if "gate" in how:
            break
    assert "torch.sigmoid(z_mix /" in code and "(1.0 - gate) * loss_a + gate * loss_b" in code
    assert "b_tau = 0.05" in code  # keyword hyper-parameters become constants of the child
    assert validate_source(code) == []


# ---- LLMProposer over a real HTTP test double ---------------------------------------------------
def llm_config(server: ScriptedOpenAIServer, **kw) -> LLMConfig:
    model = ModelEndpoint(model="test-model", base_url=server.base_url, api_key_env="PREFDISCO_TEST_KEY",
                          input_cost_per_mtok=1.0, output_cost_per_mtok=2.0)
    return LLMConfig(models=[model], backoff_initial_s=0.01, backoff_max_s=0.05, request_timeout_s=10, **kw)


def test_llm_retries_429_honouring_retry_after_then_accounts_tokens_and_cost():
    sleeps: list[float] = []
    with ScriptedOpenAIServer([Status(429, retry_after=0.02), Status(503), json_reply("good", DPO)]) as server:
        proposer = LLMProposer(llm_config(server), sleep=sleeps.append)
        (p,) = proposer.propose(context(0))
    assert server.answers == [429, 503, 200]
    assert sleeps == [0.02, 0.02]  # Retry-After first, then exponential backoff (0.01 * 2)
    assert p.code is not None and p.name == "good" and p.prompt_tokens > 0 and p.completion_tokens > 0
    assert p.cost_usd == pytest.approx((p.prompt_tokens * 1.0 + p.completion_tokens * 2.0) / 1e6)
    request = server.requests[-1]
    assert request["model"] == "test-model" and request["messages"][0]["role"] == "system"
    assert "policy_chosen_logps" in request["messages"][0]["content"]


def test_llm_gives_up_after_max_retries_with_a_failed_proposal():
    with ScriptedOpenAIServer([Status(500)] * 3) as server:
        (p,) = LLMProposer(llm_config(server, max_retries=2), sleep=lambda s: None).propose(context(0))
    assert p.code is None and "3 attempts" in p.error


@pytest.mark.parametrize("status,needle", [(401, "API key"), (404, "not found")])
def test_llm_configuration_errors_are_user_errors(status, needle):
    with ScriptedOpenAIServer([Status(status)]) as server:
        with pytest.raises(UserError, match=needle):
            LLMProposer(llm_config(server), sleep=lambda s: None).propose(context(0))


def test_llm_malformed_reply_and_repair_prompt():
    with ScriptedOpenAIServer(['{"thought": "oops", "code": "def f(', json_reply("fixed", DPO)]) as server:
        proposer = LLMProposer(llm_config(server), sleep=lambda s: None)
        (bad,) = proposer.propose(context(0))
        assert bad.code is None and "malformed" in bad.error
        failed = ProgramSummary("g001-s00", "broken", "def broken(:\n    pass\n")
        (fixed,) = proposer.repair(RepairContext(generation=2, seed=1, failed=failed, failure_class="syntax",
                                                 message="line 1: invalid syntax"))
    assert fixed.code is not None and fixed.parent_ids == ["g001-s00"] and fixed.proposer.startswith("llm-repair")
    assert "line 1: invalid syntax" in server.requests[-1]["messages"][1]["content"]


def test_llm_weighted_ensemble_draws_models_by_weight_deterministically():
    with ScriptedOpenAIServer(default=json_reply("x", DPO)) as server:
        cfg = llm_config(server)
        cfg.models = [ModelEndpoint(model="big", base_url=server.base_url, weight=1.0),
                      ModelEndpoint(model="small", base_url=server.base_url, weight=3.0)]
        proposer = LLMProposer(cfg, sleep=lambda s: None)
        names = [proposer.propose(context(s))[0].proposer for s in range(24)]
        again = [proposer.propose(context(s))[0].proposer for s in range(24)]
    assert names == again
    assert 12 < sum(n.endswith(":small") for n in names) < 24 and any(n.endswith(":big") for n in names)
