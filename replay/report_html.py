"""The report as HTML pieces: tables that fit a narrow window, prose that never breaks a name.

Tables are split into column groups whose estimated width fits `TABLE_BUDGET_PX`, so that the
report needs no sideways scrolling in a window `NARROW_WINDOW_PX` wide; below that, a table
scrolls inside its own frame and the page stays put. Cells never wrap; in prose, words that
hold a hyphen or a slash (policy names, negative numbers) are kept whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from replay.report_svg import ABOVE, BELOW, text_width_px
from replay.report_tables import Cell, Table, column_groups
from replay.report_words import BEST, FLAG, NOT_A_CANDIDATE

NARROW_WINDOW_PX = 768  # the narrowest window the report is laid out for without scrolling
TABLE_BUDGET_PX = 700  # the window less the page's padding and a margin for the estimate
_CELL_FONT_PX = 13
_CELL_PAD_PX = 16
_HOLDS_A_BREAK = re.compile(r"\S*[-/‐]\S*")

CSS = (
    "body{font-family:sans-serif;font-size:15px;line-height:1.4;color:#222;"
    "max-width:1100px;margin:0 auto;padding:16px}"
    "h1{font-size:1.5em;margin:0.2em 0 0.6em;overflow-wrap:anywhere}"
    "h2{font-size:1.2em;margin:1.6em 0 0.5em;border-bottom:1px solid #ccc}"
    "h3{font-size:1em;margin:1.2em 0 0.3em}"
    ".headline{background:#eef5ee;border-left:4px solid #2ca02c;padding:0.3em 1em;margin:0 0 1em}"
    ".headline ul{padding-left:1.2em;margin:0.4em 0}.headline li{margin:0.35em 0}"
    ".meta{color:#444;font-size:0.93em;padding-left:1.2em}"
    ".frame{overflow-x:auto;margin:0.2em 0 0.2em}"
    "table{border-collapse:collapse;font-size:13px}"
    "th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right;"
    "font-variant-numeric:tabular-nums;white-space:nowrap}"
    "th:first-child,td:first-child,.name{text-align:left}"
    ".title{font-weight:bold;margin:1.2em 0 0.2em}.frame+.frame{margin-top:0.8em}"
    ".best{font-weight:bold}.pos{color:#1a7f1a}.neg{color:#c62828}.na{color:#888}"
    ".flag{background:#fff3cd}.note{color:#555;font-size:13px;margin:0.15em 0}"
    ".warn{background:#fff3cd;border-left:4px solid #e0a800;padding:0.3em 1em;margin:1em 0}"
    ".plot{margin:1em 0 1.4em}.plot svg{max-width:100%;height:auto;display:block}"
    ".nw{white-space:nowrap}"
    "dl.glossary{display:grid;grid-template-columns:max-content 1fr;gap:0.25em 1em}"
    "dl.glossary dt{font-weight:bold;white-space:nowrap}dl.glossary dd{margin:0}"
    "@media (max-width:600px){dl.glossary{display:block}dl.glossary dd{margin:0 0 0.5em 1em}}"
    ".appendix{margin-top:2.5em;border-top:3px double #999}"
)
_MARK_CLASS = {BEST: "best", ABOVE: "pos", BELOW: "neg", FLAG: "flag"}


def prose(text: str) -> str:
    """Escaped text in which a word holding a hyphen or slash never breaks across lines."""
    out, last = [], 0
    for found in _HOLDS_A_BREAK.finditer(text):
        out.append(escape(text[last : found.start()]))
        out.append(f'<span class="nw">{escape(found.group())}</span>')
        last = found.end()
    out.append(escape(text[last:]))
    return "".join(out)


def html_table(table: Table) -> str:
    """The table's title, then one HTML table per column group that fits `TABLE_BUDGET_PX`;
    marked cells get a class (best, pos, neg, flag, na) and compact cells their interval on
    hover (a title attribute)."""
    label_px = max(
        text_width_px(table.corner, _CELL_FONT_PX, bold=True),
        *(text_width_px(label, _CELL_FONT_PX) for label, _ in table.rows),
    )
    widths = [
        max(
            text_width_px(head, _CELL_FONT_PX, bold=True),
            *(text_width_px(_shown(cells[j]), _CELL_FONT_PX) for _, cells in table.rows),
        )
        + _CELL_PAD_PX
        for j, head in enumerate(table.columns)
    ]
    groups = column_groups(label_px + _CELL_PAD_PX, widths, TABLE_BUDGET_PX, 0)
    parts = [f'<p class="title">{prose(table.title)}</p>']
    for group in groups:
        head = f"<th>{escape(table.corner)}</th>" + "".join(
            f"<th{_name_class(j, table)}>{escape(table.columns[j])}</th>" for j in group
        )
        body = "".join(
            f"<tr><td>{escape(label)}</td>"
            + "".join(_html_cell(cells[j], j in table.names) for j in group)
            + "</tr>"
            for label, cells in table.rows
        )
        parts.append(
            f'<div class="frame"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )
    parts += [f'<p class="note">{prose(n)}</p>' for n in table.notes]
    return "\n".join(parts)


def _name_class(j: int, table: Table) -> str:
    return ' class="name"' if j in table.names else ""


def _shown(cell: Cell) -> str:
    return f"{cell.text} {cell.mark}" if cell.mark else cell.text


def _html_cell(cell: Cell, name: bool) -> str:
    classes = [_MARK_CLASS[cell.mark]] if cell.mark in _MARK_CLASS else []
    if cell.text == NOT_A_CANDIDATE:
        classes.append("na")
    if name:
        classes.append("name")
    attrs = f' class="{" ".join(classes)}"' if classes else ""
    if cell.tip:
        attrs += f' title="{escape(cell.tip)}"'
    return f"<td{attrs}>{escape(_shown(cell))}</td>"


def definitions(terms: Sequence[tuple[str, str]]) -> str:
    """A glossary as a definition list: the term kept on one line, its meaning beside it."""
    items = "".join(f"<dt>{escape(t)}</dt><dd>{prose(m)}</dd>" for t, m in terms)
    return f'<dl class="glossary">{items}</dl>'


def bullet_list(items: Sequence[tuple[str, str]]) -> str:
    """A list of (bold lead, text) items."""
    lis = "".join(f"<li><b>{escape(lead)}</b>: {prose(text)}</li>" for lead, text in items)
    return f"<ul>{lis}</ul>"


def plot(svg: str) -> str:
    return f'<div class="plot">{svg}</div>' if svg else ""
