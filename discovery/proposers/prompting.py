"""Typed prompt contexts and their rendering through the jinja2 templates in `prompts/`.

The contexts are the only channel from the database to a proposer. `ProgramSummary` and `Outcome`
have no field for held-out scores on purpose: the held-out suite measures what the search never
optimised, so it must never leak into a prompt (tests/discovery/test_prompting.py checks this).
What the system prompt says besides the contract (beta sweep, monotonicity rule, example, literature
cue) is switched by `PromptConfig`, so the effect of each sentence can be measured.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2

from discovery.config import PromptConfig

CONTRACT_SIGNATURE = (
    "def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
    "reference_rejected_logps, beta):"
)


@dataclass
class ProgramSummary:
    """What a proposer may know about one archive program (never its held-out score)."""

    id: str
    name: str
    code: str
    fitness: float | None = None
    fitness_se: float | None = None
    screen_fitness: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # per-task breakdown, search suites only
    behaviour: str = ""  # one line from the sandbox probe (shape of the loss in z)
    generation: int = 0
    proposer: str = ""
    thought: str = ""


@dataclass(frozen=True)
class BetaSweep:
    """The fitness suite's beta values and how its score combines them ("max" or "mean")."""

    betas: tuple[float, ...]
    aggregate: str


@dataclass
class Outcome:
    """What the loop learnt about one earlier candidate of a chat: its fitness, or why it has none."""

    id: str
    name: str
    status: str  # evaluated | failed | gated | duplicate | pending
    fitness: float | None = None
    fitness_se: float | None = None
    screen_fitness: float | None = None
    failure_class: str | None = None
    error: str = ""
    duplicate_of: str = ""  # for duplicates: the earlier program's name (its fitness is in `fitness`)


@dataclass
class ChatTurn:
    """One earlier exchange of an island's chat: the model's reply (candidate `id`) and the results
    the following user turn reported (those that became known by then, not necessarily this reply's)."""

    id: str
    reply: str
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass
class ProposalContext:
    """Everything needed to propose children for one slot of one generation.

    In conversation mode `parents` are the baselines shown in the chat's first turn and `thread`
    holds the island's earlier turns (oldest first); in islands mode `thread` is empty.
    """

    generation: int
    island: int
    slot: int
    seed: int
    parents: list[ProgramSummary]
    inspirations: list[ProgramSummary] = field(default_factory=list)
    dpo_fitness: float | None = None
    samples: int = 1
    thread: list[ChatTurn] = field(default_factory=list)
    sweep: BetaSweep | None = None
    lag: int = 0  # generations by which evaluation trails the proposals (results arrive that much later)
    chats: int = 1  # conversation mode: how many island chats run side by side (this one is `island`)


@dataclass
class RepairContext:
    """A candidate that failed validation or the probe, with its classified error."""

    generation: int
    seed: int
    failed: ProgramSummary
    failure_class: str
    message: str
    slot: int = 0
    sweep: BetaSweep | None = None


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(_load_template)
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["score"] = _format_score
    return env


def _load_template(name: str) -> str:
    return resources.files("prompts").joinpath(name).read_text()


def _format_score(value: Any, se: Any = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.4f}"
    if se is not None:
        text += f" ± {se:.4f}"
    return text


def render(template: str, **variables: Any) -> str:
    return _environment().get_template(template).render(**variables)


def render_system(options: PromptConfig | None = None, sweep: BetaSweep | None = None) -> str:
    return render("system.j2", signature=CONTRACT_SIGNATURE, options=options or PromptConfig(), sweep=sweep)


def render_propose(context: ProposalContext) -> str:
    return render("propose.j2", ctx=context, signature=CONTRACT_SIGNATURE)


def render_conversation_start(context: ProposalContext) -> str:
    """The first user turn of an island's chat: the baselines, their code and fitness."""
    return render("conversation_start.j2", ctx=context)


def render_conversation_next(outcomes: list[Outcome], lag: int) -> str:
    """A later user turn: the results that came in since the last one, then the next request."""
    return render("conversation_next.j2", outcomes=outcomes, lag=lag)


def render_repair(context: RepairContext) -> str:
    return render("repair.j2", ctx=context, signature=CONTRACT_SIGNATURE)
