"""The report's tables as plain cells, built once and rendered as text or HTML.

Each table says what its marks mean in its notes; a cell that has no estimate (a message that
was not a candidate at a trigger) reads `n/a`, never `-`, which is a sign.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from replay.report_svg import ABOVE, BELOW, sign_mark
from replay.report_words import BEST, FLAG, NOT_A_CANDIDATE, best_policies, fmt_interval, overall
from replay.results import ALL_TRIGGERS, Contrast, EstimateRow, ReplayResult

BEST_NOTE = f"{BEST} best"
SIGN_NOTE = f"{ABOVE} interval above 0, {BELOW} below 0, no mark: the interval includes 0"
NA_NOTE = f"{NOT_A_CANDIDATE}: not a candidate there"


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, a one-character mark (★ ▲ ▼ !) and, for compact cells, the
    full value with its interval (the HTML shows it on hover)."""

    text: str
    mark: str = ""
    tip: str = ""


@dataclass(frozen=True)
class Table:
    """A titled table: column headers, labelled rows of cells, notes printed under it.

    ``names`` are the columns holding names (left-aligned); the others hold numbers.
    """

    title: str
    corner: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Cell, ...]], ...]
    notes: tuple[str, ...] = ()
    names: frozenset[int] = frozenset()


def column_groups(
    label: float, widths: Sequence[float], budget: float, gap: float
) -> list[list[int]]:
    """Column indices split into as few consecutive groups as fit ``budget`` beside the label
    column (each column takes ``gap`` more), balanced so that no group is left with a column
    or two; a column wider than the budget stands alone."""
    fewest = len(_pack(label, widths, budget, gap))
    # The narrowest budget that still needs no more groups: bisect between the widest column
    # and the given budget (widths are estimates, so 1/64 of a unit is precision enough).
    low, high = label + gap + max(widths, default=0.0), max(budget, label + gap)
    while high - low > 1 / 64:
        middle = (low + high) / 2
        if len(_pack(label, widths, middle, gap)) <= fewest:
            high = middle
        else:
            low = middle
    return _pack(label, widths, high, gap)


def _pack(label: float, widths: Sequence[float], budget: float, gap: float) -> list[list[int]]:
    """Greedy: each column joins the current group unless that would exceed ``budget``."""
    groups: list[list[int]] = [[]]
    used = label
    for j, w in enumerate(widths):
        if groups[-1] and used + gap + w > budget:
            groups.append([])
            used = label
        groups[-1].append(j)
        used += gap + w
    return groups


# ---- overview: one estimator ------------------------------------------------------------------


def policy_values(result: ReplayResult, estimator: str) -> Table:
    """Every policy's overall value by one estimator, best first."""
    rows = overall(result, estimator)
    best = set(best_policies(rows))
    order = sorted(rows.values(), key=lambda r: -r.value if math.isfinite(r.value) else math.inf)
    return Table(
        title=f"Policy values by {estimator} (reward per decision, value [low, high])",
        corner="policy",
        columns=(estimator,),
        rows=tuple(
            (r.policy, (Cell(fmt_interval(r), BEST if r.policy in best else ""),)) for r in order
        ),
        notes=(f"{BEST_NOTE}; {result.confidence:.0%} intervals",),
    )


def trigger_summary(result: ReplayResult, estimator: str) -> Table:
    """At each trigger: the best policy and its value, and each gain (compact)."""
    gains = _by_trigger(result, "gain", estimator)
    names = contrast_names(result, [c for by in gains.values() for c in by.values()])
    rows = []
    for trigger in result.triggers:
        at = {p: r for (p, e), r in rows_by(result.estimates, trigger).items() if e == estimator}
        best = best_policies(at)
        if not best:
            continue
        who = best[0] + (f" +{len(best) - 1} tied" if len(best) > 1 else "")
        top = at[best[0]]
        cells = (
            Cell(who),
            Cell(f"{top.value:.4f}", tip=fmt_interval(top)),
            *(_compact(gains.get(trigger, {}).get(name)) for name in names),
        )
        rows.append((trigger, cells))
    notes = ["+k tied: k more policies earn as much there"]
    if names:
        notes.append(f"gains: {SIGN_NOTE}")
    return Table(
        title=f"By trigger ({estimator}): the best policy and the gains at each trigger",
        corner="trigger",
        columns=("best policy", "value", *names),
        rows=tuple(rows),
        notes=tuple(notes),
        names=frozenset({0}),
    )


# ---- per trigger, in detail -------------------------------------------------------------------


def trigger_matrix(result: ReplayResult, estimator: str) -> Table:
    """Rows triggers, columns policies, one estimator, values only; ★ the best at each."""
    rows_list = []
    for trigger in result.triggers:
        rows = {p: r for (p, e), r in rows_by(result.estimates, trigger).items() if e == estimator}
        if not rows:
            continue
        best = set(best_policies(rows))
        n = max(r.n for r in rows.values())
        cells = tuple(
            Cell(f"{r.value:.4f}", BEST if p in best else "", fmt_interval(r))
            if (r := rows.get(p)) is not None
            else Cell(NOT_A_CANDIDATE)
            for p in result.policies
        )
        rows_list.append((trigger, (Cell(f"{n:,}"), *cells)))
    return Table(
        title=f"Policy values by trigger ({estimator})",
        corner="trigger",
        columns=("decisions", *result.policies),
        rows=tuple(rows_list),
        notes=(f"{BEST_NOTE} at the trigger",),
    )


def effects_by_trigger(result: ReplayResult, estimator: str) -> Table:
    """Each message minus sending nothing at each trigger (compact), one estimator."""
    by_trigger = _by_trigger(result, "effect", estimator)
    names = contrast_names(result, [c for by in by_trigger.values() for c in by.values()])
    triggers = ordered(result.triggers, by_trigger)
    return Table(
        title=f"Effect of each message vs sending nothing, by trigger ({estimator})",
        corner="trigger",
        columns=names,
        rows=tuple(
            (t, tuple(_compact(by_trigger[t].get(name)) for name in names)) for t in triggers
        ),
        notes=(SIGN_NOTE, NA_NOTE),
    )


def diagnostics(result: ReplayResult) -> Table:
    """Overlap of each policy with the logged data: ESS, weight range, zero-support share."""
    rows = tuple(
        (
            d.policy,
            (
                Cell(f"{d.n:,}"),
                Cell(f"{d.ess:,.1f}"),
                Cell(f"{d.ess / d.n:.1%}" if d.n else NOT_A_CANDIDATE),
                Cell(f"{d.max_weight:.2f}"),
                Cell(f"{d.zero_support_share:.1%}"),
                Cell(str(len(d.warnings)) if d.warnings else "", FLAG if d.warnings else ""),
            ),
        )
        for d in result.diagnostics
    )
    return Table(
        title="Overlap diagnostics (unclipped importance weights)",
        corner="policy",
        columns=("n", "ESS", "ESS/n", "max weight", "zero support", "warnings"),
        rows=rows,
        notes=(
            "ESS: effective sample size, the decisions the estimate effectively rests on; zero "
            "support: share of decisions whose logged action the policy would never take",
        ),
    )


# ---- appendix: every estimator ----------------------------------------------------------------


def all_estimators(result: ReplayResult, *, compact: bool = False) -> Table:
    """Rows policies, columns estimators: value [low, high] over every trigger (the value
    alone if ``compact``); ★ the best."""
    rows = rows_by(result.estimates, ALL_TRIGGERS)
    best = {e: set(best_policies(overall(result, e))) for e in result.estimators}
    return Table(
        title="Policy values by every estimator" + ("" if compact else " (value [low, high])"),
        corner="policy",
        columns=result.estimators,
        rows=tuple(
            (
                policy,
                tuple(
                    _estimate_cell(rows.get((policy, e)), policy in best[e], compact)
                    for e in result.estimators
                ),
            )
            for policy in result.policies
        ),
        notes=(f"{BEST_NOTE} by each estimator",),
    )


def contrasts_all(result: ReplayResult, kind: str, *, compact: bool = False) -> Table:
    """Gains or effects over every trigger: rows names, columns estimators (values alone if
    ``compact``)."""
    contrasts = [c for c in result.contrasts if c.kind == kind and c.trigger == ALL_TRIGGERS]
    estimators = ordered(result.estimators, (c.estimator for c in contrasts))
    names = contrast_names(result, contrasts)
    by_key = {(label_of(c), c.estimator): c for c in contrasts}
    cell = _compact if compact else _full
    rows = tuple((name, tuple(cell(by_key.get((name, e))) for e in estimators)) for name in names)
    if kind == "gain":
        title = "Gains by every estimator" + ("" if compact else " (value [low, high])")
        pairs = {c.name: f"{c.name} = {c.first} − {c.second}" for c in contrasts}
        notes = (*pairs.values(), SIGN_NOTE)
    else:
        title = "Effect of each message vs sending nothing, by every estimator"
        seconds = sorted({c.second for c in contrasts})
        notes = (f"each message compared with sending {', '.join(seconds)}", SIGN_NOTE)
    corner = "gain" if kind == "gain" else "message"
    return Table(title=title, corner=corner, columns=estimators, rows=rows, notes=notes)


def timings(result: ReplayResult) -> tuple[Table, tuple[str, ...]]:
    """Seconds per policy (computing its choices, then estimating), and the other steps."""
    per_policy: dict[str, dict[str, float]] = {}
    other = []
    for key, seconds in result.timings_s.items():
        step, _, policy = key.partition(" ")
        if step in ("policy", "estimate") and policy in result.policies:
            per_policy.setdefault(policy, {})[step] = seconds
        else:
            other.append(f"{key} {seconds:.2f} s")
    rows = tuple(
        (p, tuple(_seconds(steps.get(k)) for k in ("policy", "estimate")))
        for p, steps in per_policy.items()
    )
    table = Table(
        title="Timings (seconds)",
        corner="policy",
        columns=("choices", "estimates"),
        rows=rows,
        notes=(
            "choices: the policy's probabilities on the log (training, for learned policies); "
            "estimates: every estimator, overall and per trigger",
        ),
    )
    return table, tuple(other)


def _seconds(value: float | None) -> Cell:
    return Cell("" if value is None else f"{value:.2f}")


# ---- helpers ------------------------------------------------------------------------------------


def _by_trigger(result: ReplayResult, kind: str, estimator: str) -> dict[str, dict[str, Contrast]]:
    """Per-trigger contrasts of one kind and estimator: trigger -> label -> contrast."""
    out: dict[str, dict[str, Contrast]] = {}
    for c in result.contrasts:
        if c.kind == kind and c.trigger != ALL_TRIGGERS and c.estimator == estimator:
            out.setdefault(c.trigger, {})[label_of(c)] = c
    return out


def label_of(contrast: Contrast) -> str:
    """How a contrast is named in tables: a gain by its name, an effect by its message."""
    return contrast.name if contrast.kind == "gain" else contrast.first


def contrast_names(result: ReplayResult, contrasts: Sequence[Contrast]) -> tuple[str, ...]:
    """Labels in a stable order: effects in action-vocabulary order, gains as first seen."""
    labels = [label_of(c) for c in contrasts]
    order = {a: i for i, a in enumerate(result.actions)}
    unique = list(dict.fromkeys(labels))
    if contrasts and contrasts[0].kind == "effect":
        seen = {label: i for i, label in enumerate(unique)}
        unique.sort(key=lambda a: (order.get(a, len(order)), seen[a]))
    return tuple(unique)


def ordered(preferred: Sequence[str], present: Iterable[str]) -> tuple[str, ...]:
    """The present values, in the order of ``preferred`` and then as first seen."""
    seen = dict.fromkeys(present)
    return tuple(v for v in preferred if v in seen) + tuple(v for v in seen if v not in preferred)


def rows_by(estimates: Iterable[EstimateRow], trigger: str) -> dict[tuple[str, str], EstimateRow]:
    """The estimate rows at one trigger, by (policy, estimator)."""
    return {(r.policy, r.estimator): r for r in estimates if r.trigger == trigger}


def _estimate_cell(row: EstimateRow | None, best: bool, compact: bool) -> Cell:
    if row is None:
        return Cell(NOT_A_CANDIDATE)
    mark = BEST if best else ""
    if compact:
        return Cell(f"{row.value:.4f}", mark, fmt_interval(row))
    return Cell(fmt_interval(row), mark)


def _full(contrast: Contrast | None) -> Cell:
    if contrast is None:
        return Cell(NOT_A_CANDIDATE)
    return Cell(fmt_interval(contrast, signed=True), sign_mark(contrast.low, contrast.high))


def _compact(contrast: Contrast | None) -> Cell:
    if contrast is None:
        return Cell(NOT_A_CANDIDATE)
    return Cell(
        f"{contrast.value:+.4f}",
        sign_mark(contrast.low, contrast.high),
        fmt_interval(contrast, signed=True),
    )
