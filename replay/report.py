"""What `nudge replay` shows: a console report, a self-contained HTML report and JSON.

Both reports read in the same order: a headline in words (the recommended estimator's best
policy, the gains with their intervals and verdicts), a plot of the gains, the overview by that
one estimator (policy values, the best policy and gains at each trigger, overlap diagnostics),
a glossary of the policy names, estimators and marks, then an appendix with every estimator and
every trigger, notes, and timings last. The tables are built once (`replay.report_tables`) and
rendered as text (`replay.report_text`) or HTML (`replay.report_html`), so both show the same
numbers; the HTML adds inline SVG plots (`replay.report_plots`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import orjson

from replay import report_html as web
from replay import report_plots as plots
from replay import report_tables as tables
from replay import report_text as text
from replay.report_words import (
    LOGGING_POLICY,
    glossary,
    headline,
    recommended,
)
from replay.results import ReplayResult

CONSOLE_WIDTH = 100

__all__ = [
    "CONSOLE_WIDTH",
    "LOGGING_POLICY",
    "console_table",
    "html_report",
    "write_html",
    "write_json",
]


# ---- public API ------------------------------------------------------------------------------


def console_table(result: ReplayResult, *, width: int = CONSOLE_WIDTH) -> str:
    """The text `nudge replay` prints: headline, gains chart, overview by the recommended
    estimator, glossary, then the appendix (every estimator, every trigger) and timings.

    No line is wider than ``width`` unless a single name is; names are never cut or broken.
    """
    estimator = recommended(result)
    out = text.wrap(f"Replay of {result.source or 'logged decisions'}", width)
    out += ["", *text.heading(f"Headline ({estimator}, {result.confidence:.0%} intervals)")]
    for s in headline(result):
        out += text.wrap(f"{s.lead}: {s.text}", width, "• ", "  ")
    out += ["", *text.heading("Data"), *_data_lines(result, width)]
    chart = text.bar_chart(
        plots.gain_groups(result, estimator),
        title=f"Gains and effects by {estimator} (reward per decision)",
        width=width,
    )
    if chart:
        out += ["", *chart]
    for _, table in _overview_tables(result, estimator):
        out += ["", *text.text_table(table, width)]
    out += _warning_lines(result, width)
    out += ["", *text.heading("Glossary")]
    for title, terms in glossary(result):
        out += [title, *text.definitions(terms, width)]
    out += ["", *text.heading("Appendix: every estimator, every trigger")]
    out += text.wrap(
        "Values only; every estimator's intervals and the policy values at each trigger are in "
        "the HTML report (--html) and the JSON (--json).",
        width,
    )
    for key, table in _appendix_tables(result, estimator, compact=True):
        if key != "by_trigger":
            out += ["", *text.text_table(table, width)]
    if result.notes:
        out += ["", "Notes"]
        for note in result.notes:
            out += text.wrap(note, width, "  ", "    ")
    out += _timing_lines(result, width)
    return "\n".join(out)


def write_html(result: ReplayResult, path: Path, *, logging_policy: str = LOGGING_POLICY) -> Path:
    """Write a self-contained HTML report (tables, inline SVG plots, no scripts) to path.

    ``logging_policy`` names the policy drawn as a reference line in the policy plots.
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
    estimator = recommended(result)
    source = escape(result.source or "logged decisions")
    data = "".join(f"<li>{web.prose(line)}</li>" for line in _data(result))
    body = [
        f"<h1>Replay of {source}</h1>",
        '<section class="headline">'
        f"<h2>Headline ({estimator}, {result.confidence:.0%} intervals)</h2>"
        f"{web.bullet_list([(s.lead, s.text) for s in headline(result)])}</section>",
        f'<ul class="meta">{data}</ul>',
        web.plot(plots.gains_plot(result, estimator)),
        *_html_overview(result, estimator, logging_policy),
        "<h2>Glossary</h2>",
        *(f"<h3>{escape(t)}</h3>{web.definitions(terms)}" for t, terms in glossary(result)),
        '<section class="appendix"><h2>Appendix: every estimator, every trigger</h2>',
        *_html_appendix(result, estimator, logging_policy),
        "</section>",
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html xmlns="http://www.w3.org/1999/xhtml" lang="en">',
            '<head><meta charset="utf-8"/>',
            '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
            f"<title>Replay: {source}</title>",
            f"<style>{web.CSS}</style></head>",
            "<body>",
            *(part for part in body if part),
            "</body></html>",
            "",
        ]
    )


def _html_overview(result: ReplayResult, estimator: str, logging_policy: str) -> list[str]:
    """The overview's tables, the policy plot under the values, then the warnings."""
    out = [f"<h2>Overview by {estimator}</h2>"]
    for key, table in _overview_tables(result, estimator):
        out.append(web.html_table(table))
        if key == "values":
            best_first = [label for label, _ in table.rows]
            out.append(
                web.plot(plots.policy_plot(result, (estimator,), logging_policy, best_first))
            )
    warnings = _warnings(result)
    if warnings:
        out.append(f'<div class="warn"><h3>Warnings</h3>{web.bullet_list(warnings)}</div>')
    return out


def _html_appendix(result: ReplayResult, estimator: str, logging_policy: str) -> list[str]:
    """Every estimator's tables with their plots, notes, and the timings last."""
    appendix_plots = {
        "estimates": lambda: plots.policy_plot(
            result, result.estimators, logging_policy, reference=estimator
        ),
        "by_trigger": lambda: plots.trigger_plot(result, estimator),
        "effects_by_trigger": lambda: plots.effects_plot(result, estimator),
    }
    out = []
    for key, table in _appendix_tables(result, estimator):
        out.append(web.html_table(table))
        if key in appendix_plots:
            out.append(web.plot(appendix_plots[key]()))
    if result.notes:
        items = "".join(f"<li>{web.prose(n)}</li>" for n in result.notes)
        out.append(f"<h3>Notes</h3><ul>{items}</ul>")
    timing_table, other = tables.timings(result)
    if timing_table.rows:
        out.append(web.html_table(timing_table))
    if other:
        out.append(f'<p class="note">{web.prose("Timings: " + "; ".join(other))}</p>')
    return out


# ---- sections, shared by console and HTML -----------------------------------------------------


def _data(result: ReplayResult) -> list[str]:
    """Events used and skipped by reason, the action vocabulary, triggers, policies, intervals."""
    skipped = sum(result.skipped.values())
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(result.skipped.items(), key=_by_count))
    methods = "/".join(dict.fromkeys(row.method for row in result.estimates)) or "none"
    return [
        f"events: {result.n_events:,} used; {skipped:,} skipped"
        + (f" ({reasons})" if reasons else ""),
        f"actions: {len(result.actions)} ({', '.join(result.actions)})",
        f"triggers: {len(result.triggers)}; policies: {len(result.policies)}; "
        f"estimators: {', '.join(result.estimators)}",
        f"intervals: {result.confidence:.0%} {methods}",
    ]


def _data_lines(result: ReplayResult, width: int) -> list[str]:
    return [line for item in _data(result) for line in text.wrap(item, width, "", "    ")]


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _overview_tables(result: ReplayResult, estimator: str) -> list[tuple[str, tables.Table]]:
    """Policy values, best policy and gains by trigger, diagnostics: those with rows."""
    found = [
        ("values", tables.policy_values(result, estimator)),
        ("by_trigger", tables.trigger_summary(result, estimator)),
        ("diagnostics", tables.diagnostics(result)),
    ]
    return [(key, t) for key, t in found if t.rows]


def _appendix_tables(
    result: ReplayResult, estimator: str, *, compact: bool = False
) -> list[tuple[str, tables.Table]]:
    """Every estimator's values, gains and effects (values alone if ``compact``); per-trigger
    values and effects; by key, which the HTML report uses to put each table's plot under it."""
    found = [
        ("estimates", tables.all_estimators(result, compact=compact)),
        ("gains", tables.contrasts_all(result, "gain", compact=compact)),
        ("effects", tables.contrasts_all(result, "effect", compact=compact)),
        ("by_trigger", tables.trigger_matrix(result, estimator)),
        ("effects_by_trigger", tables.effects_by_trigger(result, estimator)),
    ]
    return [(key, t) for key, t in found if t.rows]


def _warnings(result: ReplayResult) -> list[tuple[str, str]]:
    return [(d.policy, w) for d in result.diagnostics for w in d.warnings]


def _warning_lines(result: ReplayResult, width: int) -> list[str]:
    """Each policy's diagnostic warnings, wrapped to ``width`` under a `warnings` heading."""
    warnings = _warnings(result)
    if not warnings:
        return []
    out = ["warnings"]
    for policy, message in warnings:
        out += text.wrap(f"! {policy}: {message}", width, "  ", "      ")
    return out


def _timing_lines(result: ReplayResult, width: int) -> list[str]:
    """The timings table and the other steps' seconds, last."""
    table, other = tables.timings(result)
    out = ["", *text.text_table(table, width)] if table.rows else []
    if other:
        out += ["", *text.wrap("other steps: " + ", ".join(other), width, "", "  ")]
    return out
