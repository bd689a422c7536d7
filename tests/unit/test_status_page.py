"""The status page renders from plain data: what it shows, its empty states, its escaping, and
the pruning rows taken from a published snapshot."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from bandit.config import Config
from bandit.pruning import ArmStatus, Evidence, PruningState
from bandit.snapshots import SnapshotStore
from bandit.state import LearnerState
from nudge.service.status_page import StatusView, pruning_rows, render_status_page

NOW = 1_767_600_000.0
LIVE_VALUE: dict[str, Any] = {
    "n": 4800, "window": 5000, "confidence": 0.95, "from_ts": NOW - 3600, "to_ts": NOW - 60,
    "deployed": {"estimator": "on-policy mean of logged rewards", "value": 0.1234,
                 "low": 0.1012, "high": 0.1456, "n": 4800},
    "send_nothing": {"estimator": "ips", "action": "none", "value": -0.0321, "low": -0.0711,
                     "high": 0.0069, "n": 4100, "n_chosen": 800, "snips": -0.0298},
    "best_message": {"estimator": "ips", "action": "hint", "value": 0.2468, "low": 0.1901,
                     "high": 0.3035, "n": 2500, "n_chosen": 600},
    "by_message": {
        "hint": {"value": 0.2468, "low": 0.1901, "high": 0.3035, "n": 2500, "n_chosen": 600},
        "none": {"value": -0.0321, "low": -0.0711, "high": 0.0069, "n": 4100, "n_chosen": 800},
    },
}  # fmt: skip
PRUNING = [
    {"trigger": "A/quiz-3/quiz-failed", "action": "peer_norm", "status": "pruned",
     "impressions": 812, "metric": "lift_vs_none", "estimate": -0.1875, "low": -0.2502,
     "high": -0.1248, "since": NOW - 600},
    {"trigger": "A/quiz-3/quiz-failed", "action": "hint", "status": "active",
     "impressions": 1500, "metric": "lift_vs_none", "estimate": 0.2, "low": 0.15,
     "high": 0.25, "since": NOW - 900},
]  # fmt: skip
VIEW = StatusView(
    policy_version="nudge-000042",
    policy_created_at=NOW - 125,
    now=NOW,
    decisions_by_why={"exploit": 900, "explore": 80, "forced": 20},
    spool_events=3,
    broker_ok=True,
    live_value=LIVE_VALUE,
    pruning=PRUNING,
)


class _Page(HTMLParser):
    """The text of each element with an id (a space between elements), every tag and attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []
        self._open: list[str | None] = []
        self.by_id: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for open_id in self._open:  # cells read apart, as a browser shows them
            if open_id is not None:
                self.by_id[open_id] += " "
        self.attributes += attrs
        element_id = dict(attrs).get("id")
        if element_id is not None:
            self.by_id[element_id] = ""
        if tag not in ("meta", "br", "circle", "line", "path", "rect"):
            self._open.append(element_id)

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("meta", "br", "circle", "line", "path", "rect") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id is not None:
                self.by_id[element_id] += data


def parsed(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def squeezed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_the_page_shows_the_policy_its_age_and_the_decisions_by_why() -> None:
    page = parsed(render_status_page(VIEW))

    assert page.by_id["policy-version"] == "nudge-000042"
    assert page.by_id["policy-age"].startswith("2 min 5 s ago")
    assert "reachable" in page.by_id["broker"]
    assert page.by_id["spool-events"] == "3 events waiting"
    decisions = squeezed(page.by_id["decisions"])
    assert "exploit 900 90.0%" in decisions
    assert "explore 80 8.0%" in decisions
    assert "total 1,000" in decisions


def test_the_three_estimates_are_shown_with_their_numbers_intervals_and_estimators() -> None:
    page = parsed(render_status_page(VIEW))

    assert squeezed(page.by_id["estimate-deployed"]) == (
        "deployed policy +0.123 [+0.101, +0.146] 4,800 on-policy mean of logged rewards"
    )
    assert squeezed(page.by_id["estimate-send_nothing"]) == (
        "send nothing -0.032 [-0.071, +0.007] 4,100 ips"
    )
    assert squeezed(page.by_id["estimate-best_message"]) == (
        "best single message: hint +0.247 [+0.190, +0.303] 2,500 ips"
    )
    assert page.by_id["live-value-n"] == "4,800"
    assert "best single message: hint" in page.by_id["live-value-chart"]


def test_the_chart_draws_a_point_and_an_interval_per_estimate() -> None:
    html = render_status_page(VIEW)
    svg = html[html.index("<svg") : html.index("</svg>")]

    assert svg.count("<circle") == 3
    assert svg.count("<line") == 1 + 3 * 3  # the zero line; per estimate a bar and two whiskers


def test_the_pruning_table_lists_each_row_with_its_evidence() -> None:
    page = parsed(render_status_page(VIEW))

    table = squeezed(page.by_id["pruning"])
    assert "A/quiz-3/quiz-failed peer_norm pruned 812 lift_vs_none -0.188 [-0.250, -0.125]" in table
    assert "A/quiz-3/quiz-failed hint active 1,500 lift_vs_none +0.200 [+0.150, +0.250]" in table


@pytest.mark.parametrize(
    ("change", "element", "text"),
    [
        (
            {"policy_version": None, "policy_created_at": None},
            "policy-version",
            "no snapshot yet",
        ),
        ({"live_value": None}, "live-value", "no estimates yet"),
        ({"live_value": {**LIVE_VALUE, "n": 0}}, "live-value", "no estimates yet"),
        ({"pruning": []}, "pruning", "no message evaluated or held yet"),
        ({"decisions_by_why": {}}, "decisions", "no decisions yet"),
        ({"broker_ok": None}, "broker", "not reached yet"),
        ({"broker_ok": False}, "broker", "unreachable"),
    ],
)
def test_each_missing_part_has_a_clear_empty_state(
    change: dict[str, Any], element: str, text: str
) -> None:
    page = parsed(render_status_page(replace(VIEW, **change)))

    assert text in page.by_id[element]


def test_estimates_without_intervals_say_so_instead_of_drawing_them() -> None:
    one = {"estimator": "ips", "action": "hint", "value": 1.0, "low": None, "high": None, "n": 1}
    live = {**LIVE_VALUE, "n": 1, "deployed": {**one, "estimator": "on-policy"}}
    live.update(send_nothing=None, best_message=one)

    html = render_status_page(replace(VIEW, live_value=live))

    page = parsed(html)
    assert (
        squeezed(page.by_id["estimate-best_message"])
        == "best single message: hint +1.000 n/a 1 ips"
    )
    assert "estimate-send_nothing" not in page.by_id
    assert html.count("<circle") == 2


def test_everything_from_outside_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    view = replace(
        VIEW,
        policy_version=evil,
        decisions_by_why={evil: 1},
        live_value={**LIVE_VALUE, "best_message": {**LIVE_VALUE["best_message"], "action": evil}},
        pruning=[{**PRUNING[0], "trigger": evil, "action": evil, "metric": evil}],
    )

    html = render_status_page(view)

    assert "<script" not in html
    assert parsed(html).by_id["policy-version"] == evil  # shown as text, not run


def test_the_page_is_self_contained() -> None:
    page = parsed(render_status_page(VIEW))

    assert not page.tags & {"script", "link", "img", "iframe", "object"}
    links = [v for k, v in page.attributes if k in ("src", "href") and v]
    assert links == []
    assert ("http-equiv", "refresh") in page.attributes


def _status(status: Any, estimate: float, shown: int) -> ArmStatus:
    return ArmStatus(
        status, 100.0, Evidence("lift_vs_none", estimate, estimate - 0.1, estimate + 0.1, shown)
    )


def test_pruning_rows_come_from_the_snapshot_held_ones_first(tmp_path: Path) -> None:
    state = PruningState(
        statuses={
            "t1": {"a": _status("active", 0.1, 500), "b": _status("pruned", -0.3, 700)},
            "t2": {"a": _status("forced_hold", 0.0, 20)},
        }
    )
    catalogue: dict[str, Any] = {"actions": {"a": {}, "b": {}, "none": {}}, "triggers": {}}
    store = SnapshotStore(tmp_path)
    store.publish(Config(), LearnerState(catalogue=catalogue, pruning=state.to_json()), {}, 0)
    snapshot = store.load_latest()

    rows = pruning_rows(snapshot.manifest, snapshot.state.pruning)
    held_only = pruning_rows(snapshot.manifest)

    assert [(r["trigger"], r["action"], r["status"]) for r in rows] == [
        ("t1", "b", "pruned"), ("t2", "a", "forced_hold"), ("t1", "a", "active"),
    ]  # fmt: skip
    assert rows[0] == {
        "trigger": "t1", "action": "b", "status": "pruned", "impressions": 700,
        "metric": "lift_vs_none", "estimate": -0.3, "low": pytest.approx(-0.4),
        "high": pytest.approx(-0.2), "since": 100.0,
    }  # fmt: skip
    assert [(r["trigger"], r["action"], r["status"], r["estimate"]) for r in held_only] == [
        ("t1", "b", "pruned", None), ("t2", "a", "forced_hold", None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.9, "59 s"), (125, "2 min 5 s"), (3 * 3600 + 120, "3 h 2 min"),
     (2 * 86_400 + 4 * 3600, "2 d 4 h"), (-5, "0 s")],
)  # fmt: skip
def test_the_policy_age_reads_as_a_person_would_say_it(seconds: float, text: str) -> None:
    view = replace(VIEW, policy_created_at=NOW - seconds)

    assert parsed(render_status_page(view)).by_id["policy-age"].startswith(f"{text} ago")
