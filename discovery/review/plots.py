"""Tiny SVG line/scatter charts for the HTML report.

Why not matplotlib: building a figure's tick artists costs ~0.1-0.5 s per axes, so a report with
two or three charts per candidate took minutes on a busy machine. These charts are plain SVG
strings (milliseconds each, a few kB, crisp at any zoom) embedded as ``data:`` URIs in ``<img>``
tags, so the page stays one offline file and the browser treats every plot as an image.
"""

from __future__ import annotations

import base64
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence
from xml.sax.saxutils import escape

PALETTE = {"candidate": "#1f5fbf", "dpo": "#555555", "bad": "#d62728", "warn": "#ff9f1c",
           "good": "#2ca02c", "grid": "#e6e6e6", "axis": "#444444"}
SERIES_COLOURS = ("#1f5fbf", "#e07b00", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2")

Number = float | int | None
_CLIP_IDS = itertools.count()


def _finite(v: Number) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + 1e-9 * step:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def fmt_tick(v: float, ticks: Sequence[float]) -> str:
    """As few decimals as the tick step needs (0.25 -> 2, 5 -> 0); scientific for extremes."""
    span = max((abs(t) for t in ticks), default=0.0)
    if span >= 1e5 or 0 < span < 1e-3:
        return f"{v:.2g}"
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    return f"{v:.{decimals}f}"


@dataclass
class _Mark:
    kind: str  # line | points | hline | hband | vspan
    xs: list[Number] = field(default_factory=list)
    ys: list[Number] = field(default_factory=list)
    colour: str = PALETTE["candidate"]
    label: str | None = None
    dash: str | None = None
    width: float = 1.8
    opacity: float = 1.0
    shape: str = "circle"
    yerr: list[Number] | None = None


class Chart:
    """One titled panel: add marks, then `svg()`. Coordinates are data units; None is a gap."""

    def __init__(self, title: str, xlabel: str = "", ylabel: str = "", *, width: int = 440, height: int = 280,
                 xlim: tuple[float, float] | None = None, ylim: tuple[float, float] | None = None):
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.width, self.height = width, height
        self.xlim, self.ylim = xlim, ylim
        self.marks: list[_Mark] = []
        self.clip_id = f"plot{next(_CLIP_IDS)}"  # unique, so panels combined in one SVG clip correctly

    # ---- marks ---------------------------------------------------------------------------------
    def line(self, xs: Sequence[Number], ys: Sequence[Number], *, colour: str = PALETTE["candidate"],
             label: str | None = None, dash: str | None = None, width: float = 1.8, opacity: float = 1.0) -> None:
        self.marks.append(_Mark("line", list(xs), list(ys), colour, label, dash, width, opacity))

    def points(self, xs: Sequence[Number], ys: Sequence[Number], *, colour: str = PALETTE["candidate"],
               label: str | None = None, shape: str = "circle", yerr: Sequence[Number] | None = None,
               opacity: float = 0.9) -> None:
        self.marks.append(_Mark("points", list(xs), list(ys), colour, label, opacity=opacity, shape=shape,
                                yerr=list(yerr) if yerr is not None else None))

    def hline(self, y: float, *, colour: str = PALETTE["dpo"], label: str | None = None, dash: str | None = "6 4") -> None:
        self.marks.append(_Mark("hline", [], [y], colour, label, dash, 1.5))

    def hband(self, y0: float, y1: float, *, colour: str = PALETTE["dpo"], opacity: float = 0.15) -> None:
        self.marks.append(_Mark("hband", [], [y0, y1], colour, None, opacity=opacity))

    def vspan(self, x0: float, x1: float, *, colour: str = PALETTE["bad"], opacity: float = 0.15,
              label: str | None = None) -> None:
        self.marks.append(_Mark("vspan", [x0, x1], [], colour, label, opacity=opacity))

    # ---- layout --------------------------------------------------------------------------------
    def _limits(self) -> tuple[float, float, float, float]:
        xs: list[float] = []
        ys: list[float] = []
        for m in self.marks:
            if m.kind in ("line", "points"):
                for i, (x, y) in enumerate(zip(m.xs, m.ys)):
                    if _finite(x) and _finite(y):
                        xs.append(float(x))  # type: ignore[arg-type]
                        err = m.yerr[i] if m.yerr and _finite(m.yerr[i]) else 0.0
                        ys.extend((float(y) - err, float(y) + err))  # type: ignore[arg-type, operator]
            elif m.kind in ("hline", "hband"):
                ys.extend(float(v) for v in m.ys if _finite(v))  # type: ignore[arg-type]
            elif m.kind == "vspan":
                xs.extend(float(v) for v in m.xs if _finite(v))  # type: ignore[arg-type]
        x0, x1 = self.xlim or ((min(xs), max(xs)) if xs else (0.0, 1.0))
        if not self.xlim and x1 - x0 > 1e-12:  # keep edge markers inside the frame
            x0, x1 = x0 - 0.04 * (x1 - x0), x1 + 0.04 * (x1 - x0)
        y0, y1 = self.ylim or ((min(ys), max(ys)) if ys else (0.0, 1.0))
        if x1 - x0 < 1e-12:
            x0, x1 = x0 - 0.5, x1 + 0.5
        if y1 - y0 < 1e-12:
            pad = max(abs(y0) * 0.1, 0.5)
            y0, y1 = y0 - pad, y1 + pad
        elif not self.ylim:
            pad = 0.06 * (y1 - y0)
            y0, y1 = y0 - pad, y1 + pad
        return x0, x1, y0, y1

    def svg(self) -> str:
        W, H = self.width, self.height
        labelled = [m for m in self.marks if m.label]
        left, right, bottom = 58, 14, 40
        pw = W - left - right
        longest = max((len(m.label or "") for m in labelled), default=0)
        cols = max(1, min(3, int(pw // (30 + 6.3 * longest)))) if labelled else 1
        legend_rows = math.ceil(len(labelled) / cols) if labelled else 0
        top = 28 + 16 * legend_rows
        ph = H - top - bottom
        x0, x1, y0, y1 = self._limits()
        sx = lambda x: left + (float(x) - x0) / (x1 - x0) * pw  # noqa: E731
        sy = lambda y: top + (1.0 - (float(y) - y0) / (y1 - y0)) * ph  # noqa: E731
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
               f'font-family="Helvetica, Arial, sans-serif" font-size="11">',
               f'<rect width="{W}" height="{H}" fill="white"/>',
               f'<defs><clipPath id="{self.clip_id}"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath></defs>',
               f'<text x="{W / 2:.1f}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
               f'{escape(self.title)}</text>']
        xt, yt = nice_ticks(x0, x1), nice_ticks(y0, y1)
        for t in xt:
            X = sx(t)
            out.append(f'<line x1="{X:.1f}" y1="{top}" x2="{X:.1f}" y2="{top + ph}" stroke="{PALETTE["grid"]}"/>')
            out.append(f'<text x="{X:.1f}" y="{top + ph + 14}" text-anchor="middle">{fmt_tick(t, xt)}</text>')
        for t in yt:
            Y = sy(t)
            out.append(f'<line x1="{left}" y1="{Y:.1f}" x2="{left + pw}" y2="{Y:.1f}" stroke="{PALETTE["grid"]}"/>')
            out.append(f'<text x="{left - 5}" y="{Y + 4:.1f}" text-anchor="end">{fmt_tick(t, yt)}</text>')
        if y0 < 0 < y1:
            out.append(f'<line x1="{left}" y1="{sy(0):.1f}" x2="{left + pw}" y2="{sy(0):.1f}" stroke="#aaaaaa"/>')
        out.append(f'<g clip-path="url(#{self.clip_id})">')
        for m in self.marks:
            out.extend(self._draw(m, sx, sy, left, top, pw, ph))
        out.append("</g>")
        out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="{PALETTE["axis"]}"/>')
        if self.xlabel:
            out.append(f'<text x="{left + pw / 2:.1f}" y="{H - 6}" text-anchor="middle">{escape(self.xlabel)}</text>')
        if self.ylabel:
            out.append(f'<text transform="translate(12 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
                       f'{escape(self.ylabel)}</text>')
        for i, m in enumerate(labelled):
            lx, ly = left + (i % cols) * (pw / cols), 26 + 16 * (i // cols)
            out.append(self._legend_key(m, lx, ly))
            out.append(f'<text x="{lx + 22:.1f}" y="{ly + 4}">{escape(m.label or "")}</text>')
        out.append("</svg>")
        return "".join(out)

    def _draw(self, m: _Mark, sx, sy, left: float, top: float, pw: float, ph: float) -> list[str]:  # type: ignore[no-untyped-def]
        dash = f' stroke-dasharray="{m.dash}"' if m.dash else ""
        if m.kind == "vspan":
            a, b = sorted((sx(m.xs[0]), sx(m.xs[1])))
            return [f'<rect x="{a:.1f}" y="{top}" width="{max(b - a, 1.0):.1f}" height="{ph}" '
                    f'fill="{m.colour}" fill-opacity="{m.opacity}"/>']
        if m.kind == "hband":
            a, b = sorted((sy(m.ys[0]), sy(m.ys[1])))
            return [f'<rect x="{left}" y="{a:.1f}" width="{pw}" height="{max(b - a, 1.0):.1f}" '
                    f'fill="{m.colour}" fill-opacity="{m.opacity}"/>']
        if m.kind == "hline":
            Y = sy(m.ys[0])
            return [f'<line x1="{left}" y1="{Y:.1f}" x2="{left + pw}" y2="{Y:.1f}" stroke="{m.colour}" '
                    f'stroke-width="{m.width}"{dash}/>']
        if m.kind == "line":
            paths, cur = [], []
            for x, y in zip(m.xs, m.ys):
                if _finite(x) and _finite(y):
                    cur.append(f"{sx(x):.1f},{sy(y):.1f}")
                elif cur:
                    paths.append(cur)
                    cur = []
            if cur:
                paths.append(cur)
            return [f'<polyline points="{" ".join(p)}" fill="none" stroke="{m.colour}" stroke-width="{m.width}" '
                    f'stroke-opacity="{m.opacity}" stroke-linejoin="round"{dash}/>' for p in paths]
        out = []
        for i, (x, y) in enumerate(zip(m.xs, m.ys)):
            if not (_finite(x) and _finite(y)):
                continue
            X, Y = sx(x), sy(y)
            if m.yerr and _finite(m.yerr[i]) and m.yerr[i]:
                e = float(m.yerr[i])  # type: ignore[arg-type]
                out.append(f'<line x1="{X:.1f}" y1="{sy(y + e):.1f}" x2="{X:.1f}" y2="{sy(y - e):.1f}" '
                           f'stroke="{m.colour}" stroke-opacity="{m.opacity}"/>')
            out.append(_marker(m.shape, X, Y, m.colour, m.opacity))
        return out

    @staticmethod
    def _legend_key(m: _Mark, x: float, y: float) -> str:
        if m.kind == "points":
            return _marker(m.shape, x + 9, y, m.colour, 1.0)
        if m.kind == "vspan":
            return f'<rect x="{x:.1f}" y="{y - 5}" width="18" height="10" fill="{m.colour}" fill-opacity="{max(m.opacity, 0.3)}"/>'
        dash = f' stroke-dasharray="{m.dash}"' if m.dash else ""
        return f'<line x1="{x:.1f}" y1="{y}" x2="{x + 18:.1f}" y2="{y}" stroke="{m.colour}" stroke-width="2"{dash}/>'

    def data_uri(self) -> str:
        return svg_data_uri(self.svg())


def _marker(shape: str, X: float, Y: float, colour: str, opacity: float) -> str:
    if shape == "cross":
        return (f'<path d="M{X - 4:.1f},{Y - 4:.1f}L{X + 4:.1f},{Y + 4:.1f}M{X - 4:.1f},{Y + 4:.1f}L{X + 4:.1f},{Y - 4:.1f}" '
                f'stroke="{colour}" stroke-width="2" stroke-opacity="{opacity}"/>')
    if shape == "square":
        return (f'<rect x="{X - 3.5:.1f}" y="{Y - 3.5:.1f}" width="7" height="7" fill="{colour}" '
                f'fill-opacity="{opacity}"/>')
    if shape == "diamond":
        return (f'<path d="M{X:.1f},{Y - 5:.1f}L{X + 5:.1f},{Y:.1f}L{X:.1f},{Y + 5:.1f}L{X - 5:.1f},{Y:.1f}Z" '
                f'fill="{colour}" fill-opacity="{opacity}"/>')
    return f'<circle cx="{X:.1f}" cy="{Y:.1f}" r="3.5" fill="{colour}" fill-opacity="{opacity}"/>'


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def side_by_side(charts: Sequence[Chart]) -> str:
    """Several panels as one SVG image (one <img>, one row)."""
    width, height = sum(c.width for c in charts), max(c.height for c in charts)
    parts, x = [], 0
    for c in charts:
        parts.append(c.svg().replace("<svg ", f'<svg x="{x}" y="0" ', 1))
        x += c.width
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg>')


# ---- the report's charts ------------------------------------------------------------------------
def dpo_shape(z: list[float]) -> tuple[list[float], list[float]]:
    """DPO's loss -log sigmoid(z) and its slope -sigmoid(-z), computed stably."""
    loss = [max(-v, 0.0) + math.log1p(math.exp(-abs(v))) for v in z]
    slope = [-math.exp(-v) / (1.0 + math.exp(-v)) if v >= 0 else -1.0 / (1.0 + math.exp(v)) for v in z]
    return loss, slope


def shape_chart(z: list[float], loss: list[Number], dloss_dz: list[Number] | None, regions, name: str) -> str:  # type: ignore[no-untyped-def]
    """Loss and dL/dz versus z = beta*margin, DPO dashed, misbehaving stretches shaded."""
    dpo_loss, dpo_slope = dpo_shape(list(z))
    panels = []
    for title, ys, ref, ylabel in (("loss vs z = β·margin", loss, dpo_loss, "loss"),
                                   ("slope dL/dz", dloss_dz, dpo_slope, "dL/dz")):
        chart = Chart(title, "z = β · (log-ratio margin)", ylabel, width=420, height=270, xlim=(z[0], z[-1]))
        if regions is not None:
            for i, (a, b) in enumerate(regions.wrong_sign):
                chart.vspan(a, b, colour=PALETTE["bad"], opacity=0.18, label="wrong sign" if i == 0 else None)
            for i, (a, b) in enumerate(regions.non_convex):
                chart.vspan(a, b, colour=PALETTE["warn"], opacity=0.22, label="non-convex" if i == 0 else None)
        chart.line(z, ref, colour=PALETTE["dpo"], dash="6 4", label="DPO")
        if ys is not None:
            chart.line(z, ys, colour=PALETTE["candidate"], width=2.2, label=name[:28])
        panels.append(chart)
    return svg_data_uri(side_by_side(panels))


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if _finite(x)]
    return sum(xs) / len(xs) if xs else None


def _frontier(runs: list[dict]) -> list[tuple[float, float, float]]:  # type: ignore[type-arg]
    """(beta, mean KL, mean gold reward) per beta, in increasing-KL order."""
    by_beta: dict[float, list[dict]] = {}  # type: ignore[type-arg]
    for r in runs:
        by_beta.setdefault(float(r.get("beta") or 0.0), []).append(r)
    pts = [(b, _mean([r.get("kl") for r in rs]), _mean([r.get("gold_reward") for r in rs])) for b, rs in by_beta.items()]
    return sorted(((b, k, g) for b, k, g in pts if k is not None and g is not None), key=lambda p: p[1])  # type: ignore[misc]


def evaluation_charts(runs: list[dict], dpo_runs: list[dict], name: str) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    """Reward-vs-KL frontier per task (candidate vs DPO on the same suites) and training curves."""
    out = []
    tasks = sorted({(r.get("stage"), r.get("task")) for r in runs if r.get("stage") != "screen"}) or \
        sorted({(r.get("stage"), r.get("task")) for r in runs})
    panels = []
    for stage, task in tasks[:3]:
        chart = Chart(f"reward vs KL — {task} ({stage})", "KL(π ‖ π_ref) [nats]", "gold reward", width=420, height=270)
        for who, src, colour, shape in (("DPO", dpo_runs, PALETTE["dpo"], "square"), (name[:28], runs, PALETTE["candidate"], "circle")):
            mine = [r for r in src if r.get("stage") == stage and r.get("task") == task]
            if not mine:
                continue
            chart.points([r.get("kl") for r in mine], [r.get("gold_reward") for r in mine], colour=colour,
                         shape=shape, opacity=0.35)
            ref = _mean([(r.get("extra") or {}).get("reference_reward") for r in mine])
            front = _frontier(mine)
            xs = ([0.0] if ref is not None else []) + [p[1] for p in front]
            ys = ([ref] if ref is not None else []) + [p[2] for p in front]
            chart.line(xs, ys, colour=colour, dash="6 4" if who == "DPO" else None, label=who)
            chart.points([p[1] for p in front], [p[2] for p in front], colour=colour, shape=shape, opacity=1.0)
            if ref is not None and who == "DPO":
                chart.points([0.0], [ref], colour="#000000", shape="cross", label="reference policy")
        panels.append(chart)
    if panels:
        out.append(("reward versus KL frontier against DPO", svg_data_uri(side_by_side(panels))))
    curves = [r for r in runs if r.get("curve")]
    if curves:
        chart = Chart("training loss per logged step", "training step", "loss (this candidate)", width=520, height=270)
        for i, r in enumerate(curves):
            curve = r["curve"]
            steps = float((r.get("extra") or {}).get("steps_done") or len(curve))
            xs = [(j + 1) * steps / len(curve) for j in range(len(curve))]
            label = f"{r.get('stage')}: {r.get('task')} s{r.get('seed')} β{r.get('beta')}" if i < 6 else None
            chart.line(xs, curve, colour=SERIES_COLOURS[i % len(SERIES_COLOURS)], width=1.5, label=label)
        out.append(("training curves", svg_data_uri(chart.svg())))
    return out


def fitness_over_time(rows: list[Any], dpo: Any | None) -> str:
    """Fitness of each evaluated proposal in proposal order, the best so far, and DPO's level."""
    proposals = [r for r in rows if not r.is_baseline]
    chart = Chart("fitness over the campaign", "candidates proposed (in order)", "fitness", width=760, height=300)
    if dpo is not None and _finite(dpo.fitness):
        se = dpo.fitness_se or 0.0
        if se:
            chart.hband(dpo.fitness - se, dpo.fitness + se)
        chart.hline(dpo.fitness, label="DPO (± s.e.)")
    xs, ys, es, best_x, best_y, best = [], [], [], [], [], None
    for i, r in enumerate(proposals, 1):
        if r.status == "evaluated" and _finite(r.fitness):
            xs.append(i)
            ys.append(r.fitness)
            es.append(r.fitness_se)
            best = r.fitness if best is None else max(best, r.fitness)
        if best is not None:  # a step line: flat until a better candidate arrives
            if best_y and best != best_y[-1]:
                best_x.append(i)
                best_y.append(best_y[-1])
            best_x.append(i)
            best_y.append(best)
    chart.points(xs, ys, yerr=es, colour=PALETTE["candidate"], label="evaluated candidate (± s.e.)", opacity=0.75)
    chart.line(best_x, best_y, colour=PALETTE["good"], width=2.2, label="best so far")
    if not xs and not (dpo and _finite(dpo.fitness)):
        chart.ylim = (0.0, 1.0)
    chart.xlim = (0.5, max(len(proposals), 1) + 0.5)
    return chart.data_uri()
