"""What `nudge replay` shows: a console table, a self-contained HTML report and JSON.

The console and HTML render the same tables (built once here as plain cells), so both show
the same numbers; the HTML adds inline SVG forest plots from `replay.report_svg`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import orjson

from replay.report_svg import ForestRow, Panel, Point, RefLine, forest_svg
from replay.results import ALL_TRIGGERS, Contrast, EstimateRow, ReplayResult

LOGGING_POLICY = "logging"  # the policy whose value is drawn as a reference line, if present
CONSOLE_WIDTH = 100
_LABEL_CHARS = 32  # row labels longer than this are cut in the console
MINUS = "−"  # marks an effect whose interval lies below 0 (U+2212, unlike the value's "-")


@dataclass(frozen=True)
class _Cell:
    """A table cell: its text and a one-character mark (best *, above 0 +, below 0 −)."""

    text: str
    mark: str = ""


@dataclass(frozen=True)
class _Table:
    """A titled table: column headers, labelled rows of cells, notes printed under it."""

    title: str
    corner: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[_Cell, ...]], ...]
    notes: tuple[str, ...] = ()


# ---- public API ------------------------------------------------------------------------------


def console_table(result: ReplayResult, *, width: int = CONSOLE_WIDTH) -> str:
    """The text `nudge replay` prints: header, estimates, diagnostics, warnings, contrasts.

    Tables wider than ``width`` are split into column groups; trigger-level rows are shown
    only for the estimator the result lists first, to keep the output short.
    """
    out = [part for line in _header_lines(result) for part in textwrap.wrap(line, width) or [""]]
    for key, table in _tables(result).items():
        out += ["", *_text_table(table, width)]
        if key == "diagnostics":
            out += _warning_lines(result, width)
    if result.notes:
        out += ["", "notes"]
        for note in result.notes:
            out += textwrap.wrap(note, width, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(out)


def write_html(result: ReplayResult, path: Path, *, logging_policy: str = LOGGING_POLICY) -> Path:
    """Write a self-contained HTML report (tables, inline SVG forest plots, no scripts) to path.

    ``logging_policy`` names the policy drawn as a reference line in the policy plot.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_report(result, logging_policy=logging_policy), encoding="utf-8")
    return path


def write_json(result: ReplayResult, path: Path) -> Path:
    """Write ``result.to_json()`` with orjson, indented by 2 (NaN becomes null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    return path


def html_report(result: ReplayResult, *, logging_policy: str = LOGGING_POLICY) -> str:
    """The HTML text of `write_html`: XHTML-compatible so that an XML parser accepts it."""
    tables = _tables(result)
    body = [f"<h1>Replay of {escape(result.source or 'logged decisions')}</h1>"]
    body.append("<ul>" + "".join(f"<li>{escape(s)}</li>" for s in _header_lines(result)) + "</ul>")
    warnings = _warnings(result)
    if warnings:
        items = "".join(
            f"<li><b>{escape(policy)}</b>: {escape(text)}</li>" for policy, text in warnings
        )
        body.append(f'<div class="warn"><h2>Warnings</h2><ul>{items}</ul></div>')
    plots = {
        "estimates": _policy_plot(result, logging_policy),
        "by_trigger": _trigger_plot(result),
        "effects_by_trigger": _effects_plot(result),
    }
    for key in _SECTIONS:
        if key in tables:
            body.append(_html_table(tables[key]))
        if plots.get(key):
            body.append(f'<div class="plot">{plots[key]}</div>')
    if result.notes:
        body.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in result.notes) + "</ul>"
        )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html xmlns="http://www.w3.org/1999/xhtml" lang="en">',
            '<head><meta charset="utf-8"/>',
            f"<title>Replay: {escape(result.source or 'logged decisions')}</title>",
            f"<style>{_CSS}</style></head>",
            "<body>",
            *body,
            "</body></html>",
            "",
        ]
    )


# ---- the tables, shared by console and HTML ---------------------------------------------------


def _header_lines(result: ReplayResult) -> list[str]:
    """Source, events used and skipped by reason, vocabulary sizes, interval settings."""
    skipped = sum(result.skipped.values())
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(result.skipped.items(), key=_by_count))
    methods = "/".join(dict.fromkeys(row.method for row in result.estimates)) or "none"
    lines = [
        f"replay of {result.source or 'logged decisions'}",
        f"events: {result.n_events:,} used; {skipped:,} skipped"
        + (f" ({reasons})" if reasons else ""),
        f"actions: {len(result.actions)} ({', '.join(result.actions)})",
        f"triggers: {len(result.triggers)}; policies: {len(result.policies)}",
        f"intervals: {result.confidence:.0%} {methods}",
    ]
    if result.timings_s:
        lines.append("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings_s.items()))
    return lines


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


_SECTIONS = (
    "estimates",
    "by_trigger",
    "diagnostics",
    "gains",
    "gains_by_trigger",
    "effects",
    "effects_by_trigger",
)


def _tables(result: ReplayResult) -> dict[str, _Table]:
    """Every table of the report by section, in print order; tables without rows left out."""
    first = result.estimators[0] if result.estimators else ""
    tables = {
        "estimates": _estimates_table(result),
        "by_trigger": _trigger_table(result, first),
        "diagnostics": _diagnostics_table(result),
        "gains": _contrast_table(result, "gain"),
        "gains_by_trigger": _contrast_by_trigger(result, "gain", first),
        "effects": _contrast_table(result, "effect"),
        "effects_by_trigger": _contrast_by_trigger(result, "effect", first),
    }
    return {key: table for key, table in tables.items() if table.rows}


def _estimates_table(result: ReplayResult) -> _Table:
    """Rows policies, columns estimators: value [low, high] over every trigger; * the best."""
    rows = _rows_by(result.estimates, ALL_TRIGGERS)
    best = {e: _best(rows, e) for e in result.estimators}
    return _Table(
        title="Policy values (value [low, high]; * best per estimator)",
        corner="policy",
        columns=result.estimators,
        rows=tuple(
            (
                policy,
                tuple(
                    _estimate_cell(rows.get((policy, e)), policy in best[e])
                    for e in result.estimators
                ),
            )
            for policy in result.policies
        ),
    )


def _trigger_table(result: ReplayResult, estimator: str) -> _Table:
    """Rows triggers, columns policies, one estimator; * the best policy at each trigger."""
    rows_list = []
    for trigger in result.triggers:
        rows = _rows_by(result.estimates, trigger)
        if not rows:
            continue
        best = _best(rows, estimator)
        n = max((r.n for r in rows.values()), default=0)
        cells = tuple(_estimate_cell(rows.get((p, estimator)), p in best) for p in result.policies)
        rows_list.append((trigger, (_Cell(f"{n:,}"), *cells)))
    return _Table(
        title=f"Policy values by trigger ({estimator}; * best per trigger)",
        corner="trigger",
        columns=("n", *result.policies),
        rows=tuple(rows_list),
    )


def _diagnostics_table(result: ReplayResult) -> _Table:
    """Overlap of each policy with the logged data: ESS, weight range, zero-support share."""
    rows = tuple(
        (
            d.policy,
            (
                _Cell(f"{d.n:,}"),
                _Cell(f"{d.ess:,.1f}"),
                _Cell(f"{d.ess / d.n:.1%}" if d.n else "-"),
                _Cell(f"{d.max_weight:.2f}"),
                _Cell(f"{d.zero_support_share:.1%}"),
                _Cell(str(len(d.warnings)) if d.warnings else "", "!" if d.warnings else ""),
            ),
        )
        for d in result.diagnostics
    )
    return _Table(
        title="Overlap diagnostics (unclipped importance weights)",
        corner="policy",
        columns=("n", "ESS", "ESS/n", "max weight", "zero support", "warnings"),
        rows=rows,
    )


def _contrast_table(result: ReplayResult, kind: str) -> _Table:
    """Gains or effects over every trigger: rows names, columns estimators; marks + / −."""
    contrasts = [c for c in result.contrasts if c.kind == kind and c.trigger == ALL_TRIGGERS]
    estimators = _ordered(result.estimators, (c.estimator for c in contrasts))
    names = _contrast_names(result, contrasts)
    by_key = {(_label(c), c.estimator): c for c in contrasts}
    rows = tuple(
        (name, tuple(_contrast_cell(by_key.get((name, e))) for e in estimators)) for name in names
    )
    if kind == "gain":
        title = "Gains (first − second, value [low, high]; + / − interval excludes 0)"
        pairs = {c.name: f"{c.name} = {c.first} − {c.second}" for c in contrasts}
        notes = tuple(pairs.values())
    else:
        title = "Effects vs no message (message − nothing; + / − interval excludes 0)"
        seconds = sorted({c.second for c in contrasts})
        notes = (f"each message compared with sending {', '.join(seconds)}",) if seconds else ()
    corner = "gain" if kind == "gain" else "message"
    return _Table(title=title, corner=corner, columns=estimators, rows=rows, notes=notes)


def _contrast_by_trigger(result: ReplayResult, kind: str, estimator: str) -> _Table:
    """Gains or effects per trigger, compact (value and mark), for one estimator."""
    contrasts = [
        c
        for c in result.contrasts
        if c.kind == kind and c.trigger != ALL_TRIGGERS and c.estimator == estimator
    ]
    names = _contrast_names(result, contrasts)
    by_key = {(c.trigger, _label(c)): c for c in contrasts}
    triggers = _ordered(result.triggers, (c.trigger for c in contrasts))
    rows = tuple(
        (trigger, tuple(_contrast_cell(by_key.get((trigger, n)), compact=True) for n in names))
        for trigger in triggers
    )
    what = "Gains" if kind == "gain" else "Effects vs no message"
    return _Table(
        title=f"{what} by trigger ({estimator})", corner="trigger", columns=names, rows=rows
    )


def _label(contrast: Contrast) -> str:
    """How a contrast is named in tables: a gain by its name, an effect by its message."""
    return contrast.name if contrast.kind == "gain" else contrast.first


def _contrast_names(result: ReplayResult, contrasts: Sequence[Contrast]) -> tuple[str, ...]:
    """Labels in a stable order: effects in action-vocabulary order, gains as first seen."""
    labels = [_label(c) for c in contrasts]
    order = {a: i for i, a in enumerate(result.actions)}
    unique = list(dict.fromkeys(labels))
    if contrasts and contrasts[0].kind == "effect":
        seen = {label: i for i, label in enumerate(unique)}
        unique.sort(key=lambda a: (order.get(a, len(order)), seen[a]))
    return tuple(unique)


def _ordered(preferred: Sequence[str], present: Iterable[str]) -> tuple[str, ...]:
    """The present values, in the order of ``preferred`` and then as first seen."""
    seen = dict.fromkeys(present)
    return tuple(v for v in preferred if v in seen) + tuple(v for v in seen if v not in preferred)


def _rows_by(estimates: Iterable[EstimateRow], trigger: str) -> dict[tuple[str, str], EstimateRow]:
    """The estimate rows at one trigger, by (policy, estimator)."""
    return {(r.policy, r.estimator): r for r in estimates if r.trigger == trigger}


def _best(rows: dict[tuple[str, str], EstimateRow], estimator: str) -> set[str]:
    """The policies with the highest finite value by ``estimator`` (all of them on a tie)."""
    values = {p: r.value for (p, e), r in rows.items() if e == estimator and math.isfinite(r.value)}
    if not values:
        return set()
    top = max(values.values())
    return {p for p, v in values.items() if v == top}


def _estimate_cell(row: EstimateRow | None, best: bool) -> _Cell:
    if row is None:
        return _Cell("-")
    return _Cell(f"{row.value:.4f} [{row.low:.4f}, {row.high:.4f}]", "*" if best else "")


def _contrast_cell(contrast: Contrast | None, *, compact: bool = False) -> _Cell:
    if contrast is None:
        return _Cell("-")
    mark = _sign_mark(contrast.low, contrast.high)
    if compact:
        return _Cell(f"{contrast.value:+.4f}", mark)
    return _Cell(f"{contrast.value:+.4f} [{contrast.low:+.4f}, {contrast.high:+.4f}]", mark)


def _sign_mark(low: float, high: float) -> str:
    """+ when the interval lies above 0, − when below, empty when it covers 0 (or is nan)."""
    if low > 0:
        return "+"
    if high < 0:
        return MINUS
    return ""


def _warnings(result: ReplayResult) -> list[tuple[str, str]]:
    return [(d.policy, text) for d in result.diagnostics for text in d.warnings]


def _warning_lines(result: ReplayResult, width: int) -> list[str]:
    """Each policy's diagnostic warnings, wrapped to ``width`` under a `warnings` heading."""
    warnings = _warnings(result)
    if not warnings:
        return []
    out = ["warnings"]
    for policy, text in warnings:
        out += textwrap.wrap(
            f"! {policy}: {text}", width, initial_indent="  ", subsequent_indent="      "
        )
    return out


# ---- text rendering --------------------------------------------------------------------------


def _text_table(table: _Table, width: int) -> list[str]:
    """The table as text lines, its columns split into groups that fit ``width``."""
    label_w = min(_LABEL_CHARS, max(len(table.corner), *(len(label) for label, _ in table.rows)))
    texts = [[_cell_text(c) for c in cells] for _, cells in table.rows]
    # Headers carry the two-character mark slot of the cells so they align with the numbers.
    heads = [f"{name}  " for name in table.columns]
    col_w = [max(len(head), *(len(row[j]) for row in texts)) for j, head in enumerate(heads)]
    groups: list[list[int]] = [[]]
    used = label_w
    for j, w in enumerate(col_w):
        if groups[-1] and used + 2 + w > width:
            groups.append([])
            used = label_w
        groups[-1].append(j)
        used += 2 + w
    lines = [table.title]
    for g, group in enumerate(groups):
        if g:
            lines.append("")
        head = f"{_clip(table.corner, label_w):<{label_w}}"
        lines.append(head + "".join(f"  {heads[j]:>{col_w[j]}}" for j in group))
        for (label, _), row in zip(table.rows, texts, strict=True):
            cells = "".join(f"  {row[j]:>{col_w[j]}}" for j in group)
            lines.append(f"{_clip(label, label_w):<{label_w}}{cells}")
    lines += [f"  {note}" for note in table.notes]
    return [line.rstrip() for line in lines]


def _cell_text(cell: _Cell) -> str:
    # A blank in place of a missing mark keeps the numbers of a column aligned.
    return f"{cell.text} {cell.mark or ' '}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- HTML rendering --------------------------------------------------------------------------

_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right;"
    "font-variant-numeric:tabular-nums;white-space:nowrap}"
    "th:first-child,td:first-child{text-align:left}"
    "caption{text-align:left;font-weight:bold;padding:4px 0}"
    ".best{font-weight:bold}.pos{color:#2ca02c;font-weight:bold}"
    ".neg{color:#d62728;font-weight:bold}"
    ".warn{background:#fff3cd;border-left:4px solid #e0a800;padding:0.3em 1em;margin:1em 0}"
    ".flag{background:#fff3cd}.note{color:#555;font-size:90%}"
)
_MARK_CLASS = {"*": "best", "+": "pos", MINUS: "neg", "!": "flag"}


def _html_table(table: _Table) -> str:
    """The table as an HTML table; marked cells get a class (best, pos, neg, flag)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in (table.corner, *table.columns))
    body = []
    for label, cells in table.rows:
        tds = "".join(_html_cell(c) for c in cells)
        body.append(f"<tr><td>{escape(label)}</td>{tds}</tr>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in table.notes)
    return (
        f"<table><caption>{escape(table.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{notes}"
    )


def _html_cell(cell: _Cell) -> str:
    css = _MARK_CLASS.get(cell.mark)
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{escape(cell.text)}{escape(cell.mark)}</td>"


# ---- plots -----------------------------------------------------------------------------------


def _point(series: str, value: float, low: float, high: float, solid: bool = True) -> Point:
    return Point(series=series, value=value, low=low, high=high, solid=solid)


def _policy_plot(result: ReplayResult, logging_policy: str) -> str:
    """Every policy's overall estimate by every estimator, with logging-policy and 0 lines."""
    rows = _rows_by(result.estimates, ALL_TRIGGERS)
    forest = tuple(
        ForestRow(
            policy,
            tuple(
                _point(e, r.value, r.low, r.high)
                for e in result.estimators
                if (r := rows.get((policy, e))) is not None
            ),
        )
        for policy in result.policies
    )
    if not any(row.points for row in forest):
        return ""
    refs = []
    first = result.estimators[0]  # rows exist, so estimators is not empty
    logged = rows.get((logging_policy, first))
    if logged is not None and math.isfinite(logged.value):
        refs.append(RefLine(logged.value, f"{logging_policy} ({first})", colour="#8c564b"))
    if _zero_nearby(forest):
        refs.append(RefLine(0.0, "0", dashed=False))
    return forest_svg(
        [Panel("all triggers", forest)],
        title=f"Policy values with {result.confidence:.0%} intervals",
        series=result.estimators,
        refs=refs,
    )


def _zero_nearby(rows: Sequence[ForestRow]) -> bool:
    """Whether 0 lies within one data span of the intervals (else a 0 line squashes them)."""
    values = [v for r in rows for p in r.points for v in (p.low, p.high) if math.isfinite(v)]
    if not values:
        return False
    low, high = min(values), max(values)
    span = max(high - low, 1e-12)
    return low - span <= 0.0 <= high + span


def _trigger_plot(result: ReplayResult) -> str:
    """Small multiples: one panel per trigger, policies by the first-listed estimator."""
    if not result.estimators:
        return ""
    first = result.estimators[0]
    panels = []
    for trigger in result.triggers:
        rows = _rows_by(result.estimates, trigger)
        forest = tuple(
            ForestRow(p, (_point(first, r.value, r.low, r.high),))
            for p in result.policies
            if (r := rows.get((p, first))) is not None
        )
        if forest:
            panels.append(Panel(trigger, forest))
    if not panels:
        return ""
    return forest_svg(
        panels,
        title=f"Policy values by trigger ({first}, {result.confidence:.0%} intervals)",
        series=(first,),
        columns=2,
    )


def _effects_plot(result: ReplayResult) -> str:
    """Each message minus sending nothing: all triggers (every estimator), then per trigger
    (first-listed estimator); hollow markers where the interval covers 0."""
    effects = [c for c in result.contrasts if c.kind == "effect"]
    if not effects:
        return ""
    first = result.estimators[0] if result.estimators else effects[0].estimator
    names = _contrast_names(result, effects)
    per_trigger = (c.trigger for c in effects if c.trigger != ALL_TRIGGERS)
    triggers = (ALL_TRIGGERS, *_ordered(result.triggers, per_trigger))
    panels = []
    for trigger in triggers:
        estimators = result.estimators if trigger == ALL_TRIGGERS else (first,)
        by_key = {(c.first, c.estimator): c for c in effects if c.trigger == trigger}
        forest = tuple(
            ForestRow(
                name,
                tuple(
                    _point(e, c.value, c.low, c.high, solid=_sign_mark(c.low, c.high) != "")
                    for e in estimators
                    if (c := by_key.get((name, e))) is not None
                ),
            )
            for name in names
        )
        if any(row.points for row in forest):
            panels.append(Panel("all triggers" if trigger == ALL_TRIGGERS else trigger, forest))
    return forest_svg(
        panels,
        title=f"Effect of each message vs no message ({result.confidence:.0%} intervals; "
        "filled: interval excludes 0)",
        series=result.estimators,
        refs=[RefLine(0.0, "0 (no effect)", dashed=False)],
        columns=2 if len(panels) > 1 else 1,
    )
