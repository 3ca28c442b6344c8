"""The static HTML campaign report: read a campaign directory, describe it, render one offline file.

Everything comes from what the campaign recorded (`campaign.db`, `config.resolved.yaml`,
`log.jsonl`); candidate code is only read and displayed, never executed. The loss shape of a
candidate comes from the sandbox probe's stored grid; DPO's is analytic. The page is rendered
from `prompts/report.html.j2` with plots as embedded SVG images (see `plots`).
"""

from __future__ import annotations

import collections
import difflib
import json
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from discovery.archive.campaign_dir import CampaignDir
from discovery.archive.candidate import Candidate, Status, find_dpo
from discovery.archive.database import ProgramDatabase, evaluations

SUITE_STAGES = ("screen", "fitness", "heldout")
TIMED_STAGES = ("probe", "screen", "fitness", "heldout")


# ---- loss-shape diagnostics ---------------------------------------------------------------------
@dataclass
class ShapeRegions:
    """Intervals of z = beta*margin where a loss misbehaves (each a (z_start, z_end) pair)."""

    wrong_sign: list[tuple[float, float]] = field(default_factory=list)  # dL/dz > 0: punishes a larger margin
    non_convex: list[tuple[float, float]] = field(default_factory=list)  # d2L/dz2 < 0
    non_finite: list[tuple[float, float]] = field(default_factory=list)  # loss or slope was nan/inf

    def describe(self) -> list[str]:
        span = lambda rs: ", ".join(f"[{a:+.2f}, {b:+.2f}]" for a, b in rs)  # noqa: E731
        out = []
        if self.wrong_sign:
            out.append(f"wrong sign (loss rises with the margin) on z in {span(self.wrong_sign)}")
        if self.non_convex:
            out.append(f"non-convex on z in {span(self.non_convex)}")
        if self.non_finite:
            out.append(f"non-finite on z in {span(self.non_finite)}")
        return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _merge(flags: list[bool], edges: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Contiguous runs of flagged cells -> (start, end) intervals."""
    out: list[tuple[float, float]] = []
    for flagged, (a, b) in zip(flags, edges):
        if not flagged:
            continue
        if out and abs(out[-1][1] - a) < 1e-12:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def shape_regions(z: list[float], loss: list[Any], dloss_dz: list[Any] | None = None, *,
                  rel_tol: float = 1e-3) -> ShapeRegions:
    """Find wrong-sign and non-convex stretches of a loss sampled on an increasing z grid.

    Tolerances are relative to the curve's own scale, so float noise on a flat stretch (a hinge
    past its margin) is not flagged. Without a stored slope, it is taken by finite differences.
    """
    n = len(z)
    if n < 2 or len(loss) != n:
        return ShapeRegions()
    if dloss_dz is None or len(dloss_dz) != n:
        dloss_dz = [None] * n
        for i in range(n):
            a, b = max(i - 1, 0), min(i + 1, n - 1)
            if _finite(loss[a]) and _finite(loss[b]):
                dloss_dz[i] = (loss[b] - loss[a]) / (z[b] - z[a])
    half = [(z[i] - (z[i] - z[i - 1]) / 2 if i else z[0], z[i] + (z[i + 1] - z[i]) / 2 if i < n - 1 else z[-1])
            for i in range(n)]
    bad = [not (_finite(loss[i]) and _finite(dloss_dz[i])) for i in range(n)]
    slopes = [abs(g) for g in dloss_dz if _finite(g)]
    g_tol = rel_tol * max(slopes, default=0.0) + 1e-12
    wrong = [not bad[i] and dloss_dz[i] > g_tol for i in range(n)]
    curv: list[float | None] = []
    for i in range(n - 1):
        if bad[i] or bad[i + 1]:
            curv.append(None)
        else:
            curv.append((dloss_dz[i + 1] - dloss_dz[i]) / (z[i + 1] - z[i]))
    c_scale = max((abs(c) for c in curv if c is not None), default=0.0)
    c_tol = max(rel_tol * c_scale, 1e-6 * max(1.0, max(slopes, default=0.0)))
    concave = [c is not None and c < -c_tol for c in curv]
    cells = [(z[i], z[i + 1]) for i in range(n - 1)]
    return ShapeRegions(wrong_sign=_merge(wrong, half), non_convex=_merge(concave, cells),
                        non_finite=_merge(bad, half))


# ---- reading the campaign -----------------------------------------------------------------------
def read_stage_results(db: ProgramDatabase) -> dict[str, dict[str, dict[str, Any]]]:
    """candidate id -> stage -> raw stored result, in one query (the database has a per-row getter only)."""
    out: dict[str, dict[str, dict[str, Any]]] = collections.defaultdict(dict)
    with db.engine.connect() as conn:
        for row in conn.execute(sa.select(evaluations.c.candidate_id, evaluations.c.stage, evaluations.c.result)):
            try:
                out[row.candidate_id][row.stage] = json.loads(row.result)
            except json.JSONDecodeError:
                out[row.candidate_id][row.stage] = {"message": "unreadable stored result"}
    return out


def active_wall_time(events: list[dict[str, Any]]) -> float:
    """Seconds the campaign ran: each (re)start up to its last logged event, summed over resumes."""
    total, start, last = 0.0, None, None
    for e in events:
        t = e.get("t")
        if not _finite(t):
            continue
        if e.get("event") == "campaign_start":
            if start is not None and last is not None:
                total += last - start
            start = t
        last = t
    if start is not None and last is not None:
        total += last - start
    return total


@dataclass
class DiffView:
    parent_id: str
    lines: list[tuple[str, str]]  # (css class, text)


@dataclass
class CandidatePage:
    """Everything one candidate's section shows."""

    row: Candidate
    stages: dict[str, dict[str, Any]]
    regions: ShapeRegions | None
    parents: list[str]
    children: list[str]
    ancestors: list[str]
    diffs: list[DiffView]
    errors: list[tuple[str, str]]
    plots: list[tuple[str, str]]  # (alt text, data URI)
    per_task: dict[str, float]
    code_html: str = ""


@dataclass
class CampaignReport:
    directory: str
    name: str
    config: dict[str, Any]
    summary: dict[str, Any]
    status_counts: dict[str, int]
    failure_counts: dict[str, int]
    leaderboard: list[Candidate]
    others: list[Candidate]
    pages: list[CandidatePage]
    dpo: Candidate | None
    fitness_plot: str
    stage_seconds: dict[str, float]
    generated_at: str
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)  # candidate id -> `prefdisco tune` result
    tuning_claim: dict[str, Any] | None = None  # the winner's claim against tuned DPO


def _runs(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "stage": s} for s in SUITE_STAGES for r in (stages.get(s) or {}).get("runs") or []]


def _errors(row: Candidate, stages: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    title = row.status + (f" — {row.failure_class}" if row.failure_class else "")
    static_errors = (stages.get("static") or {}).get("errors")
    if static_errors:  # the full list; the row's error repeats its first few
        out.append((f"{title} (static validation)", "\n".join(static_errors)))
    elif row.error:
        out.append((title, row.error))
    probe = stages.get("probe") or {}
    if probe and not probe.get("ok", True):
        out.append((f"sandbox probe ({probe.get('failure_class')})", probe.get("message") or ""))
    for s in SUITE_STAGES:
        res = stages.get(s) or {}
        if "runs" not in res and (res.get("message") or res.get("stdout_tail")):
            out.append((f"{s} suite", "\n".join(x for x in (res.get("message"), res.get("stdout_tail")) if x)))
        for run in res.get("runs") or []:
            msg = (run.get("extra") or {}).get("message")
            if run.get("flags") or msg:
                out.append((f"{s}: {run.get('task')} seed {run.get('seed')} beta {run.get('beta')}",
                            ", ".join(run.get("flags") or []) + (f" — {msg}" if msg else "")))
    seen, unique = set(), []
    for item in out:
        if item not in seen:
            seen.add(item)
            unique.append(item)
    return unique


def _diff(parent: Candidate, row: Candidate) -> DiffView:
    lines = []
    for line in difflib.unified_diff((parent.code or "").splitlines(), (row.code or "").splitlines(),
                                     fromfile=f"{parent.id} ({parent.name})", tofile=f"{row.id} ({row.name})",
                                     lineterm="", n=3):
        cls = ("meta" if line.startswith(("---", "+++")) else "hunk" if line.startswith("@@")
               else "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx")
        lines.append((cls, line))
    return DiffView(parent.id, lines)


def _ancestors(cid: str, by_id: dict[str, Candidate]) -> list[str]:
    seen: set[str] = set()
    todo = list(by_id[cid].parent_ids) if cid in by_id else []
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in by_id:
            continue
        seen.add(pid)
        todo.extend(by_id[pid].parent_ids)
    return sorted(seen, key=lambda i: by_id[i].seq)


def _highlighter() -> Any:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # pragma: no cover - pygments ships with rich
        return None
    lexer, formatter = PythonLexer(), HtmlFormatter(cssclass="code", linenos=False)
    return lambda code: highlight(code, lexer, formatter)


def code_css() -> str:
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:  # pragma: no cover
        return ""
    return HtmlFormatter(style="friendly").get_style_defs(".code")


def gather(campaign_dir: str | Path) -> CampaignReport:
    """Read every record of a campaign (safe while it is still running) and build the plots."""
    from discovery.config import config_to_dict
    from discovery.review import plots
    from discovery.review.verdict import campaign_verdict
    from discovery.tuning.results import load_tuned_results

    campaign = CampaignDir.open(campaign_dir)
    directory = campaign.path
    cfg = campaign.config()
    db = campaign.database()
    try:
        rows = db.all()
        stage_results = read_stage_results(db)
        tuned = load_tuned_results(db.url)  # {} until `prefdisco tune` has run
        tuning_claim = db.get_meta("tuning_claim") if tuned else None
        verdict = campaign_verdict(db, cfg.cascade.heldout_suite)
    finally:
        db.close()
    events = campaign.events()
    by_id = {r.id: r for r in rows}
    children: dict[str, list[str]] = collections.defaultdict(list)
    for r in rows:
        for pid in r.parent_ids:
            children[pid].append(r.id)
    dpo = find_dpo(rows)
    dpo_runs = _runs(stage_results.get(dpo.id, {})) if dpo else []

    proposals = [r for r in rows if not r.is_baseline]
    evaluated = sorted((r for r in rows if r.status is Status.EVALUATED and r.fitness is not None),
                       key=lambda r: (-r.fitness, r.seq))
    ranked = {r.id for r in evaluated}
    others = [r for r in rows if r.id not in ranked]
    status_counts = dict(collections.Counter(r.status for r in proposals).most_common())
    failure_counts = dict(collections.Counter(r.failure_class for r in proposals if r.failure_class).most_common())
    stage_seconds: dict[str, float] = collections.defaultdict(float)
    for r in rows:
        for stage, secs in (r.timings or {}).items():
            stage_seconds[stage] += float(secs or 0.0)
    budget = cfg.budget
    ends = [e for e in events if e.get("event") in ("campaign_end", "interrupted", "campaign_start")]
    last = ends[-1] if ends else {}
    stopped_by = (last.get("stopped_by") if last.get("event") == "campaign_end"
                  else "interrupted (resume with prefdisco run --resume)" if last.get("event") == "interrupted"
                  else "still running or killed" if last else "unknown (no log)")
    best = next((r for r in evaluated if not r.is_baseline), None)
    summary = {
        "proposed": len(proposals), "max_candidates": budget.max_candidates,
        "evaluated": sum(r.status is Status.EVALUATED for r in proposals),
        "tokens": sum(r.tokens for r in proposals),
        "prompt_tokens": sum(r.prompt_tokens for r in proposals),
        "completion_tokens": sum(r.completion_tokens for r in proposals),
        "max_tokens": budget.max_tokens,
        "cost_usd": sum(r.cost_usd for r in proposals), "max_cost_usd": budget.max_cost_usd,
        "wall_time_s": active_wall_time(events), "max_wall_time_s": budget.max_wall_time_s,
        "stopped_by": stopped_by, "generations": max((r.generation for r in rows), default=0),
        "best": best, "verdict": verdict.to_dict(),  # the headline: held-out, paired with (tuned) DPO
        "proposer": cfg.proposer.kind,
        "models": [m.model for m in cfg.proposer.llm.models],
        "suites": {s: getattr(cfg.cascade, f"{s}_suite") or "none" for s in SUITE_STAGES},
        "seed": cfg.seed,
    }

    highlight = _highlighter()
    pages = []
    for r in evaluated + others:
        stages = stage_results.get(r.id, {})
        shape = (stages.get("probe") or {}).get("shape")
        regions = None
        page_plots: list[tuple[str, str]] = []
        if shape and shape.get("z") and shape.get("loss"):
            regions = shape_regions(shape["z"], shape["loss"], shape.get("dloss_dz"))
            page_plots.append(("loss shape versus beta*margin, with DPO",
                               plots.shape_chart(shape["z"], shape["loss"], shape.get("dloss_dz"), regions, r.name)))
        runs = _runs(stages)
        if runs:
            page_plots.extend(plots.evaluation_charts(runs, dpo_runs if r is not dpo else [], r.name))
        per_task = ((r.metrics or {}).get("fitness") or {}).get("per_task") or {}
        pages.append(CandidatePage(
            row=r, stages=stages, regions=regions, parents=list(r.parent_ids), children=children.get(r.id, []),
            ancestors=_ancestors(r.id, by_id),
            diffs=[_diff(by_id[p], r) for p in r.parent_ids if p in by_id and by_id[p].code and r.code],
            errors=_errors(r, stages), plots=page_plots, per_task=per_task,
            code_html=highlight(r.code) if highlight and r.code else ""))
    return CampaignReport(
        directory=str(directory), name=str(cfg.name or directory.name), config=config_to_dict(cfg), summary=summary,
        status_counts=status_counts, failure_counts=failure_counts, leaderboard=evaluated, others=others,
        pages=pages, dpo=dpo, fitness_plot=plots.fitness_over_time(rows, dpo), stage_seconds=dict(stage_seconds),
        generated_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"), tuned=tuned, tuning_claim=tuning_claim)


# ---- rendering ----------------------------------------------------------------------------------
def _num(x: Any, digits: int = 4) -> str:
    return "—" if not _finite(x) else f"{x:.{digits}f}"


def _signed(x: Any, digits: int = 4) -> str:
    return "—" if not _finite(x) else f"{x:+.{digits}f}"


def render_html(report: CampaignReport) -> str:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.FunctionLoader(lambda n: resources.files("prompts").joinpath(n).read_text()),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=_num, signed=_signed, markup=Markup)
    return env.get_template("report.html.j2").render(r=report, code_css=Markup(code_css()))


@dataclass
class ReportSummary:
    path: str
    candidates: int
    evaluated: int
    images: int
    bytes: int
    wall_time_s: float
    verdict: dict[str, Any] = field(default_factory=dict)  # the headline: held-out verdict vs (tuned) DPO


def write_report(campaign_dir: str | Path, out: str | Path | None = None) -> ReportSummary:
    """Render the report to `out` (default DIR/report.html; a path not ending in .html is a folder: index.html)."""
    start = time.perf_counter()
    report = gather(campaign_dir)
    html = render_html(report)
    path = Path(out) if out is not None else Path(campaign_dir) / "report.html"
    if path.is_dir() or path.suffix.lower() not in (".html", ".htm"):
        path = path / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html)
    tmp.replace(path)
    images = 1 + sum(len(p.plots) for p in report.pages)
    return ReportSummary(path=str(path), candidates=len(report.pages), evaluated=len(report.leaderboard),
                         images=images, bytes=len(html.encode()), wall_time_s=time.perf_counter() - start,
                         verdict=report.summary["verdict"])
