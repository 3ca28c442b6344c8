"""LLMProposer: candidate losses from any OpenAI-compatible chat endpoint via the `openai` client.

Two ways to prompt (`proposer.llm.mode`): "islands" (the default) asks each slot in a fresh chat
showing parents drawn from one island; "conversation" continues one growing chat per island in
which every earlier candidate's fitness or error was reported back (DiscoPOP's loop, see
`conversation`). How a prompt is answered is a `Chat` (`chat`): the live endpoint, a recording of it,
or a replay of a recording (`transcript`). Tokens and cost are accounted per proposal, and
`worst_case` bounds what a request can spend before it is sent, so budget caps hold with several
requests in flight. Several models form a weighted ensemble: each prompt goes to one model drawn
by weight with the slot's seed.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

from discovery.archive.candidate import Origin
from discovery.archive.database import candidate_id
from discovery.config import LLMConfig, ModelEndpoint, ProposerConfig
from discovery.errors import UserError
from discovery.proposers.base import Proposal, Spend
from discovery.proposers.chat import Chat, ChatRequest, Message, OpenAIChat
from discovery.proposers.conversation import conversation_messages, lineage
from discovery.proposers.prompting import ProposalContext, RepairContext, render_propose, render_repair, render_system
from discovery.proposers.reply import extract_reply
from discovery.proposers.transcript import TRANSCRIPT_FILE, RecordingChat, ReplayChat

# Chat-format tokens a message may add beyond its text (role markers, separators), and per request.
MESSAGE_OVERHEAD_TOKENS = 16
REQUEST_OVERHEAD_TOKENS = 16


def prompt_token_bound(messages: list[Message]) -> int:
    """An upper bound on a prompt's tokens without its tokenizer: byte-level BPE tokenizers never put
    less than one UTF-8 byte in a token, so bytes plus the chat-format overhead bound the count."""
    return REQUEST_OVERHEAD_TOKENS + sum(len(m["content"].encode()) + MESSAGE_OVERHEAD_TOKENS for m in messages)


class LLMProposer:
    name = "llm"

    def __init__(self, config: LLMConfig, *, chat: Chat | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not config.models:
            raise UserError("proposer.llm.models is empty; add at least one model")
        self.config = config
        self.chat = chat or OpenAIChat(config, sleep=sleep)

    # ---- public interface ---------------------------------------------------------------------
    def propose(self, context: ProposalContext) -> list[Proposal]:
        messages = self._propose_messages(context)
        parents = lineage(context) if self.config.mode == "conversation" else [p.id for p in context.parents]
        return self._ask(messages, context.seed, parents, self._samples(context), self.name,
                         keys=[candidate_id(context.generation, context.slot, k) for k in range(self._samples(context))])

    def repair(self, context: RepairContext) -> list[Proposal]:
        messages = self._repair_messages(context)
        return self._ask(messages, context.seed, [context.failed.id], 1, f"{self.name}-repair",
                         keys=[candidate_id(context.generation, context.slot, origin=Origin.REPAIR)])

    def worst_case(self, context: ProposalContext | RepairContext) -> Spend:
        """The most the requests for `context` can spend: every prompt token bounded from its bytes,
        every completion at max_tokens (the endpoint stops there)."""
        if isinstance(context, RepairContext):
            messages, samples = self._repair_messages(context), 1
        else:
            messages, samples = self._propose_messages(context), self._samples(context)
        _, model = self._pick_model(context.seed)
        prompt, completion = prompt_token_bound(messages), self.config.max_tokens
        cost = (prompt * model.input_cost_per_mtok + completion * model.output_cost_per_mtok) / 1e6
        return Spend(tokens=samples * (prompt + completion), cost_usd=samples * cost)

    # ---- internals ----------------------------------------------------------------------------
    def _samples(self, context: ProposalContext) -> int:
        return 1 if self.config.mode == "conversation" else max(1, context.samples)

    def _propose_messages(self, context: ProposalContext) -> list[Message]:
        if self.config.mode == "conversation":
            return conversation_messages(context, self.config.prompt, self.config.conversation_turns)
        return [{"role": "system", "content": render_system(self.config.prompt, context.sweep)},
                {"role": "user", "content": render_propose(context)}]

    def _repair_messages(self, context: RepairContext) -> list[Message]:
        return [{"role": "system", "content": render_system(self.config.prompt, context.sweep)},
                {"role": "user", "content": render_repair(context)}]

    def _pick_model(self, seed: int) -> tuple[int, ModelEndpoint]:
        models = self.config.models
        if len(models) == 1:
            return 0, models[0]
        index = random.Random(seed).choices(range(len(models)), weights=[m.weight for m in models])[0]
        return index, models[index]

    def _ask(self, messages: list[Message], seed: int, parent_ids: list[str], samples: int, proposer: str,
             keys: list[str]) -> list[Proposal]:
        index, model = self._pick_model(seed)
        proposals = []
        for k in range(samples):
            reply = self.chat.complete(ChatRequest(key=keys[k], model_index=index, messages=messages))
            p_tok, c_tok = reply.prompt_tokens, reply.completion_tokens
            cost = (p_tok * model.input_cost_per_mtok + c_tok * model.output_cost_per_mtok) / 1e6
            if reply.error:
                proposals.append(Proposal(thought="", name="llm_error", code=None, parent_ids=parent_ids,
                                          proposer=f"{proposer}:{model.model}", error=reply.error,
                                          prompt_tokens=p_tok, completion_tokens=c_tok, cost_usd=cost))
                continue
            extracted = extract_reply(reply.text)
            proposals.append(Proposal(
                thought=extracted.thought, name=extracted.name, code=extracted.code, parent_ids=parent_ids,
                proposer=f"{proposer}:{model.model}", prompt_tokens=p_tok, completion_tokens=c_tok,
                cost_usd=cost, error=extracted.problem, reply=reply.text,
            ))
        return proposals


def make_chat(config: LLMConfig, campaign_dir: str | Path | None) -> Chat:
    """The chat a campaign's config asks for: a replay, a recorded live endpoint, or the live endpoint."""
    if config.replay:
        return ReplayChat(config.replay)
    live = OpenAIChat(config)
    if config.record:
        if campaign_dir is None:
            raise UserError("proposer.llm.record needs a campaign directory to write the transcript to")
        return RecordingChat(live, Path(campaign_dir) / TRANSCRIPT_FILE, [m.model for m in config.models])
    return live


def from_config(config: ProposerConfig, campaign_dir: str | Path | None = None) -> LLMProposer:
    """``proposer.kind: llm`` in a campaign config."""
    return LLMProposer(config.llm, chat=make_chat(config.llm, campaign_dir))
