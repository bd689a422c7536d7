"""The report's layout: tables sized to their content and split into balanced column groups,
names never cut or broken, marks that cannot be mistaken for signs, the gains drawn as bars,
timings last."""

from __future__ import annotations

import re

import pytest

from replay.report import console_table, html_report
from replay.report_html import TABLE_BUDGET_PX
from replay.report_svg import (
    ABOVE_COLOUR,
    BELOW_COLOUR,
    COVERS_COLOUR,
    Bar,
    BarGroup,
    ForestRow,
    Panel,
    Point,
    bars_svg,
    forest_svg,
    text_width_px,
)
from replay.report_tables import column_groups
from replay.report_text import BAR, bar_chart
from tests.unit.replay_report_fixtures import MANY_POLICIES, replay_result

LONG = "vendor-recommendations-from-the-data-science-team"


@pytest.mark.parametrize(
    ("widths", "budget", "expected"),
    [
        ([10, 10, 10], 100, [[0, 1, 2]]),
        ([10] * 6, 50, [[0, 1, 2], [3, 4, 5]]),  # greedy would leave [4] + [2]
        ([10] * 5, 50, [[0, 1, 2], [3, 4]]),
        ([10, 90, 10], 50, [[0], [1], [2]]),  # a column wider than the budget stands alone
    ],
)
def test_column_groups_are_as_few_as_fit_and_balanced(
    widths: list[float], budget: float, expected: list[list[int]]
) -> None:
    assert column_groups(10, widths, budget, 0) == expected


def test_console_lines_fit_100_columns_with_long_names_and_many_policies() -> None:
    text = console_table(replay_result(policies=MANY_POLICIES))
    assert max(len(line) for line in text.splitlines()) <= 100


def test_console_never_cuts_or_breaks_a_name() -> None:
    text = console_table(replay_result(policies=MANY_POLICIES))
    assert "…" not in text
    for line in text.splitlines():
        # textwrap would break "always-send(personalized)" after its hyphen
        assert not re.search(r"\w-$", line), line
    values = text[text.index("Policy values by DR") :]
    for policy in MANY_POLICIES:
        assert re.search(rf"^{re.escape(policy)}  ", values, re.M), policy


def test_console_marks_a_missing_cell_n_a_never_a_lone_dash() -> None:
    text = console_table(replay_result())
    by_trigger = text[text.index("Effect of each message vs sending nothing, by trigger") :]
    # The fixture leaves out a message where (trigger + message) % 3 == 0: next_item (message
    # 0) at the third trigger, A/quiz-3/quiz-failed.
    row = next(line for line in by_trigger.splitlines() if line.startswith("A/quiz-3/quiz-failed"))
    assert row.split()[1] == "n/a"
    # A dash alone would read as a sign: "−" only ever stands between two names (a − b).
    assert not re.search(r"(^|\s)-(\s|$)", text)
    assert all(re.fullmatch(r"\S+ − \S+", m) for m in re.findall(r"\S* − \S*", text))


def test_console_headline_comes_before_the_tables_and_timings_come_last() -> None:
    text = console_table(replay_result())
    headline = text.index("Headline (DR")
    assert headline < text.index("Policy values by DR") < text.index("Glossary")
    assert text.index("Glossary") < text.index("Appendix") < text.index("Timings (seconds)")
    assert text.count("0.23 s") == 1 and text.rstrip().endswith("other steps: effects 0.23 s")


def _bar_line(lines: list[str], label: str) -> str:
    return next(line for line in lines if line.strip().startswith(label))


def test_the_text_bar_chart_draws_each_bar_from_zero_towards_its_value() -> None:
    groups = [
        BarGroup(
            "Gains",
            (
                Bar("up", 0.2, 0.15, 0.25),
                Bar("half", 0.1, 0.05, 0.15),
                Bar("down", -0.2, -0.25, -0.15),
            ),
        )
    ]
    lines = bar_chart(groups, title="t", width=100)
    up, half, down = (_bar_line(lines, label) for label in ("up", "half", "down"))
    zero = up.index(BAR)
    assert down.rindex(BAR) == zero == half.index(BAR)  # every bar starts at the 0 column
    up_len, half_len = up.rindex(BAR) - zero, half.rindex(BAR) - zero
    assert abs(up_len - 2 * half_len) <= 1
    assert abs((zero - down.index(BAR)) - up_len) <= 1  # rounded to whole columns
    assert "+0.2000 [+0.1500, +0.2500] ▲" in up and "-0.2000 [-0.2500, -0.1500] ▼" in down


def test_html_splits_a_wide_table_into_column_groups_each_naming_its_policies() -> None:
    html = html_report(replay_result(policies=MANY_POLICIES))
    start = html.index("Policy values by trigger (DR)")
    matrix = html[start : html.index('<div class="plot">', start)]
    heads = re.findall(r"<thead><tr>(.*?)</tr></thead>", matrix)
    assert len(heads) >= 3
    names = [n for head in heads for n in re.findall(r"<th[^>]*>([^<]*)</th>", head)]
    assert [n for n in names if n != "trigger"] == ["decisions", *MANY_POLICIES]
    for head in heads:  # each group's headers alone fit the budget with room for the numbers
        cells = re.findall(r"<th[^>]*>([^<]*)</th>", head)
        assert sum(text_width_px(c, 13, bold=True) + 16 for c in cells) <= TABLE_BUDGET_PX


def test_html_keeps_hyphenated_names_whole_in_prose() -> None:
    html = html_report(replay_result())
    headline = html[html.index('class="headline"') : html.index("</section>")]
    assert '<span class="nw">always-send(personalized)),</span>' in headline
    assert "…" not in html


def test_html_timings_come_last() -> None:
    html = html_report(replay_result())
    assert html.index("<h2>Glossary") < html.index("Appendix") < html.index("Timings (seconds)")
    tail = html[html.index("Timings (seconds)") :]
    assert "<table" in tail and "<svg" not in tail and "<h2" not in tail


def test_plots_grow_to_fit_a_long_label_instead_of_cutting_it() -> None:
    label = LONG * 2
    forest = forest_svg(
        [Panel("all triggers", (ForestRow(label, (Point("DR", 0.1, 0.0, 0.2),)),))],
        title="t",
        series=("DR",),
    )
    bars = bars_svg([BarGroup("Gains", (Bar(label, 0.1, 0.0, 0.2),))], title="t")
    for svg in (forest, bars):
        width = float(re.search(r'width="(\d+)"', svg).group(1))  # type: ignore[union-attr]
        assert width > 760
        assert f">{label}</text>" in svg


def test_gain_bars_are_coloured_by_whether_the_interval_excludes_zero() -> None:
    svg = bars_svg(
        [
            BarGroup(
                "Gains",
                (Bar("a", 0.1, 0.05, 0.15), Bar("b", -0.1, -0.15, -0.05), Bar("c", 0.0, -0.1, 0.1)),
            )
        ],
        title="t",
    )
    fills = re.findall(
        r'<rect x="[^"]*" y="[^"]*" width="[^"]*" height="10" fill="([^"]*)"><title>', svg
    )
    assert fills == [ABOVE_COLOUR, BELOW_COLOUR, COVERS_COLOUR]
