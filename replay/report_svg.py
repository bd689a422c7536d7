"""Forest plots and gain bars as inline SVG strings: intervals on a shared x axis.

Hand-written like `streams/charts.py` (same palette), because a few dozen intervals do not
justify a plotting dependency. Pure functions: data in, SVG text out; every label escaped and
never cut: margins and the picture grow to the longest label (a page scales the picture down
through its viewBox).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from html import escape

# The palette of streams/charts.py, so closed-loop and replay charts read alike.
COLOURS = ("#1f77b4", "#7f7f7f", "#d62728", "#2ca02c", "#9467bd", "#8c564b")
ABOVE_COLOUR, BELOW_COLOUR, COVERS_COLOUR = "#2ca02c", "#d62728", "#b0b0b0"
ABOVE, BELOW = "▲", "▼"  # interval above / below 0, as in the tables
_FONT_PX = 12
_TITLE_FONT_PX = 14
_ROW_PX = 18
_TITLE_PX = 22
_AXIS_PX = 26
_GAP_PX = 16
_LEGEND_ROW_PX = 18
_MIN_PLOT_PX = 220  # the narrowest interval area worth drawing
_BOLD = 1.13  # bold DejaVu Sans is up to this much wider


# Advance widths of the printable ASCII characters (space to ~) in DejaVu Sans, Debian's
# default sans-serif, in hundredths of an em rounded up (measured in Chromium); other fonts'
# are narrower. Any other character is counted as a full em (▲ is 0.86, − 0.84).
# fmt: off
_ASCII_EM100 = (
    32, 41, 46, 84, 64, 96, 78, 28, 40, 40, 50, 84, 32, 37, 32, 34,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 34, 34, 84, 84, 84, 54,
    100, 69, 69, 70, 78, 64, 58, 78, 76, 30, 30, 66, 56, 87, 75, 79,
    61, 79, 70, 64, 62, 74, 69, 99, 69, 62, 69, 40, 34, 40, 84, 50,
    50, 62, 64, 55, 64, 62, 36, 64, 64, 28, 28, 58, 28, 98, 64, 62,
    64, 64, 42, 53, 40, 64, 60, 82, 60, 60, 53, 64, 34, 64, 84,
)
# fmt: on


def text_width_px(text: str, font_px: float, *, bold: bool = False) -> float:
    """An upper estimate of ``text``'s width in ``font_px`` sans-serif (DejaVu Sans widths
    rounded up; bold about 13% wider), so that nothing sized by it is cut."""
    em = sum(_ASCII_EM100[ord(ch) - 32] / 100 if " " <= ch <= "~" else 1.0 for ch in text)
    return font_px * em * (_BOLD if bold else 1.0)


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


@dataclass(frozen=True)
class Bar:
    """One contrast: a bar from 0 to ``value`` with the interval [low, high] as a whisker."""

    label: str
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class BarGroup:
    """Bars under a heading (e.g. the gains, then each message's effect)."""

    title: str
    bars: tuple[Bar, ...]


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
    return _padded(values)


def _padded(values: Sequence[float]) -> tuple[float, float]:
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
    row_px: float
    span: tuple[float, float]


@dataclass(frozen=True)
class _LegendItem:
    """A legend entry: its marker (SVG drawn at x, y) and its label."""

    label: str
    marker: Callable[[float, float], str]


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
    The picture is wider than ``width`` when its labels need it.
    """
    columns = max(1, min(columns, len(panels) or 1))
    colours = series_colours(series)
    span = x_range(panels, refs)
    rows = [row for panel in panels for row in panel.rows]
    most_points = max((len(row.points) for row in rows), default=1)
    row_px = max(_ROW_PX, 7.0 * most_points + 6)
    label_px = max((text_width_px(row.label, _FONT_PX) for row in rows), default=0.0) + 14
    titles_px = max((text_width_px(p.title, _FONT_PX, bold=True) for p in panels), default=0.0)
    panel_w = max((width - _GAP_PX * (columns - 1)) / columns, label_px + _MIN_PLOT_PX, titles_px)
    total_w = math.ceil(max(panel_w * columns + _GAP_PX * (columns - 1), _title_px(title)))
    panel_w = (total_w - _GAP_PX * (columns - 1)) / columns
    legend, legend_h = _legend(_forest_legend(colours, refs), y=_TITLE_PX + 10, width=total_w)
    top = _TITLE_PX + legend_h + 10
    grid = [panels[i : i + columns] for i in range(0, len(panels), columns)]
    heights = [_TITLE_PX + row_px * max(len(p.rows) for p in line) + _AXIS_PX for line in grid]
    total_h = top + sum(heights) + _GAP_PX * len(grid)
    parts = [_open_svg(title, total_w, total_h), legend]
    y = float(top)
    for line, height in zip(grid, heights, strict=True):
        for c, panel in enumerate(line):
            frame = _Frame(
                x0=c * (panel_w + _GAP_PX),
                y0=y,
                width=panel_w,
                height=height,
                label_px=label_px,
                row_px=row_px,
                span=span,
            )
            parts.append(_panel(panel, colours, refs, frame))
        y += height + _GAP_PX
    parts.append("</svg>")
    return "\n".join(parts)


def _title_px(title: str) -> float:
    return text_width_px(title, _TITLE_FONT_PX) + 20


def _open_svg(title: str, width: float, height: float) -> str:
    """The root element (sized, with a viewBox so a page can scale it), background and title."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" '
        f'font-size="{_FONT_PX}" role="img" aria-label="{escape(title)}">\n'
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>\n'
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" '
        f'font-size="{_TITLE_FONT_PX}">{escape(title)}</text>'
    )


def _forest_legend(colours: dict[str, str], refs: Sequence[RefLine]) -> list[_LegendItem]:
    """A dot per series, then a line per reference line."""
    items = [_LegendItem(name, partial(_dot, colour=colour)) for name, colour in colours.items()]
    for ref in refs:
        dash = ' stroke-dasharray="4 3"' if ref.dashed else ""

        def mark(x: float, y: float, ref: RefLine = ref, dash: str = dash) -> str:
            return (
                f'<line x1="{x + 5:.1f}" y1="{y - 6:.1f}" x2="{x + 5:.1f}" y2="{y + 6:.1f}" '
                f'stroke="{ref.colour}"{dash}/>'
            )

        items.append(_LegendItem(ref.label, mark))
    return items


def _dot(x: float, y: float, colour: str) -> str:
    return f'<circle cx="{x + 5:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'


def _swatch(x: float, y: float, colour: str) -> str:
    return f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}"/>'


def _legend(items: Sequence[_LegendItem], *, y: float, width: float) -> tuple[str, float]:
    """The items left to right, wrapping onto further lines; the SVG and its height."""
    parts = []
    x, line_y, lines = 10.0, y, 1
    for item in items:
        item_w = 16 + text_width_px(item.label, _FONT_PX)
        if x > 10.0 and x + item_w > width - 10:
            x, line_y, lines = 10.0, line_y + _LEGEND_ROW_PX, lines + 1
        parts.append(item.marker(x, line_y))
        parts.append(f'<text x="{x + 16:.1f}" y="{line_y + 4:.1f}">{escape(item.label)}</text>')
        x += item_w + 16
    return "\n".join(parts), _LEGEND_ROW_PX * lines if items else 0.0


def _panel(panel: Panel, colours: dict[str, str], refs: Sequence[RefLine], frame: _Frame) -> str:
    """One panel: title, row labels, gridlines and ticks, reference lines, then intervals."""
    lo, hi = frame.span
    left, right = frame.x0 + frame.label_px, frame.x0 + frame.width - 10
    plot_top = frame.y0 + _TITLE_PX
    plot_bottom = frame.y0 + frame.height - _AXIS_PX

    def x_of(v: float) -> float:
        return left + (right - left) * (v - lo) / (hi - lo)

    parts = [
        '<g class="panel">',
        f'<rect class="frame" x="{frame.x0:.1f}" y="{frame.y0:.1f}" width="{frame.width:.1f}" '
        f'height="{frame.height:.1f}" fill="none"/>',
        f'<text x="{frame.x0 + 4:.1f}" y="{frame.y0 + 15:.1f}" font-weight="bold">'
        f"{escape(panel.title)}</text>",
        _axis(left, right, plot_top, plot_bottom, x_of, frame.span),
    ]
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
            f'text-anchor="end">{escape(row.label)}</text>'
        )
        shown = [p for p in row.points if math.isfinite(p.value)]
        for j, point in enumerate(shown):
            # Dodge the series vertically inside the row's band so they do not overlap.
            cy = band_top + frame.row_px * (j + 1) / (len(shown) + 1)
            colour = colours.get(point.series, COLOURS[0])
            parts.append(_interval(point, colour, cy, x_of))
    parts.append("</g>")
    return "\n".join(parts)


def _axis(
    left: float,
    right: float,
    top: float,
    bottom: float,
    x_of: Callable[[float], float],
    span: tuple[float, float],
) -> str:
    """The x axis at ``bottom`` with gridlines and tick labels over [left, right]."""
    parts = [
        f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" stroke="black"/>'
    ]
    for tick in nice_ticks(*span):
        tx = x_of(tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top:.1f}" x2="{tx:.1f}" y2="{bottom:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{tx:.1f}" y="{bottom + 14:.1f}" text-anchor="middle" '
            f'font-size="10">{tick:.3g}</text>'
        )
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


# ---- gain bars ---------------------------------------------------------------------------------


def sign_mark(low: float, high: float) -> str:
    """▲ when the interval lies above 0, ▼ when below, empty when it covers 0 (or is nan)."""
    if low > 0:
        return ABOVE
    if high < 0:
        return BELOW
    return ""


def bar_text(bar: Bar) -> str:
    """The value, interval and significance mark written beside a bar."""
    mark = sign_mark(bar.low, bar.high)
    return f"{bar.value:+.4f} [{bar.low:+.4f}, {bar.high:+.4f}]" + (f" {mark}" if mark else "")


def bars_svg(groups: Sequence[BarGroup], *, title: str, width: int = 760) -> str:
    """Horizontal bars from 0 to each value with the interval as a whisker: green where the
    interval lies above 0, red below, grey where it covers 0; the numbers written beside."""
    bars = [bar for group in groups for bar in group.bars]
    finite = [v for b in bars for v in (b.value, b.low, b.high) if math.isfinite(v)]
    span = _padded([0.0, *finite])
    label_px = 14 + max(
        (text_width_px(b.label, _FONT_PX) for b in bars),
        default=0.0,
    )
    heads_px = max((text_width_px(g.title, _FONT_PX, bold=True) for g in groups), default=0.0)
    label_px = max(label_px, heads_px - _MIN_PLOT_PX / 2)
    value_px = 16 + max((text_width_px(bar_text(b), _FONT_PX) for b in bars), default=0.0)
    total_w = math.ceil(max(width, label_px + _MIN_PLOT_PX + value_px, _title_px(title)))
    items = [
        _LegendItem("interval above 0", partial(_swatch, colour=ABOVE_COLOUR)),
        _LegendItem("interval below 0", partial(_swatch, colour=BELOW_COLOUR)),
        _LegendItem("interval covers 0", partial(_swatch, colour=COVERS_COLOUR)),
        _LegendItem("interval", lambda x, y: _whisker(x, x + 10, y, "#333")),
    ]
    legend, legend_h = _legend(items, y=_TITLE_PX + 10, width=total_w)
    top = _TITLE_PX + legend_h + 10
    rows = sum(1 + len(g.bars) for g in groups)
    plot_bottom = top + rows * _ROW_PX + 6
    total_h = plot_bottom + _AXIS_PX
    left, right = label_px, total_w - value_px
    lo, hi = span

    def x_of(v: float) -> float:
        return left + (right - left) * (min(max(v, lo), hi) - lo) / (hi - lo)

    parts = [
        _open_svg(title, total_w, total_h),
        legend,
        _axis(left, right, top, plot_bottom, x_of, span),
        f'<line x1="{x_of(0.0):.1f}" y1="{top:.1f}" x2="{x_of(0.0):.1f}" '
        f'y2="{plot_bottom:.1f}" stroke="#444"/>',
    ]
    y = float(top)
    for group in groups:
        parts.append(
            f'<text x="4" y="{y + 13:.1f}" font-weight="bold">{escape(group.title)}</text>'
        )
        y += _ROW_PX
        for bar in group.bars:
            parts.append(_bar(bar, y, x_of, left, right))
            y += _ROW_PX
    parts.append("</svg>")
    return "\n".join(parts)


def _bar(bar: Bar, y: float, x_of: Callable[[float], float], left: float, right: float) -> str:
    """One bar row: label, bar, whisker and the numbers at the right."""
    mark = sign_mark(bar.low, bar.high)
    colour = {ABOVE: ABOVE_COLOUR, BELOW: BELOW_COLOUR}.get(mark, COVERS_COLOUR)
    parts = [
        f'<text x="{left - 6:.1f}" y="{y + 13:.1f}" text-anchor="end">{escape(bar.label)}</text>',
        f'<text x="{right + 10:.1f}" y="{y + 13:.1f}">{escape(bar_text(bar))}</text>',
    ]
    if math.isfinite(bar.value):
        x0, x1 = sorted((x_of(0.0), x_of(bar.value)))
        parts.append(
            f'<rect x="{x0:.1f}" y="{y + 4:.1f}" width="{max(x1 - x0, 1.0):.1f}" height="10" '
            f'fill="{colour}"><title>{escape(f"{bar.label}: {bar_text(bar)}")}</title></rect>'
        )
    if math.isfinite(bar.low) and math.isfinite(bar.high):
        parts.append(_whisker(x_of(bar.low), x_of(bar.high), y + 9, "#333"))
    return "\n".join(parts)


def _whisker(x0: float, x1: float, y: float, colour: str) -> str:
    """A horizontal interval line with short end caps."""
    return (
        f'<path d="M{x0:.1f},{y - 4:.1f}V{y + 4:.1f}M{x0:.1f},{y:.1f}H{x1:.1f}'
        f'M{x1:.1f},{y - 4:.1f}V{y + 4:.1f}" stroke="{colour}" stroke-width="1.3" fill="none"/>'
    )
