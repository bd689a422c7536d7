"""Forest plots as inline SVG strings: intervals on a shared x axis, one row per label.

Hand-written like `streams/charts.py` (same palette), because a few dozen intervals do not
justify a plotting dependency. Pure functions: data in, SVG text out; every label escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# The palette of streams/charts.py, so closed-loop and replay charts read alike.
COLOURS = ("#1f77b4", "#7f7f7f", "#d62728", "#2ca02c", "#9467bd", "#8c564b")
_FONT_PX = 12
_CHAR_PX = 7.2  # generous glyph width of 12 px sans-serif, to size the label margin
_ROW_PX = 18
_TITLE_PX = 22
_AXIS_PX = 26
_GAP_PX = 16
_MAX_LABEL_CHARS = 40


@dataclass(frozen=True)
class Point:
    """One interval: ``series`` picks the colour; hollow when ``solid`` is False."""

    series: str
    value: float
    low: float
    high: float
    solid: bool = True


@dataclass(frozen=True)
class ForestRow:
    """A labelled row of intervals (one per series), drawn one above the other."""

    label: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Panel:
    """One forest of rows under a title; panels of a plot share the x axis."""

    title: str
    rows: tuple[ForestRow, ...]


@dataclass(frozen=True)
class RefLine:
    """A vertical reference line at ``x`` (e.g. zero, or the logging policy's value)."""

    x: float
    label: str
    colour: str = "#444"
    dashed: bool = True


def series_colours(series: Sequence[str]) -> dict[str, str]:
    """A colour per series name, in order, cycling through the palette."""
    return {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(series)}


def nice_ticks(low: float, high: float, count: int = 7) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 x 10^k) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    # Multiplying (not accumulating) keeps 0.3 from becoming 0.30000000000000004 + drift.
    return [round(i * step, 12) + 0.0 for i in range(first, last + 1)]


def x_range(panels: Sequence[Panel], refs: Sequence[RefLine]) -> tuple[float, float]:
    """The finite span of every interval and reference line, padded by 5% on each side."""
    values = [
        v
        for panel in panels
        for row in panel.rows
        for p in row.points
        for v in (p.value, p.low, p.high)
        if math.isfinite(v)
    ] + [r.x for r in refs if math.isfinite(r.x)]
    if not values:
        return -1.0, 1.0
    low, high = min(values), max(values)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    pad = 0.05 * (high - low)
    return low - pad, high + pad


@dataclass(frozen=True)
class _Frame:
    """Where one panel goes and how its rows are sized (pixels), and the shared x span."""

    x0: float
    y0: float
    width: float
    height: float
    label_px: float
    label_chars: int
    row_px: float
    span: tuple[float, float]


def forest_svg(
    panels: Sequence[Panel],
    *,
    title: str,
    series: Sequence[str],
    refs: Sequence[RefLine] = (),
    columns: int = 1,
    width: int = 760,
) -> str:
    """A forest plot of ``panels`` laid out in ``columns``, with a legend of ``series``.

    Every panel has the same x scale so intervals can be compared across panels; points that
    are not finite are left out (a marker without whiskers if only the interval is missing).
    """
    columns = max(1, min(columns, len(panels) or 1))
    colours = series_colours(series)
    span = x_range(panels, refs)
    rows = [row for panel in panels for row in panel.rows]
    most_points = max((len(row.points) for row in rows), default=1)
    row_px = max(_ROW_PX, 7.0 * most_points + 6)
    panel_w = (width - _GAP_PX * (columns - 1)) / columns
    label_chars = min(
        _MAX_LABEL_CHARS,
        int(0.4 * panel_w / _CHAR_PX),
        max((len(row.label) for row in rows), default=4),
    )
    top = _TITLE_PX + _ROW_PX + 10
    grid = [panels[i : i + columns] for i in range(0, len(panels), columns)]
    heights = [_TITLE_PX + row_px * max(len(p.rows) for p in line) + _AXIS_PX for line in grid]
    total_h = top + sum(heights) + _GAP_PX * len(grid)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h:.0f}" '
        f'viewBox="0 0 {width} {total_h:.0f}" font-family="sans-serif" font-size="{_FONT_PX}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<rect width="{width}" height="{total_h:.0f}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="14">'
        f"{escape(title)}</text>",
        _legend(colours, refs, y=_TITLE_PX + 10, width=width),
    ]
    y = float(top)
    for line, height in zip(grid, heights, strict=True):
        for c, panel in enumerate(line):
            frame = _Frame(
                x0=c * (panel_w + _GAP_PX),
                y0=y,
                width=panel_w,
                height=height,
                label_px=label_chars * _CHAR_PX + 14,
                label_chars=label_chars,
                row_px=row_px,
                span=span,
            )
            parts.append(_panel(panel, colours, refs, frame))
        y += height + _GAP_PX
    parts.append("</svg>")
    return "\n".join(parts)


def _legend(colours: dict[str, str], refs: Sequence[RefLine], *, y: float, width: int) -> str:
    """Series markers then reference-line styles, left to right on one line."""
    items = []
    x = 10.0
    for name, colour in colours.items():
        items.append(f'<circle cx="{x + 5:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
        items.append(f'<text x="{x + 13:.1f}" y="{y + 4:.1f}">{escape(name)}</text>')
        x += 13 + len(name) * _CHAR_PX + 16
    for ref in refs:
        if x > width - 80:
            break
        dash = ' stroke-dasharray="4 3"' if ref.dashed else ""
        items.append(
            f'<line x1="{x:.1f}" y1="{y - 6:.1f}" x2="{x:.1f}" y2="{y + 6:.1f}" '
            f'stroke="{ref.colour}"{dash}/>'
        )
        items.append(f'<text x="{x + 6:.1f}" y="{y + 4:.1f}">{escape(ref.label)}</text>')
        x += 6 + len(ref.label) * _CHAR_PX + 16
    return "\n".join(items)


def _panel(panel: Panel, colours: dict[str, str], refs: Sequence[RefLine], frame: _Frame) -> str:
    """One panel: title, row labels, gridlines and ticks, reference lines, then intervals."""
    lo, hi = frame.span
    left, right = frame.x0 + frame.label_px, frame.x0 + frame.width - 10
    plot_top = frame.y0 + _TITLE_PX
    plot_bottom = frame.y0 + frame.height - _AXIS_PX

    def x_of(v: float) -> float:
        return left + (right - left) * (v - lo) / (hi - lo)

    title = _clip(panel.title, int(frame.width / _CHAR_PX) - 2)
    parts = [
        f'<text x="{frame.x0 + 4:.1f}" y="{frame.y0 + 15:.1f}" font-weight="bold">'
        f"{escape(title)}</text>",
        f'<line x1="{left:.1f}" y1="{plot_bottom:.1f}" x2="{right:.1f}" y2="{plot_bottom:.1f}" '
        'stroke="black"/>',
    ]
    for tick in nice_ticks(lo, hi):
        tx = x_of(tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{plot_top:.1f}" x2="{tx:.1f}" y2="{plot_bottom:.1f}" '
            'stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{tx:.1f}" y="{plot_bottom + 14:.1f}" text-anchor="middle" '
            f'font-size="10">{tick:.3g}</text>'
        )
    for ref in refs:
        if math.isfinite(ref.x):
            dash = ' stroke-dasharray="4 3"' if ref.dashed else ""
            parts.append(
                f'<line x1="{x_of(ref.x):.1f}" y1="{plot_top:.1f}" x2="{x_of(ref.x):.1f}" '
                f'y2="{plot_bottom:.1f}" stroke="{ref.colour}"{dash}/>'
            )
    for r, row in enumerate(panel.rows):
        band_top = plot_top + r * frame.row_px
        parts.append(
            f'<text x="{left - 6:.1f}" y="{band_top + frame.row_px / 2 + 4:.1f}" '
            f'text-anchor="end">{escape(_clip(row.label, frame.label_chars))}</text>'
        )
        shown = [p for p in row.points if math.isfinite(p.value)]
        for j, point in enumerate(shown):
            # Dodge the series vertically inside the row's band so they do not overlap.
            cy = band_top + frame.row_px * (j + 1) / (len(shown) + 1)
            colour = colours.get(point.series, COLOURS[0])
            parts.append(_interval(point, colour, cy, x_of))
    return "\n".join(parts)


def _interval(point: Point, colour: str, cy: float, x_of: Callable[[float], float]) -> str:
    """Whisker from low to high (when both are finite) and a marker at the value."""
    fill = colour if point.solid else "white"
    tip = escape(f"{point.series}: {point.value:.4f} [{point.low:.4f}, {point.high:.4f}]")
    parts = [f"<g><title>{tip}</title>"]
    if math.isfinite(point.low) and math.isfinite(point.high):
        parts.append(
            f'<line x1="{x_of(point.low):.1f}" y1="{cy:.1f}" x2="{x_of(point.high):.1f}" '
            f'y2="{cy:.1f}" stroke="{colour}" stroke-width="1.5"/>'
        )
    parts.append(
        f'<circle cx="{x_of(point.value):.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}" '
        f'stroke="{colour}" stroke-width="1.5"/></g>'
    )
    return "".join(parts)


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, so labels stay inside the plot."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
