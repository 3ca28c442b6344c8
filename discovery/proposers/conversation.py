"""One growing chat per island, as in DiscoPOP's loop: the messages of a turn, bounded in length.

The chat is rebuilt from the archive for every request instead of living in memory, so a resumed
or replayed campaign asks exactly what the uninterrupted one asked. It reads

    system, user(the baselines and their fitness),
    assistant(reply 1), user(results known by now + "Please generate the next one."), ...

and each user turn reports the results that came in since the previous turn (with a pipeline lag
they belong to replies a few turns back), so earlier turns never change: the chat only grows.
Its length is bounded by keeping the system prompt, the first turn and the last `max_turns`
exchanges; older exchanges are dropped whole.
"""

from __future__ import annotations

from discovery.config import PromptConfig
from discovery.proposers.prompting import (
    ProposalContext,
    render_conversation_next,
    render_conversation_start,
    render_system,
)

Message = dict[str, str]


def conversation_messages(context: ProposalContext, options: PromptConfig, max_turns: int) -> list[Message]:
    """The chat for the next turn of `context.island`: system, first turn, last exchanges, request."""
    messages = [{"role": "system", "content": render_system(options, context.sweep)},
                {"role": "user", "content": render_conversation_start(context)}]
    for turn in context.thread[-max_turns:] if max_turns > 0 else []:
        messages.append({"role": "assistant", "content": turn.reply})
        messages.append({"role": "user", "content": render_conversation_next(turn.outcomes, context.lag)})
    return messages


def lineage(context: ProposalContext) -> list[str]:
    """A conversation reply's parent: the island's previous reply, or the baselines for the first turn."""
    return [context.thread[-1].id] if context.thread else [p.id for p in context.parents]
