"""Proposers turn the archive into new candidate programs. One module per proposer."""

from __future__ import annotations

from discovery.config import ProposerConfig
from discovery.proposers.base import Proposal, Proposer, RepairingProposer


def make_proposer(config: ProposerConfig) -> Proposer:
    """The proposer a campaign config asks for (mutation is the offline default)."""
    if config.kind == "llm":
        from discovery.proposers.llm import LLMProposer

        return LLMProposer(config.llm)
    from discovery.proposers.mutation import MutationProposer

    return MutationProposer(config.mutation)


__all__ = ["Proposal", "Proposer", "RepairingProposer", "make_proposer"]
