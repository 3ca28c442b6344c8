"""The proposer interface: a context (what the archive looks like) in, candidate programs out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from discovery.proposers.prompting import ProposalContext, RepairContext


@dataclass
class Proposal:
    """One candidate loss as a proposer produced it (before any evaluation)."""

    thought: str
    name: str
    code: str | None  # None: the reply could not be turned into code (recorded as a failure)
    parent_ids: list[str]
    proposer: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str = ""  # why `code` is None (e.g. malformed reply)
    reply: str = ""  # the LLM's reply as received (kept: a conversation shows it back to the model)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Spend:
    """Tokens and dollars, spent or (as a bound before a request is sent) at most to be spent."""

    tokens: int = 0
    cost_usd: float = 0.0


@runtime_checkable
class Proposer(Protocol):
    """Anything that turns a `ProposalContext` into proposals. Must not execute candidate code."""

    name: str

    def propose(self, context: ProposalContext) -> list[Proposal]: ...


@runtime_checkable
class BoundedProposer(Proposer, Protocol):
    """A proposer that spends tokens/money and can bound a context's spend before asking (budget caps)."""

    def worst_case(self, context: ProposalContext | RepairContext) -> Spend: ...


@runtime_checkable
class RepairingProposer(Proposer, Protocol):
    """A proposer that can also fix a failed candidate given its classified error (one retry)."""

    def repair(self, context: RepairContext) -> list[Proposal]: ...
