"""The status page (`GET /`): one self-contained HTML page for the people who own the loop.

Policy version and age, decisions by why, the live value of the deployed policy next to
sending nothing and the best single message (the consumer's `bandit.live_value` estimates,
shipped in the snapshot manifest) as numbers and an inline SVG interval chart, and the pruning
table. No scripts, no external assets; every value from outside is escaped; it refreshes itself
every `REFRESH_S` seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from bandit.pruning import HELD, Evidence, PruningState
from bandit.snapshots import SnapshotManifest

REFRESH_S = 10
MAX_PRUNING_ROWS = 500
_STATUS_ORDER = {"pruned": 0, "forced_hold": 1, "forced_keep": 2, "active": 3}
_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .75rem;text-align:left}
th{border-bottom:2px solid #ccc}tr:nth-child(even) td{background:#f6f6f6}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.empty{color:#777;font-style:italic}.note{color:#555;font-size:.9rem}
.bad{color:#b00020}.ok{color:#1b7a1b}.held{font-weight:600;color:#b00020}
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem}dt{color:#555}dd{margin:0}
"""


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything the page shows, read by the app at request time (plain data, no I/O)."""

    policy_version: str | None
    policy_created_at: float | None  # Unix seconds
    now: float  # Unix seconds
    decisions_by_why: dict[str, int]
    spool_events: int
    broker_ok: bool | None  # None: not reached yet
    live_value: dict[str, Any] | None  # the manifest's `live_value` (`LiveValue.estimates()`)
    pruning: list[dict[str, Any]]  # `pruning_rows(...)`


# ---- pruning rows ------------------------------------------------------------------------------


def pruning_rows(
    manifest: SnapshotManifest, pruning_state: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One row per evaluated (trigger, message): trigger, action, status, impressions, metric,
    estimate, low, high, since; held ones first.

    The evidence lives in the snapshot's pruning state file (`snapshot.state.pruning`); the
    manifest itself lists only what is held. Without the state, the held rows come without
    numbers.
    """
    if pruning_state:
        state = PruningState.from_json(pruning_state)
        rows = [
            {"trigger": trigger, "action": action, "status": s.status, **_evidence(s.evidence),
             "since": s.since}
            for trigger, arms in state.statuses.items()
            for action, s in arms.items()
        ]  # fmt: skip
    else:
        held = manifest.pruning.get("held") or {}
        metric = (manifest.pruning.get("rule") or {}).get("metric")
        # not in the manifest: unknown, not zero
        unknown = {"impressions": None, "metric": metric, "estimate": None, "low": None,
                   "high": None, "since": None}  # fmt: skip
        rows = [
            {"trigger": trigger, "action": action, "status": status, **unknown}
            for trigger, arms in held.items()
            for action, status in arms.items()
        ]  # fmt: skip
    rows.sort(key=lambda r: (_STATUS_ORDER.get(str(r["status"]), 9), r["trigger"], r["action"]))
    return rows


def _evidence(evidence: Evidence) -> dict[str, Any]:
    return {
        "impressions": evidence.shown,
        "metric": evidence.metric,
        "estimate": evidence.estimate,
        "low": evidence.low,
        "high": evidence.high,
    }


# ---- formatting ---------------------------------------------------------------------------


def _number(value: Any, signed: bool = True) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _interval(low: Any, high: Any) -> str:
    if low is None or high is None:
        return "n/a"
    return f"[{_number(low)}, {_number(high)}]"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "n/a"


def _age(seconds: float) -> str:
    """A duration for people: `42 s`, `5 min 3 s`, `3 h 2 min`, `2 d 4 h`."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def _utc(ts: Any) -> str:
    if not isinstance(ts, int | float) or not math.isfinite(ts):
        return "n/a"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


# ---- sections -------------------------------------------------------------------------------


def _policy_section(view: StatusView) -> str:
    if view.broker_ok is None:
        broker = '<span class="bad">not reached yet</span>'
    elif view.broker_ok:
        broker = '<span class="ok">reachable</span>'
    else:
        broker = '<span class="bad">unreachable</span> (decisions wait in the spool)'
    spool = f'<dd id="spool-events">{_count(view.spool_events)} events waiting</dd>'
    if view.policy_version is None:
        policy = (
            '<dd id="policy-version" class="empty">no snapshot yet: run `nudge consume` '
            "(or `nudge export`) to publish one</dd>"
        )
        age = ""
    else:
        policy = f'<dd id="policy-version">{_e(view.policy_version)}</dd>'
        age = (
            f'<dt>created</dt><dd id="policy-age">{_e(_age(view.now - view.policy_created_at))}'
            f" ago ({_e(_utc(view.policy_created_at))})</dd>"
            if view.policy_created_at is not None
            else '<dt>created</dt><dd id="policy-age">n/a</dd>'
        )
    return (
        f"<h2>Policy</h2><dl><dt>version</dt>{policy}{age}"
        f'<dt>Kafka</dt><dd id="broker">{broker}</dd><dt>spool</dt>{spool}</dl>'
    )


def _decisions_section(view: StatusView) -> str:
    head = "<h2>Decisions by why</h2>"
    total = sum(view.decisions_by_why.values())
    if total == 0:
        return head + '<p id="decisions" class="empty">no decisions yet</p>'
    rows = "".join(
        f'<tr><td>{_e(why)}</td><td class="num">{_count(n)}</td>'
        f'<td class="num">{100.0 * n / total:.1f}%</td></tr>'
        for why, n in sorted(view.decisions_by_why.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return (
        f'{head}<table id="decisions"><tr><th>why</th><th class="num">decisions</th>'
        f'<th class="num">share</th></tr>{rows}<tr><th>total</th><th class="num">{_count(total)}'
        '</th><th></th></tr></table><p class="note">Since this service started.</p>'
    )


def _estimates(live: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(row id, label, estimate) of the three headline estimates that are there."""
    out = []
    for key, label in (("deployed", "deployed policy"), ("send_nothing", "send nothing")):
        if isinstance(live.get(key), Mapping):
            out.append((key, label, live[key]))
    best = live.get("best_message")
    if isinstance(best, Mapping):
        out.append(("best_message", f"best single message: {best.get('action')}", best))
    return out


def _chart(rows: list[tuple[str, str, Mapping[str, Any]]]) -> str:
    """Point estimates with their intervals on one axis, zero marked."""
    points = [
        v
        for _, _, est in rows
        for v in (est.get("value"), est.get("low"), est.get("high"))
        if isinstance(v, int | float) and math.isfinite(v)
    ]
    low, high = min([*points, 0.0]), max([*points, 0.0])
    pad = 0.05 * (high - low) or 0.5
    low, high = low - pad, high + pad
    width, left, right, row_h = 640, 230, 20, 34
    height = row_h * len(rows) + 30

    def x(v: float) -> float:
        return round(left + (width - left - right) * (v - low) / (high - low), 1)

    parts = [
        f'<svg id="live-value-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="live value estimates with intervals">',
        f'<line x1="{x(0.0)}" y1="4" x2="{x(0.0)}" y2="{height - 24}" stroke="#999" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{left}" y="{height - 8}" font-size="11">{_number(low)}</text>',
        f'<text x="{width - right}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{_number(high)}</text>",
    ]
    if min(x(0.0) - left, width - right - x(0.0)) > 50:  # clear of the end labels
        parts.append(
            f'<text x="{x(0.0)}" y="{height - 8}" font-size="11" text-anchor="middle">0</text>'
        )
    for i, (key, label, est) in enumerate(rows):
        y = row_h * i + row_h / 2 + 4
        colour = (
            "#1f77b4" if key == "deployed" else "#7f7f7f" if key == "send_nothing" else "#d62728"
        )
        parts.append(
            f'<text x="{left - 10}" y="{y + 4}" font-size="12" text-anchor="end">{_e(label)}</text>'
        )
        lo, hi, value = est.get("low"), est.get("high"), est.get("value")
        if isinstance(lo, int | float) and isinstance(hi, int | float):
            parts.append(
                f'<line x1="{x(lo)}" y1="{y}" x2="{x(hi)}" y2="{y}" stroke="{colour}" '
                f'stroke-width="3"/><line x1="{x(lo)}" y1="{y - 6}" x2="{x(lo)}" y2="{y + 6}" '
                f'stroke="{colour}"/><line x1="{x(hi)}" y1="{y - 6}" x2="{x(hi)}" y2="{y + 6}" '
                f'stroke="{colour}"/>'
            )
        if isinstance(value, int | float) and math.isfinite(value):
            parts.append(f'<circle cx="{x(value)}" cy="{y}" r="5" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _live_value_section(view: StatusView) -> str:
    head = "<h2>Live value</h2>"
    live = view.live_value
    rows = _estimates(live) if live else []
    if not live or not live.get("n") or not rows:
        return head + (
            '<p id="live-value" class="empty">no estimates yet: the consumer ships them with '
            "each snapshot once it has learned joined events</p>"
        )
    confidence = live.get("confidence")
    level = f"{100 * confidence:.0f}%" if isinstance(confidence, int | float) else "n/a"
    table = "".join(
        f'<tr id="estimate-{key}"><td>{_e(label)}</td><td class="num">{_number(est.get("value"))}'
        f'</td><td class="num">{_e(_interval(est.get("low"), est.get("high")))}</td>'
        f'<td class="num">{_count(est.get("n"))}</td><td>{_e(est.get("estimator"))}</td></tr>'
        for key, label, est in rows
    )
    nothing = live.get("send_nothing")
    snips = nothing.get("snips") if isinstance(nothing, Mapping) else None
    span = f"{_utc(live.get('from_ts'))} to {_utc(live.get('to_ts'))}"
    return (
        f'{head}<p class="note">Mean reward per decision over the last '
        f'<span id="live-value-n">{_count(live.get("n"))}</span> learned decisions (event time '
        f"{_e(span)}), {_e(level)} normal intervals.</p>"
        f"{_chart(rows)}"
        f'<table id="live-value"><tr><th>policy</th><th class="num">value</th>'
        f'<th class="num">{_e(level)} interval</th><th class="num">events</th><th>estimator</th>'
        f"</tr>{table}</table>"
        '<p class="note">The deployed policy: the mean of the rewards it got (on-policy). Send '
        "nothing and each message: inverse propensity scoring over the decisions where they were "
        f"offered (send nothing, self-normalised: {_e(_number(snips))}). The best message is the "
        "highest of several noisy estimates, so its value and interval run optimistic.</p>"
        f"{_by_message(live.get('by_message'))}"
    )


def _by_message(by_message: Any) -> str:
    if not isinstance(by_message, Mapping) or not by_message:
        return ""
    rows = "".join(
        f'<tr><td>{_e(action)}</td><td class="num">{_number(est.get("value"))}</td>'
        f'<td class="num">{_e(_interval(est.get("low"), est.get("high")))}</td>'
        f'<td class="num">{_count(est.get("n_chosen"))}</td>'
        f'<td class="num">{_count(est.get("n"))}</td></tr>'
        for action, est in sorted(by_message.items())
        if isinstance(est, Mapping)
    )
    return (
        "<details><summary>Every action (inverse propensity scoring)</summary>"
        '<table id="by-message"><tr><th>action</th><th class="num">value</th>'
        '<th class="num">interval</th><th class="num">chosen</th><th class="num">offered</th>'
        f"</tr>{rows}</table></details>"
    )


def _pruning_section(view: StatusView) -> str:
    head = "<h2>Pruning</h2>"
    if not view.pruning:
        return head + '<p id="pruning" class="empty">no message evaluated or held yet</p>'
    shown = view.pruning[:MAX_PRUNING_ROWS]
    rows = "".join(
        f'<tr class="{"held" if r.get("status") in HELD else ""}"><td>{_e(r.get("trigger"))}</td>'
        f"<td>{_e(r.get('action'))}</td><td>{_e(r.get('status'))}</td>"
        f'<td class="num">{_count(r.get("impressions"))}</td><td>{_e(r.get("metric") or "")}</td>'
        f'<td class="num">{_number(r.get("estimate"))}</td>'
        f'<td class="num">{_e(_interval(r.get("low"), r.get("high")))}</td></tr>'
        for r in shown
    )
    more = len(view.pruning) - len(shown)
    rest = f'<p class="note">and {more:,} more rows</p>' if more > 0 else ""
    return (
        f'{head}<table id="pruning"><tr><th>trigger</th><th>message</th><th>status</th>'
        '<th class="num">impressions</th><th>metric</th><th class="num">estimate</th>'
        f'<th class="num">interval</th></tr>{rows}</table>{rest}'
    )


def render_status_page(view: StatusView) -> str:
    """The whole page, as one HTML document."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>nudge serve: {_e(view.policy_version or 'no snapshot yet')}</title>"
        f"<style>{_CSS}</style></head><body><h1>nudge serve</h1>"
        f'<p class="note">As of {_e(_utc(view.now))}; refreshes every {REFRESH_S} s.</p>'
        f"{_policy_section(view)}{_decisions_section(view)}{_live_value_section(view)}"
        f"{_pruning_section(view)}</body></html>"
    )
