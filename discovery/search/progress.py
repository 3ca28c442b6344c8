"""The live rich progress view of a running campaign (the event log is ``discovery.archive.log``)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from discovery.archive.candidate import Candidate, Status, find_dpo


class ProgressView:
    """Live table: best vs DPO, throughput, failures by class, tokens/cost. Quiet when not a TTY."""

    def __init__(self, console: Console | None = None, enabled: bool | None = None):
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self._live: Live | None = None
        self.started = time.time()

    def __enter__(self) -> "ProgressView":
        if self.enabled:
            self._live = Live(Text("starting…"), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self, rows: list[Candidate], *, generation: int, note: str = "") -> None:
        if self._live is None:
            return
        self._live.update(render_status(rows, generation=generation, elapsed_s=time.time() - self.started,
                                        note=note))


def render_status(rows: list[Candidate], *, generation: int, elapsed_s: float, note: str = "") -> Group:
    proposals = [r for r in rows if not r.is_baseline]
    done = [r for r in proposals if r.status is not Status.PENDING]
    dpo = find_dpo(rows)
    best = max((r for r in proposals if r.fitness is not None), key=lambda r: r.fitness, default=None)
    failures: dict[str, int] = {}
    for r in proposals:
        if r.status is Status.FAILED:
            failures[r.failure_class or "?"] = failures.get(r.failure_class or "?", 0) + 1
    table = Table(title=f"prefdisco campaign — generation {generation}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    fmt = lambda r: "—" if r is None or r.fitness is None else f"{r.fitness:.4f} ± {r.fitness_se or 0:.4f}"  # noqa: E731
    table.add_row("DPO fitness", fmt(dpo))
    table.add_row("best discovered", (f"{best.name} ({best.id}) " if best else "") + fmt(best))
    minutes = max(elapsed_s / 60.0, 1e-9)
    table.add_row("candidates", f"{len(done)}/{len(proposals)} finished, {len(done) / minutes:.1f}/min")
    status_counts: dict[str, int] = {}
    for r in proposals:
        status_counts[r.status] = status_counts.get(r.status, 0) + 1
    table.add_row("status", ", ".join(f"{k} {v}" for k, v in sorted(status_counts.items())) or "—")
    table.add_row("failures", ", ".join(f"{k} {v}" for k, v in sorted(failures.items())) or "none")
    tokens = sum(r.tokens for r in proposals)
    cost = sum(r.cost_usd for r in proposals)
    table.add_row("LLM tokens / cost", f"{tokens} / ${cost:.4f}")
    parts: list[Any] = [table]
    if note:
        parts.append(Text(note, style="dim"))
    return Group(*parts)
