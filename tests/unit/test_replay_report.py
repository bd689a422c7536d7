"""The replay report: console text, HTML with inline SVG plots, and JSON."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from replay.report import console_table, html_report, write_html, write_json
from replay.report_svg import ABOVE, BELOW, ForestRow, Panel, Point, forest_svg, nice_ticks
from replay.results import ALL_TRIGGERS, Contrast, EstimateRow, PolicyDiagnostics, ReplayResult

ESTIMATORS = ("DR", "IPS", "SNIPS", "DM", "DRos")
TRIGGERS = ("A/lecture-9/lecture-completed", "B/quiz-3/quiz-failed")
EVIL = "<script>alert(1)</script>"
POLICIES = ("logging", "uniform", "personalized", EVIL)
WARNING = "effective sample size 20.0 is below 1% of the 3000 events"
SVG = "{http://www.w3.org/2000/svg}svg"


def _value(policy: int, estimator: int, trigger: int) -> float:
    return 0.1 + 0.01 * policy + 0.001 * estimator - 0.002 * trigger


def _effect(message: str, trigger: str, estimator: str, value: float, half: float) -> Contrast:
    return Contrast(
        "effect", message, message, "none", trigger, estimator,
        value, value - half, value + half, half / 2, 1000, "normal",
    )  # fmt: skip


def _gain(trigger: str, estimator: str) -> Contrast:
    return Contrast(
        "gain", "personalization", "personalized", "uniform", trigger, estimator,
        0.03, 0.01, 0.05, 0.01, 3000, "normal",
    )  # fmt: skip


def _result(*, contrasts: bool = True, by_trigger: bool = True) -> ReplayResult:
    """Four policies (the last one, the best, named like an HTML injection), five estimators,
    two triggers; effects: hint above 0, peer_norm below 0, quiet_hours covering 0."""
    triggers = (ALL_TRIGGERS, *TRIGGERS) if by_trigger else (ALL_TRIGGERS,)
    estimates = []
    for pi, p in enumerate(POLICIES):
        for ei, e in enumerate(ESTIMATORS):
            for ti, t in enumerate(triggers):
                v = _value(pi, ei, ti)
                estimates.append(EstimateRow(p, e, t, v, v - 0.02, v + 0.02, 0.01, 1000, "normal"))
    diagnostics = (
        PolicyDiagnostics("logging", 3000, 3000.0, 1.0, 1.0, 0.0),
        PolicyDiagnostics("uniform", 3000, 2500.0, 0.0, 2.5, 0.1),
        PolicyDiagnostics("personalized", 3000, 20.0, 0.0, 150.0, 0.5, (WARNING,)),
        PolicyDiagnostics(EVIL, 3000, 900.0, 0.0, 5.0, 0.3),
    )
    found: list[Contrast] = []
    for e in ESTIMATORS if contrasts else ():
        for t in triggers:
            found.append(_gain(t, e))
            found.append(_effect("hint", t, e, 0.0417, 0.02))
            found.append(_effect("peer_norm", t, e, -0.0523, 0.03))
            found.append(_effect("quiet_hours", t, e, 0.0031, 0.01))
    return ReplayResult(
        source="events.jsonl",
        n_events=3000,
        skipped={"no_reward": 12, "bad_pmf": 3},
        actions=("hint", "peer_norm", "quiet_hours", "none"),
        triggers=TRIGGERS,
        policies=POLICIES,
        estimators=ESTIMATORS,
        confidence=0.95,
        estimates=tuple(estimates),
        diagnostics=diagnostics,
        contrasts=tuple(found),
        notes=("DM's reward model is tabular by trigger",),
    )


def _parse(xml: str) -> ET.Element:
    """Parse our own generated markup (not untrusted input) as XML."""
    return ET.fromstring(xml.removeprefix("<!DOCTYPE html>"))  # noqa: S314


def _line_of(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


# ---- console ---------------------------------------------------------------------------------


def _section(text: str, title: str) -> str:
    """The console text from the line starting with ``title`` to the next blank line."""
    start = text.index(f"\n{title}") + 1
    end = text.find("\n\n", start)
    return text[start : end if end >= 0 else None]


def test_console_shows_every_policy_by_every_estimator_and_the_recommended_intervals() -> None:
    text = console_table(_result())
    for name in (*POLICIES, *ESTIMATORS):
        assert name in text
    overview = _section(text, "Policy values by DR")
    appendix = _section(text, "Policy values by every estimator")
    for pi in range(len(POLICIES)):
        v = _value(pi, 0, 0)
        assert f"{v:.4f} [{v - 0.02:.4f}, {v + 0.02:.4f}]" in overview
        for ei in range(len(ESTIMATORS)):
            assert f"{_value(pi, ei, 0):.4f}" in _line_of(appendix, POLICIES[pi])


def test_console_data_section_gives_source_events_skips_by_reason_and_confidence() -> None:
    text = console_table(_result())
    assert text.startswith("Replay of events.jsonl")
    data = _section(text, "Data")
    assert "3,000 used; 15 skipped (no_reward 12, bad_pmf 3)" in data
    assert "95% normal" in data


def test_console_lines_fit_in_100_columns() -> None:
    text = console_table(_result())
    assert max(len(line) for line in text.splitlines()) <= 100


def test_console_marks_the_best_policy_per_estimator_only() -> None:
    appendix = _section(console_table(_result()), "Policy values by every estimator")
    best = _value(3, 0, 0)
    assert f"{best:.4f} ★" in _line_of(appendix, EVIL)
    assert "★" not in _line_of(appendix, "logging")


def test_console_shows_trigger_rows_only_for_the_recommended_estimator() -> None:
    text = console_table(_result())
    assert "By trigger (DR)" in text
    assert "by trigger (IPS" not in text.lower()
    by_trigger = _section(text, "By trigger (DR)")
    best = _value(3, 0, 2)
    assert _line_of(by_trigger, TRIGGERS[1]).split()[:2] == [TRIGGERS[1], EVIL.split()[0]]
    assert f"{best:.4f}" in _line_of(by_trigger, TRIGGERS[1])


def test_console_prints_warnings_below_the_diagnostics() -> None:
    text = console_table(_result())
    diagnostics = text.index("Overlap diagnostics")
    warning = text.index(f"! personalized: {WARNING}")
    assert diagnostics < warning < text.index("Glossary")
    assert "150.00" in _line_of(text[diagnostics:], "personalized")


def test_console_marks_effects_whose_interval_excludes_zero() -> None:
    text = console_table(_result())
    chart = _section(text, "Gains and effects by DR")
    assert "+0.0417 [+0.0217, +0.0617] ▲" in _line_of(chart, "    hint")
    assert f"-0.0523 [-0.0823, -0.0223] {BELOW}" in _line_of(chart, "    peer_norm")
    quiet = _line_of(chart, "    quiet_hours")
    assert "+0.0031 [-0.0069, +0.0131]" in quiet
    assert ABOVE not in quiet and BELOW not in quiet


def test_console_shows_effects_per_trigger_compactly() -> None:
    text = console_table(_result())
    by_trigger = _section(text, "Effect of each message vs sending nothing, by trigger (DR)")
    row = _line_of(by_trigger, TRIGGERS[0])
    assert row.split() == [TRIGGERS[0], "+0.0417", ABOVE, "-0.0523", BELOW, "+0.0031"]


def test_console_leaves_out_contrast_and_trigger_tables_without_rows() -> None:
    text = console_table(_result(contrasts=False, by_trigger=False))
    for title in ("Gains", "Effect of each message", "By trigger"):
        assert title not in text
    assert "Policy values by DR (reward per decision" in text


# ---- HTML ------------------------------------------------------------------------------------


class _StrictParser(HTMLParser):
    """Fails on a closing tag that does not match the open one (void elements excepted)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def _html(tmp_path: Path, result: ReplayResult | None = None) -> str:
    path = write_html(result or _result(), tmp_path / "out" / "report.html")
    return path.read_text(encoding="utf-8")


def test_html_parses_as_xml_after_the_doctype(tmp_path: Path) -> None:
    text = _html(tmp_path)
    assert text.startswith("<!DOCTYPE html>")
    root = _parse(text)
    assert root.tag == "{http://www.w3.org/1999/xhtml}html"


def test_html_tags_balance_under_html_parser(tmp_path: Path) -> None:
    parser = _StrictParser()
    parser.feed(_html(tmp_path))
    parser.close()
    assert parser.stack == []


def test_html_has_one_svg_per_plot(tmp_path: Path) -> None:
    root = _parse(_html(tmp_path))
    labels = [svg.get("aria-label", "") for svg in root.iter(SVG)]
    assert len(labels) == 5
    assert labels[0].startswith("Gains and effects by DR")
    assert labels[1].startswith("Policy values by DR (95%")
    assert labels[2].startswith("Policy values by every estimator (95%")
    assert labels[3].startswith("Policy values by trigger (DR")
    assert labels[4].startswith("Effect of each message vs no message")


def test_html_without_triggers_or_contrasts_draws_only_the_policy_plots(tmp_path: Path) -> None:
    text = _html(tmp_path, _result(contrasts=False, by_trigger=False))
    assert text.count("<svg") == 2
    assert "Gains and effects" not in text


def test_html_escapes_every_name(tmp_path: Path) -> None:
    text = _html(tmp_path)
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_html_is_self_contained(tmp_path: Path) -> None:
    text = _html(tmp_path)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text


def test_html_highlights_warnings(tmp_path: Path) -> None:
    root = _parse(_html(tmp_path))
    ns = "{http://www.w3.org/1999/xhtml}"
    boxes = [d for d in root.iter(f"{ns}div") if d.get("class") == "warn"]
    assert len(boxes) == 1
    assert WARNING in "".join(boxes[0].itertext())


def test_html_marks_effects_excluding_zero_with_classes(tmp_path: Path) -> None:
    text = _html(tmp_path)
    assert f'<td class="pos">+0.0417 [+0.0217, +0.0617] {ABOVE}</td>' in text
    assert f'<td class="neg">-0.0523 [-0.0823, -0.0223] {BELOW}</td>' in text
    assert "<td>+0.0031 [-0.0069, +0.0131]</td>" in text


def test_html_policy_plot_has_a_line_at_the_logging_policy_value(tmp_path: Path) -> None:
    text = _html(tmp_path)
    assert "logging (DR)" in text
    assert "logging (DR)" not in html_report(_result(), logging_policy="absent")


def test_effects_plot_draws_hollow_markers_where_the_interval_covers_zero() -> None:
    text = html_report(_result())
    effects_svg = text[text.index('aria-label="Effect of each') :]
    hollow = re.findall(r"<title>(\w+): ([^<]*)</title>[^\n]*fill=\"white\"", effects_svg)
    assert {series for series, _ in hollow} == set(ESTIMATORS)
    assert all(tip.startswith("0.0031 ") for _, tip in hollow)


# ---- JSON ------------------------------------------------------------------------------------


def test_write_json_round_trips_the_result(tmp_path: Path) -> None:
    result = _result()
    path = write_json(result, tmp_path / "nested" / "result.json")
    assert orjson.loads(path.read_bytes()) == orjson.loads(orjson.dumps(result.to_json()))
    assert path.read_text().startswith('{\n  "source"')


# ---- SVG helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.075, 0.155, [0.08, 0.1, 0.12, 0.14]),
        (-0.09, 0.07, [-0.05, 0.0, 0.05]),
    ],
)
def test_nice_ticks_are_round_and_inside_the_range(
    low: float, high: float, expected: list[float]
) -> None:
    assert nice_ticks(low, high) == pytest.approx(expected)


def test_forest_svg_skips_points_without_a_finite_value() -> None:
    panel = Panel(
        "p",
        (
            ForestRow("a", (Point("IPS", 0.1, 0.0, 0.2), Point("DR", float("nan"), 0.0, 0.1))),
            ForestRow("b", (Point("IPS", 0.3, float("-inf"), float("inf")),)),
        ),
    )
    svg = forest_svg([panel], title="t", series=("IPS", "DR"))
    assert svg.count("<circle") == 2 + 2  # two markers plus two legend dots
    assert not re.search(r'="[^"]*(nan|inf)', svg)  # no attribute holds a non-finite number
    _parse(svg)
