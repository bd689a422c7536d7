"""The report as text: tables sized to their content, a bar chart of the gains, wrapped prose.

Names are never cut or broken: a table's label column is as wide as its longest label, wide
tables are split into column groups, and prose wraps at spaces only (not after hyphens).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

from replay.report_svg import ABOVE, BELOW, BarGroup, bar_text
from replay.report_tables import Cell, Table, column_groups

_MIN_PLOT_CHARS = 20
BAR, WHISKER, ZERO = "█", "─", "│"


def wrap(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    """``text`` wrapped to ``width`` at spaces only: no name is broken at a hyphen or cut."""
    return textwrap.wrap(
        text,
        width,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [first.rstrip()]


def heading(title: str) -> list[str]:
    """A section title underlined."""
    return [title, "─" * len(title)]


def text_table(table: Table, width: int) -> list[str]:
    """The table as text lines, its columns split into groups that fit ``width``."""
    label_w = max(len(table.corner), *(len(label) for label, _ in table.rows))
    texts = [
        [_cell_text(c, j in table.names) for j, c in enumerate(cells)] for _, cells in table.rows
    ]
    # Number headers carry the two-character mark slot of the cells so they align.
    heads = [name if j in table.names else f"{name}  " for j, name in enumerate(table.columns)]
    col_w = [max(len(head), *(len(row[j]) for row in texts)) for j, head in enumerate(heads)]
    lines = [table.title]
    for g, group in enumerate(column_groups(label_w, col_w, width, 2)):
        if g:
            lines.append("")
        lines.append(
            f"{table.corner:<{label_w}}"
            + "".join(f"  {_align(heads[j], col_w[j], j in table.names)}" for j in group)
        )
        for (label, _), row in zip(table.rows, texts, strict=True):
            cells = "".join(f"  {_align(row[j], col_w[j], j in table.names)}" for j in group)
            lines.append(f"{label:<{label_w}}{cells}")
    for note in table.notes:
        lines += wrap(note, width, "  ", "    ")
    return [line.rstrip() for line in lines]


def _align(text: str, width: int, left: bool) -> str:
    return f"{text:<{width}}" if left else f"{text:>{width}}"


def _cell_text(cell: Cell, name: bool) -> str:
    if name:
        return cell.text
    # A blank in place of a missing mark keeps the numbers of a column aligned.
    return f"{cell.text} {cell.mark or ' '}"


def definitions(terms: Sequence[tuple[str, str]], width: int) -> list[str]:
    """Term and meaning side by side; the meaning wrapped beside the term (or under a term
    too long to leave room)."""
    term_w = min(max((len(t) for t, _ in terms), default=0), width // 3)
    out = []
    for term, meaning in terms:
        if len(term) > term_w:
            out.append(f"  {term}")
            out += wrap(meaning, width, " " * (term_w + 4), " " * (term_w + 4))
        else:
            pad = " " * (term_w + 4)
            out += wrap(meaning, width, f"  {term:<{term_w}}  ", pad)
    return out


def bar_chart(groups: Sequence[BarGroup], *, title: str, width: int) -> list[str]:
    """Each contrast as a bar from 0 (│) to its value (█) with its interval (─), beside its
    numbers; the axis spans the intervals and 0."""
    bars = [bar for group in groups for bar in group.bars]
    if not bars:
        return []
    label_w = max(len(b.label) for b in bars) + 2
    num_w = max(len(bar_text(b)) for b in bars)
    plot_w = max(_MIN_PLOT_CHARS, width - label_w - num_w - 6)
    finite = [v for b in bars for v in (b.value, b.low, b.high) if math.isfinite(v)]
    lo, hi = min(0.0, *finite), max(0.0, *finite)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0

    def col(v: float) -> int:
        return round((min(max(v, lo), hi) - lo) / (hi - lo) * (plot_w - 1))

    lead = " " * (label_w + num_w + 4)
    lines = [title, lead + _axis_labels(lo, hi, col(0.0), plot_w)]
    for group in groups:
        lines.append(f"  {group.title}")
        for bar in group.bars:
            chars = [" "] * plot_w
            chars[col(0.0)] = ZERO
            if math.isfinite(bar.low) and math.isfinite(bar.high):
                for c in range(col(bar.low), col(bar.high) + 1):
                    chars[c] = WHISKER
            if math.isfinite(bar.value):
                a, b = sorted((col(0.0), col(bar.value)))
                for c in range(a, b + 1):
                    chars[c] = BAR
            row = f"    {bar.label:<{label_w - 2}}  {bar_text(bar):<{num_w}}  {''.join(chars)}"
            lines.append(row.rstrip())
    lines += wrap(
        f"{BAR} from 0 to the value, {WHISKER} its interval, {ZERO} zero; {ABOVE} interval above "
        f"0 (a significant gain), {BELOW} below 0 (a significant loss)",
        width,
        "  ",
        "    ",
    )
    return lines


def _axis_labels(lo: float, hi: float, zero: int, plot_w: int) -> str:
    """The low end, 0 and the high end of the axis, each at its column where there is room."""
    chars = [" "] * plot_w
    for text, start in ((f"{lo:+.3g}", 0), (f"{hi:+.3g}", plot_w - len(f"{hi:+.3g}"))):
        chars[start : start + len(text)] = text
    if all(c == " " for c in chars[max(0, zero - 1) : zero + 2]):
        chars[zero] = "0"
    return "".join(chars).rstrip()
