"""DiscoPOP's LLM loop as an option: conversation mode, prompt switches and JSON mode, end to end
against the OpenAI-compatible HTTP test double (real `openai` client, FakePool evaluation)."""

from __future__ import annotations

import pytest
from llm_campaign import llm_config, prompt_hash_reply, run_llm_campaign
from openai_test_server import ScriptedOpenAIServer, json_reply

from discovery.archive.campaign_dir import CampaignDir
from discovery.config import LLMConfig, ModelEndpoint, PromptConfig, config_from_dict
from discovery.errors import UserError
from discovery.proposers.conversation import conversation_messages
from discovery.proposers.llm import LLMProposer
from discovery.proposers.prompting import BetaSweep, ChatTurn, Outcome, ProgramSummary, ProposalContext, render_system


def rows_of(out):
    db = CampaignDir.open(out).database()
    try:
        return {r.id: r for r in db.all()}, db.replies([r.id for r in db.all()])
    finally:
        db.close()


def chats_by_island(server, generation_size=2):
    """Requests in the order a sequential campaign sent them: generation by generation, slot by slot."""
    chats: dict[int, list[list[dict]]] = {}
    for i, request in enumerate(server.requests):
        chats.setdefault(i % generation_size, []).append(request["messages"])
    return chats


# ---- conversation mode -------------------------------------------------------------------------
def test_conversation_keeps_one_growing_chat_per_island_with_every_fitness_or_error(tmp_path):
    with ScriptedOpenAIServer(default=prompt_hash_reply) as server:
        run_llm_campaign(tmp_path, server.base_url, llm={"mode": "conversation"})
    rows, replies = rows_of(tmp_path)
    chats = chats_by_island(server)
    assert [len(c) for c in chats.values()] == [4, 4]  # 8 candidates: 4 turns on each of 2 islands
    systems = {m[0]["content"] for chat in chats.values() for m in chat}
    assert len(systems) == 1  # one system prompt throughout
    fed_back = {"evaluated": 0, "failed": 0}
    for island, chat in chats.items():
        first = chat[0]
        assert [m["role"] for m in first] == ["system", "user"] and "dpo" in first[1]["content"]
        assert "Fitness" not in first[1]["content"] or "fitness" in first[1]["content"]
        for turn, (before, after) in enumerate(zip(chat, chat[1:]), start=1):
            cid = f"g{turn:03d}-s{island:02d}"
            assert after[: len(before)] == before  # the chat only grows...
            assert after[len(before)] == {"role": "assistant", "content": replies[cid]}  # ...by its own reply
            feedback = after[len(before) + 1]["content"]
            row = rows[cid]
            assert feedback.endswith("Please generate the next one.\n") and row.name in feedback
            if row.status == "evaluated":
                assert f"Fitness: {row.fitness:.4f} ± {row.fitness_se:.4f}." in feedback
                fed_back["evaluated"] += 1
            elif row.status == "failed":
                assert f"rejected before training [{row.failure_class}]" in feedback
                fed_back["failed"] += 1
            assert rows[f"g{turn + 1:03d}-s{island:02d}"].parent_ids == [cid]  # lineage: the previous turn
        assert rows[f"g001-s{island:02d}"].parent_ids == ["base-00", "base-01", "base-02"]
    assert chats[0][1] != chats[1][1]  # the islands' chats are separate
    assert fed_back["evaluated"] and fed_back["failed"]  # both kinds of result went back to the model
    assert not [r for r in rows.values() if r.origin == "repair"]  # errors go back in the chat instead


def test_conversation_with_pipeline_lag_reports_each_result_when_it_is_known(tmp_path):
    with ScriptedOpenAIServer(default=prompt_hash_reply) as server:
        run_llm_campaign(tmp_path, server.base_url, pipeline_lag=1, llm={"mode": "conversation"})
    rows, _ = rows_of(tmp_path)
    chat = chats_by_island(server)[0]
    assert "1 proposal(s) behind" in chat[0][1]["content"]
    assert "No result is in yet" in chat[1][-1]["content"]  # turn 2: generation 1 is still being evaluated
    for turn in (3, 4):  # turn g reports generation g-2
        reported = rows[f"g{turn - 2:03d}-s00"]
        assert f"{reported.name} ({reported.id})" in chat[turn - 1][-1]["content"]
        assert rows[f"g{turn - 1:03d}-s00"].id not in chat[turn - 1][-1]["content"]
    for before, after in zip(chat, chat[1:]):
        assert after[: len(before)] == before


def test_conversation_is_bounded_to_the_first_turn_and_the_last_exchanges():
    baselines = [ProgramSummary("base-00", "dpo", "def dpo(): pass\n", fitness=0.5)]
    thread = [ChatTurn(id=f"g{i:03d}-s00", reply=f"reply {i}", outcomes=[Outcome(f"g{i:03d}-s00", f"n{i}", "evaluated",
                                                                               fitness=0.1 * i, fitness_se=0.01)])
              for i in range(1, 6)]
    context = ProposalContext(generation=6, island=0, slot=0, seed=0, parents=baselines, thread=thread)
    messages = conversation_messages(context, PromptConfig(), max_turns=2)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in messages if m["role"] == "assistant"] == ["reply 4", "reply 5"]
    assert "dpo" in messages[1]["content"] and "Fitness: 0.5000 ± 0.0100." in messages[-1]["content"]
    assert len(conversation_messages(context, PromptConfig(), max_turns=20)) == 2 + 2 * 5


def test_conversation_needs_one_island_per_slot():
    with pytest.raises(UserError, match="islands >= generation_size"):
        config_from_dict(llm_config(None, generation_size=4, llm={"mode": "conversation"}))
    with pytest.raises(UserError, match="samples: 1"):
        config_from_dict({"proposer": {"kind": "llm", "llm": {"mode": "conversation", "samples": 2}}})


# ---- prompt switches ---------------------------------------------------------------------------
SWITCH_TEXT = {  # switch -> (text present when the switch is on, present when off)
    "show_beta": ("once for each beta\n  in {0.5} and the fitness is the best point", "chosen by the evaluator"),
    "monotonicity_rule": ("must mean the policy prefers the chosen response more", None),
    "example_loss": ("## Example reply (DPO", None),
    "literature_cue": ("knows the literature on binary classification", "designing offline preference-optimisation"),
}
DEFAULTS = {"show_beta": False, "monotonicity_rule": True, "example_loss": False, "literature_cue": False}


@pytest.mark.parametrize("switch", sorted(SWITCH_TEXT))
def test_each_prompt_switch_changes_what_the_endpoint_is_told(tmp_path, switch):
    flipped = {**DEFAULTS, switch: not DEFAULTS[switch]}
    systems = {}
    for label, prompt in (("default", {}), ("flipped", {switch: flipped[switch]})):
        with ScriptedOpenAIServer(default=prompt_hash_reply) as server:
            run_llm_campaign(tmp_path / label, server.base_url, budget={"max_candidates": 1}, generation_size=1,
                             llm={"prompt": prompt})
        systems[label] = server.requests[0]["messages"][0]["content"]
    on_text, off_text = SWITCH_TEXT[switch]
    on, off = (systems["flipped"], systems["default"]) if flipped[switch] else (systems["default"], systems["flipped"])
    assert on_text in on and on_text not in off
    if off_text:
        assert off_text in off and off_text not in on
    for other in set(SWITCH_TEXT) - {switch}:  # every other sentence stays as it was
        text = SWITCH_TEXT[other][0] if DEFAULTS[other] else SWITCH_TEXT[other][1]
        if text:
            assert (text in systems["flipped"]) == (text in systems["default"])
    assert systems["default"] == render_system(PromptConfig(), BetaSweep((0.5,), "max"))


def test_default_system_prompt_is_unchanged_by_the_switches_existing():
    text = render_system()
    assert "Lower loss\n  must mean the policy prefers the chosen response more." in text
    assert "Example reply" not in text and "chosen by the evaluator" in text


# ---- JSON mode ---------------------------------------------------------------------------------
DPO = ("def dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
       "    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))\n")


def context(seed: int = 0) -> ProposalContext:
    return ProposalContext(generation=1, island=0, slot=seed, seed=seed,
                           parents=[ProgramSummary("base-00", "dpo", DPO, fitness=0.5)])


def proposer_for(server, json_mode: str) -> LLMProposer:
    model = ModelEndpoint(model="m", base_url=server.base_url, api_key_env="PREFDISCO_TEST_KEY")
    return LLMProposer(LLMConfig(models=[model], json_mode=json_mode, max_retries=0), sleep=lambda s: None)


@pytest.mark.parametrize("json_mode,sent", [("auto", True), ("on", True), ("off", False)])
def test_json_mode_is_asked_for_where_the_endpoint_supports_it(json_mode, sent):
    with ScriptedOpenAIServer(default=json_reply("x", DPO)) as server:
        proposer = proposer_for(server, json_mode)
        proposals = [proposer.propose(context(s))[0] for s in range(2)]
    assert all(p.code for p in proposals) and server.answers == [200, 200]
    assert all(("response_format" in r) == sent for r in server.requests)
    if sent:
        assert server.requests[0]["response_format"] == {"type": "json_object"}


def test_json_mode_auto_falls_back_once_when_the_endpoint_refuses_it():
    with ScriptedOpenAIServer(default=json_reply("x", DPO), json_mode=False) as server:
        proposer = proposer_for(server, "auto")
        proposals = [proposer.propose(context(s))[0] for s in range(3)]
    assert all(p.code for p in proposals)
    assert server.answers == [400, 200, 200, 200]  # refused once, then never asked with it again
    assert ["response_format" in r for r in server.requests] == [True, False, False, False]


def test_json_mode_on_against_an_endpoint_without_it_is_a_one_line_user_error():
    with ScriptedOpenAIServer(default=json_reply("x", DPO), json_mode=False) as server:
        with pytest.raises(UserError, match="json_mode: auto or off") as err:
            proposer_for(server, "on").propose(context())
    assert "\n" not in str(err.value)


def test_campaign_against_an_endpoint_without_json_mode_completes(tmp_path):
    with ScriptedOpenAIServer(default=prompt_hash_reply, json_mode=False) as server:
        result = run_llm_campaign(tmp_path, server.base_url)
    assert result.candidates == 8 and server.answers.count(400) == 1
