"""Proposers turn the archive into new candidate programs: one module per proposer.

The module named by a campaign's ``proposer.kind`` (``mutation``, ``llm``) provides
``from_config(config: ProposerConfig, campaign_dir) -> Proposer``; ``base`` holds the interface,
``prompting`` the contexts a proposer is given (and their jinja2 rendering), ``conversation`` the
growing chat of conversation mode, ``reply`` reading an LLM's answer, ``chat`` the live endpoint and
``transcript`` recording / replaying it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from discovery.config import ProposerConfig
from discovery.proposers.base import BoundedProposer, Proposal, Proposer, RepairingProposer, Spend


def make_proposer(config: ProposerConfig, campaign_dir: str | Path | None = None) -> Proposer:
    """The proposer a campaign config asks for (mutation is the offline default); `campaign_dir`
    is where a recording LLM proposer writes its transcript."""
    return importlib.import_module(f"discovery.proposers.{config.kind}").from_config(config, campaign_dir)


__all__ = ["BoundedProposer", "Proposal", "Proposer", "RepairingProposer", "Spend", "make_proposer"]
