"""`ReplayResult.plot()`: policy values and gains as one SVG that shows inline in Jupyter.

Drawn with the report's forest plots (`replay.report_svg`), so no plotting library is needed:
the values of every policy on top, the gains and each message's effect vs no message (paired
differences, with a line at 0) below, each on its own x axis.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from replay.report_svg import ForestRow, Panel, Point, RefLine, forest_svg
from replay.results import ALL_TRIGGERS, Contrast, ReplayResult

LOGGING_POLICY = "logging"  # drawn as a reference line when it is a candidate
_SIZE = re.compile(r'<svg[^>]*?\bwidth="([\d.]+)"[^>]*?\bheight="([\d.]+)"')


@dataclass(frozen=True)
class SvgFigure:
    """SVG text that Jupyter draws (``_repr_svg_``); ``save`` writes it to a file."""

    svg: str

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: Path | str) -> Path:
        """Write the SVG to ``path`` (e.g. ``gains.svg``) and return the path."""
        out = Path(path)
        out.write_text(self.svg, encoding="utf-8")
        return out

    def __str__(self) -> str:
        return self.svg


def result_plot(
    result: ReplayResult,
    *,
    estimators: Sequence[str] | None = None,
    trigger: str = ALL_TRIGGERS,
) -> SvgFigure:
    """Values and contrasts of ``result`` at ``trigger`` (``*``: all triggers) by
    ``estimators`` (default: every one of the result); ValueError naming what exists when
    the estimators or the trigger are not in the result."""
    chosen = tuple(estimators) if estimators is not None else result.estimators
    unknown = [e for e in chosen if e not in result.estimators]
    if unknown or not chosen:
        raise ValueError(
            f"estimator(s) {unknown or list(chosen)} not in the result; it has "
            f"{list(result.estimators)}"
        )
    if trigger != ALL_TRIGGERS and trigger not in result.triggers:
        raise ValueError(
            f"trigger {trigger!r} not in the result; use '*' or one of {list(result.triggers)}"
        )
    where = "all triggers" if trigger == ALL_TRIGGERS else f"trigger {trigger}"
    parts = [_values(result, chosen, trigger, where)]
    contrasts = [c for c in result.contrasts if c.trigger == trigger and c.estimator in chosen]
    if contrasts:
        parts.append(_contrasts(result, contrasts, chosen, where))
    return SvgFigure(stack([p for p in parts if p]))


def _values(result: ReplayResult, estimators: Sequence[str], trigger: str, where: str) -> str:
    rows = {(r.policy, r.estimator): r for r in result.estimates if r.trigger == trigger}
    forest = tuple(
        ForestRow(
            policy,
            tuple(
                Point(e, r.value, r.low, r.high)
                for e in estimators
                if (r := rows.get((policy, e))) is not None
            ),
        )
        for policy in result.policies
    )
    if not any(row.points for row in forest):
        return ""
    refs = []
    logged = rows.get((LOGGING_POLICY, estimators[0]))
    if logged is not None and math.isfinite(logged.value):
        refs.append(RefLine(logged.value, f"{LOGGING_POLICY} ({estimators[0]})", "#8c564b"))
    return forest_svg(
        [Panel(where, forest)],
        title=f"Policy values with {result.confidence:.0%} intervals",
        series=estimators,
        refs=refs,
    )


def _contrasts(
    result: ReplayResult, contrasts: Sequence[Contrast], estimators: Sequence[str], where: str
) -> str:
    """Gains first (as listed), then effects (in action order); hollow where the interval
    covers 0."""
    labels = list(dict.fromkeys(_label(c) for c in contrasts if c.kind == "gain"))
    order = {a: i for i, a in enumerate(result.actions)}
    effects = sorted(
        (c for c in contrasts if c.kind == "effect"), key=lambda c: order.get(c.first, len(order))
    )
    labels += dict.fromkeys(_label(c) for c in effects)
    by_key = {(_label(c), c.estimator): c for c in contrasts}
    forest = tuple(
        ForestRow(
            label,
            tuple(
                Point(e, c.value, c.low, c.high, solid=not c.low <= 0.0 <= c.high)
                for e in estimators
                if (c := by_key.get((label, e))) is not None
            ),
        )
        for label in labels
    )
    return forest_svg(
        [Panel(where, forest)],
        title=f"Gains and effects with {result.confidence:.0%} intervals "
        "(filled: interval excludes 0)",
        series=estimators,
        refs=[RefLine(0.0, "0 (no difference)", dashed=False)],
    )


def _label(contrast: Contrast) -> str:
    """A gain by its name; an effect as "<message> vs <send nothing>"."""
    if contrast.kind == "gain":
        return contrast.name
    return f"{contrast.first} vs {contrast.second}"


def stack(svgs: Sequence[str]) -> str:
    """One SVG of ``svgs`` stacked top to bottom (each keeps its own axes); each must start
    with an ``<svg`` tag giving its width and height."""
    sizes = []
    for svg in svgs:
        match = _SIZE.match(svg)
        if match is None:
            raise ValueError("each part must start with <svg ... width=... height=...>")
        sizes.append((float(match.group(1)), float(match.group(2))))
    width = max((w for w, _ in sizes), default=0.0)
    height = sum(h for _, h in sizes)
    body = []
    y = 0.0
    for svg, (_, h) in zip(svgs, sizes, strict=True):
        body.append(f'<svg y="{y:.0f}"' + svg[len("<svg") :])
        y += h
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">\n' + "\n".join(body) + "\n</svg>"
    )
