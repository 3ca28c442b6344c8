"""One generation's proposals: contexts built in slot order, up to N requests in flight, budget caps
that are never passed, proposals recorded in slot order.

Why this stays deterministic with requests in flight: every slot's context depends only on the
archive up to the visible generation (never on a sibling slot of the same generation), every reply
is keyed by its slot, and proposals are recorded in slot order whatever order the replies arrive in.
Budgets: slot s is asked only after slot s-N has been recorded, and only if the recorded spend plus
the worst case (`BoundedProposer.worst_case`) of every request still in flight and of its own fits
under the caps; which slots are asked therefore never depends on timing, and no cap is exceeded.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from candidate_losses.source import code_hash
from discovery import crashpoints
from discovery.archive import map_elites
from discovery.archive.candidate import ALL_ISLANDS, REPAIRABLE, Candidate, Origin, Status
from discovery.archive.database import ProgramDatabase, candidate_id, sequence_number
from discovery.archive.log import CampaignLog
from discovery.config import CampaignConfig
from discovery.proposers import Proposal, Proposer, Spend
from discovery.proposers.prompting import BetaSweep, ChatTurn, Outcome, ProgramSummary, ProposalContext, RepairContext


def derive_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def summary_of(c: Candidate) -> ProgramSummary:
    """Archive candidate -> what a proposer may see. Held-out columns are deliberately not copied."""
    fitness_metrics = (c.metrics or {}).get("fitness") or {}
    return ProgramSummary(
        id=c.id, name=c.name, code=c.code or "", fitness=c.fitness,
        fitness_se=c.fitness_se, screen_fitness=c.screen_fitness,
        metrics={k: v for k, v in (fitness_metrics.get("per_task") or {}).items() if v is not None},
        behaviour=c.behaviour or "", generation=c.generation, proposer=c.proposer,
        thought=(c.thought or "")[:400],
    )


def outcome_of(c: Candidate, original: Candidate | None = None) -> Outcome:
    """What a conversation reports about candidate `c` (for a duplicate: the earlier program's fitness)."""
    out = Outcome(id=c.id, name=c.name, status=str(c.status), fitness=c.fitness, fitness_se=c.fitness_se,
                  screen_fitness=c.screen_fitness, failure_class=c.failure_class,
                  error=" ".join((c.error or "").split())[:600])
    if c.status is Status.DUPLICATE and original is not None:
        out.duplicate_of, out.fitness, out.fitness_se = original.name, original.fitness, original.fitness_se
    return out


def spend_of(rows: list[Candidate]) -> Spend:
    return Spend(tokens=sum(r.tokens for r in rows), cost_usd=sum(r.cost_usd for r in rows))


@dataclass
class SlotAsk:
    """One slot to ask: a proposal from an island's parents (or chat), or a repair of a failure."""

    slot: int
    island: int
    origin: Origin
    context: ProposalContext | RepairContext


def _in_thread(fn: Callable[[], Any]) -> cf.Future:
    """Run `fn` on a daemon thread (an interrupted campaign never waits for an LLM reply to exit)."""
    future: cf.Future = cf.Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="llm-request").start()
    return future


class GenerationProposer:
    """Asks the proposer for each slot of a generation and records the answers in the archive."""

    def __init__(self, config: CampaignConfig, db: ProgramDatabase, log: CampaignLog, proposer: Proposer,
                 stop: threading.Event, exhausted: Callable[[], str | None], sweep: BetaSweep | None = None):
        self.config, self.db, self.log, self.proposer = config, db, log, proposer
        self.stop, self.exhausted, self.sweep = stop, exhausted, sweep
        llm = config.proposer.llm
        self.is_llm = config.proposer.kind == "llm"
        self.conversation = self.is_llm and llm.mode == "conversation"
        self.in_flight = llm.concurrency if self.is_llm else 1

    def run(self, g: int, slots: int, visible: int) -> str | None:
        """Record proposals for every slot of generation g (slots recorded before are kept); returns
        why it stopped early (a budget, or "stopped"), or None when every slot was asked."""
        existing = {r.slot for r in self.db.all(generation=g)}
        repairs, dpo = self._repair_targets(g, visible), self.db.dpo()
        asks = [self._slot(g, slot, visible, repairs, dpo) for slot in range(slots) if slot not in existing]
        spent = spend_of([r for r in self.db.all() if not r.is_baseline])
        pending: collections.deque[tuple[SlotAsk, cf.Future, Spend]] = collections.deque()
        reason = None
        try:
            for ask in asks:
                while len(pending) >= self.in_flight:  # slot s waits until slot s-N is recorded
                    spent = self._record(g, *pending.popleft()[:2], spent)
                if ask is None:
                    continue
                reason = "stopped" if self.stop.is_set() else self.exhausted()
                worst = self._worst_case(ask.context)
                reserved = Spend(sum(w.tokens for *_, w in pending) + worst.tokens,
                                 sum(w.cost_usd for *_, w in pending) + worst.cost_usd)
                reason = reason or self._over_cap(spent, reserved)
                if reason:
                    break
                pending.append((ask, self._submit(ask), worst))
            while pending:
                spent = self._record(g, *pending.popleft()[:2], spent)
        finally:
            for _, future, _ in pending:
                future.cancel()
        return reason

    # ---- building the slots -------------------------------------------------------------------
    def _slot(self, g: int, slot: int, visible: int, repairs: list[Candidate], dpo: Candidate | None) -> SlotAsk | None:
        cfg = self.config
        seed = derive_seed(cfg.seed, g, slot)
        island = slot % cfg.database.islands
        if slot < len(repairs):
            target = repairs[slot]
            context = RepairContext(generation=g, seed=seed, failed=summary_of(target), slot=slot, sweep=self.sweep,
                                    failure_class=target.failure_class or "", message=target.error or "")
            return SlotAsk(slot, target.island if target.island != ALL_ISLANDS else island, Origin.REPAIR, context)
        common = dict(generation=g, island=island, slot=slot, seed=seed, dpo_fitness=dpo.fitness if dpo else None,
                      sweep=self.sweep, lag=cfg.pipeline_lag)
        if self.conversation:
            baselines = [summary_of(r) for r in self.db.all(generation=0) if r.fitness is not None]
            context = ProposalContext(parents=baselines, thread=self._thread(g, island),
                                      chats=min(cfg.database.islands, cfg.generation_size), **common)
            return SlotAsk(slot, island, Origin.PROPOSAL, context) if baselines else None
        rng = random.Random(seed)
        if cfg.database.kind == "map_elites":
            parents = map_elites.select_parents(self.db, visible, rng, cfg.database.pull_edges,
                                                cfg.database.push_edges, k=2)
        else:
            parents = self.db.select_parents(island, visible, g, rng, k=2, lam=cfg.database.selection_lambda)
        if not parents:
            return None
        chosen = {p.id for p in parents}
        members = sorted(self.db.island_members(island, visible),
                         key=lambda r: (-(r.fitness if r.fitness is not None else -math.inf), r.seq))
        inspirations = [summary_of(r) for r in members if r.id not in chosen][: cfg.proposer.inspirations]
        context = ProposalContext(parents=[summary_of(p) for p in parents], inspirations=inspirations,
                                  samples=cfg.proposer.llm.samples if self.is_llm else 1, **common)
        return SlotAsk(slot, island, Origin.PROPOSAL, context)

    def _repair_targets(self, g: int, visible: int) -> list[Candidate]:
        if self.conversation or not self.config.proposer.llm.repair or not hasattr(self.proposer, "repair"):
            return []  # a conversation feeds every error back in the chat instead
        repaired = {pid for r in self.db.all(max_generation=g - 1) if r.origin is Origin.REPAIR for pid in r.parent_ids}
        failed = [r for r in self.db.all(max_generation=visible, status=Status.FAILED)
                  if r.origin is Origin.PROPOSAL and r.failure_class in REPAIRABLE and r.id not in repaired
                  and r.generation >= 1]
        return failed[: self.config.generation_size // 2]

    def _thread(self, g: int, island: int) -> list[ChatTurn]:
        """The island's chat so far: each earlier reply, then the results the next user turn reported
        (those whose generation became visible between that turn and the one after it)."""
        lag = self.config.pipeline_lag
        rows = [r for r in self.db.all(max_generation=g - 1)
                if r.origin is Origin.PROPOSAL and r.island == island and r.generation >= 1]
        texts = self.db.replies([r.id for r in rows])
        asked = [r for r in rows if texts.get(r.id)]  # a request that failed left no turn
        turn_generations = [r.generation for r in asked] + [g]
        turns = []
        for j, row in enumerate(asked):
            lo, hi = (max(0, t - 1 - lag) for t in turn_generations[j:j + 2])
            outcomes = [outcome_of(c, self.db.get(c.duplicate_of) if c.duplicate_of else None)
                        for c in asked if lo < c.generation <= hi]
            turns.append(ChatTurn(id=row.id, reply=texts[row.id], outcomes=outcomes))
        return turns

    # ---- asking and recording -----------------------------------------------------------------
    def _worst_case(self, context: ProposalContext | RepairContext) -> Spend:
        bound = getattr(self.proposer, "worst_case", None)
        return bound(context) if bound is not None else Spend()

    def _over_cap(self, spent: Spend, reserved: Spend) -> str | None:
        b = self.config.budget
        if b.max_tokens is not None and (spent.tokens >= b.max_tokens or spent.tokens + reserved.tokens > b.max_tokens):
            return "budget: tokens"
        if b.max_cost_usd is not None and (spent.cost_usd >= b.max_cost_usd
                                           or spent.cost_usd + reserved.cost_usd > b.max_cost_usd):
            return "budget: cost"
        return None

    def _submit(self, ask: SlotAsk) -> cf.Future:
        """Ask for one slot: on a request thread when several may be in flight, else right here."""
        if self.in_flight > 1:
            return _in_thread(lambda: self._ask(ask))
        done: cf.Future = cf.Future()
        done.set_result(self._ask(ask))
        return done

    def _ask(self, ask: SlotAsk) -> list[Proposal]:
        if isinstance(ask.context, RepairContext):
            return self.proposer.repair(ask.context)  # type: ignore[attr-defined]
        return self.proposer.propose(ask.context)

    def _record(self, g: int, ask: SlotAsk, future: cf.Future, spent: Spend) -> Spend:
        proposals = future.result()
        crashpoints.maybe_crash("proposal")
        for k, proposal in enumerate(proposals):
            self._record_proposal(g, ask.slot, k, ask.island, ask.origin, proposal)
        return Spend(spent.tokens + sum(p.prompt_tokens + p.completion_tokens for p in proposals),
                     spent.cost_usd + sum(p.cost_usd for p in proposals))

    def _record_proposal(self, g: int, slot: int, k: int, island: int, origin: Origin, p: Proposal) -> None:
        cid = candidate_id(g, slot, k, origin=origin)
        seq = sequence_number(g, slot, k)
        h = code_hash(p.code) if p.code else None
        dup = self.db.first_with("code_hash", h, before_seq=seq) if h else None
        status, error = Status.PENDING, p.error
        if dup is not None:
            status, error = Status.DUPLICATE, f"same normalised code as {dup.id}"
        inserted = self.db.add_candidate(Candidate(
            id=cid, seq=seq, generation=g, slot=slot, island=island, origin=origin, name=p.name, code=p.code,
            code_hash=h, parent_ids=p.parent_ids, proposer=p.proposer, thought=p.thought,
            prompt_tokens=p.prompt_tokens, completion_tokens=p.completion_tokens, cost_usd=p.cost_usd,
            status=status, error=error, duplicate_of=dup.id if dup else None), reply=p.reply)
        if inserted:
            self.log.event("proposed", id=cid, name=p.name, proposer=p.proposer, parents=p.parent_ids,
                           status=status, tokens=p.prompt_tokens + p.completion_tokens)


