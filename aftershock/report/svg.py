"""Inline SVG charts, drawn by hand so a report needs no script and no network.

Every function returns one ``<svg>`` element as a string; text is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from schemas.results import Cascade
    from schemas.results import SeriesWindow as FaultWindow

FAULT_COLOURS = {
    "latency": "#f2c14e",
    "proxy_disabled": "#e4572e",
    "timeout": "#e4572e",
    "reset_peer": "#a23b72",
    "corrupt": "#7b5ea7",
    "drop": "#3f88c5",
    "packet_loss": "#3f88c5",
    "bandwidth": "#44af69",
    "slow_close": "#8d99ae",
    "slicer": "#8d99ae",
    "limit_data": "#8d99ae",
}
DEFAULT_FAULT_COLOUR = "#8d99ae"


def fault_colour(fault_type: str) -> str:
    return FAULT_COLOURS.get(fault_type, DEFAULT_FAULT_COLOUR)


@dataclass(frozen=True)
class Line:
    name: str
    colour: str
    points: Sequence[tuple[float, float | None]]
    """(x seconds, y) pairs; a None y breaks the line."""
    right: bool = False
    """Drawn against the right-hand axis, which has its own scale (a series far smaller than
    another stays visible)."""


@dataclass(frozen=True)
class Mark:
    """A moment drawn across a chart: a steady-state probe run, for instance."""

    x: float
    label: str
    ok: bool


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 × 10^n) giving about ``ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0):
        if raw <= m * mag:
            return m * mag
    return 10.0 * mag


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _scale(ys: Sequence[float]) -> tuple[float, float]:
    """(step, top) of an axis showing every value of ``ys``."""
    y_top = max(ys, default=0.0)
    step = nice_step(y_top if y_top > 0 else 1.0, 4)
    top = max(step, math.ceil(y_top / step) * step) if y_top > 0 else step * 4
    return step, top


def line_chart(
    title: str,
    lines: Sequence[Line],
    windows: Sequence[FaultWindow],
    *,
    x_max: float,
    y_unit: str = "",
    width: int = 960,
    height: int = 240,
    marks: Sequence[Mark] = (),
) -> str:
    """A time chart (x in seconds) with the fault windows shaded behind the lines; lines
    marked ``right`` get their own scale on the right-hand axis."""
    has_right = any(ln.right for ln in lines)
    # The same margins whether or not there is a right-hand axis: the charts of a report
    # stack, and their time axes line up.
    left, right, top, bottom = 56, 56, 30, 34
    pw, ph = width - left - right, height - top - bottom
    x_max = max(x_max, 1e-9)
    y_step, y_max = _scale(
        [y for ln in lines if not ln.right for _, y in ln.points if y is not None]
    )
    r_step, r_max = _scale([y for ln in lines if ln.right for _, y in ln.points if y is not None])

    def sx(x: float) -> float:
        return left + pw * min(max(x, 0.0), x_max) / x_max

    def sy(y: float, on_right: bool = False) -> float:
        m = r_max if on_right else y_max
        return top + ph - ph * min(max(y, 0.0), m) / m

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for w in windows:
        x0 = sx(w.start_s)
        x1 = sx(w.end_s if w.end_s is not None else x_max)
        out.append(
            f'<rect class="fault-window" data-fault="{escape(w.fault_id)}" x="{x0:.1f}" y="{top}" '
            f'width="{max(x1 - x0, 1.0):.1f}" height="{ph}" fill="{fault_colour(w.fault_type)}" '
            f'fill-opacity="0.22"><title>{escape(w.fault_id)} ({escape(w.fault_type)}, '
            f"{w.start_s:.1f}–{'end' if w.end_s is None else f'{w.end_s:.1f}'} s)</title></rect>"
        )
        out.append(
            f'<text x="{x0 + 3:.1f}" y="{top + 11}" class="window-label">'
            f"{escape(w.fault_id)}</text>"
        )
    y = 0.0
    while y <= y_max + 1e-9:
        py = sy(y)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py:.1f}" y2="{py:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{py + 4:.1f}" class="tick" text-anchor="end">'
            f"{_fmt(y)}{escape(y_unit)}</text>"
        )
        y += y_step
    if has_right:
        y = 0.0
        while y <= r_max + 1e-9:
            out.append(
                f'<text x="{left + pw + 6}" y="{sy(y, True) + 4:.1f}" class="tick" '
                f'text-anchor="start">{_fmt(y)}{escape(y_unit)}</text>'
            )
            y += r_step
    x_step = nice_step(x_max, 8)
    x = 0.0
    while x <= x_max + 1e-9:
        px = sx(x)
        out.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
            f'<text x="{px:.1f}" y="{top + ph + 16}" class="tick" text-anchor="middle">'
            f"{_fmt(x)} s</text>"
        )
        x += x_step
    out.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>'
    )
    if has_right:
        out.append(
            f'<line x1="{left + pw}" x2="{left + pw}" y1="{top}" y2="{top + ph}" class="axis"/>'
        )
    for m in marks:
        px = sx(m.x)
        colour = "#2e8b57" if m.ok else "#c0392b"
        out.append(
            f'<line class="mark" data-ok="{str(m.ok).lower()}" x1="{px:.1f}" x2="{px:.1f}" '
            f'y1="{top}" y2="{top + ph}" stroke="{colour}" stroke-width="1.5" '
            f'stroke-dasharray="4 3"><title>{escape(m.label)}</title></line>'
        )
    for ln in lines:
        segments: list[list[str]] = [[]]
        for vx, vy in ln.points:
            if vy is None:
                segments.append([])
            else:
                segments[-1].append(f"{sx(vx):.1f},{sy(vy, ln.right):.1f}")
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="1.8" fill="{ln.colour}"/>')
            elif seg:
                out.append(
                    f'<polyline class="series" data-series="{escape(ln.name)}" fill="none" '
                    f'stroke="{ln.colour}" stroke-width="1.6" points="{" ".join(seg)}"/>'
                )
    lx = left + pw
    for ln in reversed(lines):
        name = f"{ln.name} (right axis)" if ln.right else ln.name
        label = escape(name)
        lx -= 14 + 7 * len(name)
        out.append(
            f'<rect x="{lx}" y="10" width="10" height="10" fill="{ln.colour}"/>'
            f'<text x="{lx + 13}" y="19" class="legend">{label}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def cascade_graph(cascades: Sequence[Cascade], *, width: int = 960) -> str:
    """One row per fault: the target it hit first, then every target that failed after it,
    in order, each arrow labelled with the time since the fault began."""
    row_h, box_w, box_h, gap = 64, 150, 34, 60
    height = 24 + row_h * max(1, len(cascades))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cascade" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="cascade graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#555"/></marker></defs>',
    ]
    if not cascades:
        out.append('<text x="10" y="30" class="tick">No fault propagated to a target.</text>')
    for i, c in enumerate(cascades):
        y = 16 + i * row_h
        out.append(f'<text x="8" y="{y + 4}" class="cascade-fault">{escape(c.fault_id)}</text>')
        nodes = [(c.origin_target, "fault origin", True)]
        nodes += [
            (
                h.target,
                f"+{h.failed_after_ms:.0f} ms" + (", after" if h.relation == "after" else ""),
                False,
            )
            for h in c.hops
        ]
        for j, (name, sub, origin) in enumerate(nodes):
            x = 8 + j * (box_w + gap)
            cls = "node origin" if origin else "node failed"
            out.append(
                f'<g class="{cls}" data-target="{escape(name)}">'
                f'<rect x="{x}" y="{y + 10}" width="{box_w}" height="{box_h}" rx="5"/>'
                f'<text x="{x + box_w / 2}" y="{y + 25}" text-anchor="middle" class="node-name">'
                f"{escape(name)}</text>"
                f'<text x="{x + box_w / 2}" y="{y + 38}" text-anchor="middle" class="node-sub">'
                f"{escape(sub)}</text></g>"
            )
            if j:
                x0 = x - gap
                out.append(
                    f'<line x1="{x0}" y1="{y + 10 + box_h / 2}" x2="{x - 2}" '
                    f'y2="{y + 10 + box_h / 2}" stroke="#555" stroke-width="1.5" '
                    'marker-end="url(#arrow)"/>'
                )
        tail_x = 8 + len(nodes) * (box_w + gap) - gap + 12
        verdict = "contained" if c.contained else "not contained"
        out.append(
            f'<text x="{tail_x}" y="{y + 31}" class="tick">{verdict}; blast radius '
            f"{c.blast_targets} targets, {c.blast_tenants} tenants, "
            f"{c.blast_sessions} sessions</text>"
        )
    out.append("</svg>")
    return "".join(out)
