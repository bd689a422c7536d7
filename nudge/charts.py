"""Line charts of a few short series: in the terminal (text) and as a standalone SVG file.

Written by hand because a dozen points per series do not justify a plotting dependency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

_MARKS = "*o+x#@"
_COLOURS = ("#1f77b4", "#7f7f7f", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def _bounds(series: Mapping[str, Sequence[float]]) -> tuple[float, float]:
    values = [v for ys in series.values() for v in ys]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    return low, high


def ascii_chart(series: Mapping[str, Sequence[float]], height: int = 12) -> str:
    """One column per point, one mark per series; the y axis labelled at top and bottom."""
    low, high = _bounds(series)
    width = max(len(ys) for ys in series.values())
    grid = [[" "] * (width * 3) for _ in range(height)]
    # Drawn last-first, so the first series (the policy) is on top where points coincide.
    for mark, ys in reversed(list(zip(_MARKS, series.values(), strict=False))):
        for x, y in enumerate(ys):
            grid[round((high - y) / (high - low) * (height - 1))][x * 3 + 1] = mark
    lines = []
    for i, cells in enumerate(grid):
        label = f"{high:+.3f}" if i == 0 else f"{low:+.3f}" if i == height - 1 else ""
        lines.append(f"{label:>7} |{''.join(cells)}")
    lines.append(" " * 8 + "+" + "-" * (width * 3))
    lines.append(" " * 9 + "".join(f"{x + 1:^3}" for x in range(width)) + "  (round)")
    legend = "   ".join(f"{m} {name}" for m, name in zip(_MARKS, series, strict=False))
    lines.append(" " * 9 + legend)
    return "\n".join(lines)


def write_svg_chart(series: Mapping[str, Sequence[float]], path: Path, title: str) -> None:
    """A self-contained SVG line chart (rounds on x, values on y) with a legend."""
    w, h, pad = 720, 400, 60
    low, high = _bounds(series)
    n = max(len(ys) for ys in series.values())

    def x_of(i: int) -> float:
        return pad + (w - 2 * pad) * (i / max(1, n - 1))

    def y_of(v: float) -> float:
        return h - pad - (h - 2 * pad) * (v - low) / (high - low)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
    ]
    for k in range(5):
        v = low + (high - low) * k / 4
        parts.append(
            f'<text x="{pad - 6}" y="{y_of(v) + 4:.1f}" text-anchor="end" font-size="11">{v:+.3f}</text>'
        )
        parts.append(
            f'<line x1="{pad}" y1="{y_of(v):.1f}" x2="{w - pad}" y2="{y_of(v):.1f}" stroke="#eee"/>'
        )
    for i in range(n):
        parts.append(
            f'<text x="{x_of(i):.1f}" y="{h - pad + 16}" text-anchor="middle" font-size="11">{i + 1}</text>'
        )
    parts.append(f'<text x="{w / 2}" y="{h - 18}" text-anchor="middle" font-size="12">round</text>')
    for j, (name, ys) in enumerate(series.items()):
        colour = _COLOURS[j % len(_COLOURS)]
        points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(ys))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
        ly = pad + 16 * j
        parts.append(
            f'<line x1="{w - pad - 130}" y1="{ly}" x2="{w - pad - 110}" y2="{ly}" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{w - pad - 104}" y="{ly + 4}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
