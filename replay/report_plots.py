"""The HTML report's plots, from a result: the gains bars, policy forests, per-trigger panels.

Each returns inline SVG text (from `replay.report_svg`), or "" when there is nothing to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from replay.report_svg import (
    Bar,
    BarGroup,
    ForestRow,
    Panel,
    Point,
    RefLine,
    bars_svg,
    forest_svg,
    sign_mark,
)
from replay.report_tables import contrast_names, label_of, ordered, rows_by
from replay.results import ALL_TRIGGERS, ReplayResult


def gain_groups(result: ReplayResult, estimator: str) -> tuple[BarGroup, ...]:
    """The gains, then each message's effect vs sending nothing, over every trigger."""
    groups = []
    for kind, title in (("gain", "Gains"), ("effect", "Each message vs sending nothing")):
        found = [
            c
            for c in result.contrasts
            if c.kind == kind and c.trigger == ALL_TRIGGERS and c.estimator == estimator
        ]
        by_label = {label_of(c): c for c in found}
        bars = tuple(
            Bar(name, by_label[name].value, by_label[name].low, by_label[name].high)
            for name in contrast_names(result, found)
        )
        if bars:
            groups.append(BarGroup(title, bars))
    return tuple(groups)


def gains_plot(result: ReplayResult, estimator: str) -> str:
    """Bars of the gains and effects by ``estimator`` with their intervals."""
    groups = gain_groups(result, estimator)
    if not groups:
        return ""
    return bars_svg(
        groups,
        title=f"Gains and effects by {estimator} (reward per decision, "
        f"{result.confidence:.0%} intervals)",
    )


def _point(series: str, value: float, low: float, high: float, solid: bool = True) -> Point:
    return Point(series=series, value=value, low=low, high=high, solid=solid)


def policy_plot(
    result: ReplayResult,
    estimators: Sequence[str],
    logging_policy: str,
    order: Sequence[str] | None = None,
    reference: str | None = None,
) -> str:
    """Every policy's overall estimate by ``estimators`` (in ``order``), with a line at the
    logging policy's value by ``reference`` (default: the first estimator) and at 0."""
    rows = rows_by(result.estimates, ALL_TRIGGERS)
    forest = tuple(
        ForestRow(
            policy,
            tuple(
                _point(e, r.value, r.low, r.high)
                for e in estimators
                if (r := rows.get((policy, e))) is not None
            ),
        )
        for policy in (order or result.policies)
    )
    if not estimators or not any(row.points for row in forest):
        return ""
    refs = []
    by = reference or estimators[0]
    logged = rows.get((logging_policy, by))
    if logged is not None and math.isfinite(logged.value):
        refs.append(RefLine(logged.value, f"{logging_policy} ({by})", colour="#8c564b"))
    if _zero_nearby(forest):
        refs.append(RefLine(0.0, "0", dashed=False))
    which = estimators[0] if len(estimators) == 1 else "every estimator"
    return forest_svg(
        [Panel("all triggers", forest)],
        title=f"Policy values by {which} ({result.confidence:.0%} intervals)",
        series=estimators,
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


def trigger_plot(result: ReplayResult, estimator: str) -> str:
    """Small multiples: one panel per trigger, every policy by ``estimator``."""
    panels = []
    for trigger in result.triggers:
        rows = rows_by(result.estimates, trigger)
        forest = tuple(
            ForestRow(p, (_point(estimator, r.value, r.low, r.high),))
            for p in result.policies
            if (r := rows.get((p, estimator))) is not None
        )
        if forest:
            panels.append(Panel(trigger, forest))
    if not panels:
        return ""
    return forest_svg(
        panels,
        title=f"Policy values by trigger ({estimator}, {result.confidence:.0%} intervals)",
        series=(estimator,),
        columns=2,
    )


def effects_plot(result: ReplayResult, estimator: str) -> str:
    """Each message minus sending nothing: all triggers (every estimator), then per trigger
    (``estimator``); hollow markers where the interval covers 0."""
    effects = [c for c in result.contrasts if c.kind == "effect"]
    if not effects:
        return ""
    names = contrast_names(result, effects)
    per_trigger = (c.trigger for c in effects if c.trigger != ALL_TRIGGERS)
    triggers = (ALL_TRIGGERS, *ordered(result.triggers, per_trigger))
    panels = []
    for trigger in triggers:
        estimators = result.estimators if trigger == ALL_TRIGGERS else (estimator,)
        by_key = {(c.first, c.estimator): c for c in effects if c.trigger == trigger}
        forest = tuple(
            ForestRow(
                name,
                tuple(
                    _point(e, c.value, c.low, c.high, solid=sign_mark(c.low, c.high) != "")
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
