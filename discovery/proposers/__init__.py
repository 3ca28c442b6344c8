"""Proposers turn the archive into new candidate programs: one module per proposer.

The module named by a campaign's ``proposer.kind`` (``mutation``, ``llm``) provides
``from_config(config: ProposerConfig) -> Proposer``; ``base`` holds the interface, ``prompting``
the contexts a proposer is given (and their jinja2 rendering), ``reply`` reading an LLM's answer.
"""

from __future__ import annotations

import importlib

from discovery.config import ProposerConfig
from discovery.proposers.base import Proposal, Proposer, RepairingProposer


def make_proposer(config: ProposerConfig) -> Proposer:
    """The proposer a campaign config asks for (mutation is the offline default)."""
    return importlib.import_module(f"discovery.proposers.{config.kind}").from_config(config)


__all__ = ["Proposal", "Proposer", "RepairingProposer", "make_proposer"]
