"""The backlog benchmark's own parts: the consumer's progress line and /proc read back, the
least-squares slope, the progress points and trends, the tables and the plot."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from consumer_fixtures import BOUNDED, make_stream

from benchmarks.backlog_bench import (
    LogTail,
    Progress,
    RunResult,
    Sample,
    parse_progress,
    proc_memory_mb,
    progress_points,
    progress_table,
    slope,
    trend,
    verdict_table,
)
from benchmarks.backlog_bench import backlog_svg as svg_of

LINE = (
    "2026-01-05 10:00:01,234 INFO nudge.consume: consumed=120345 (8123/s) impressions=85000 "
    "outcomes=35000 learned=80012 (7990/s) dead_lettered=345 pending=118 waiting=20000 lag=2000 "
    "checkpoints=17 snapshot=nudge-000012 rss=137MB held=3 closed_early=0 state_full=5651 "
    "implausible=0 paused=['run.outcomes-0', 'run.impressions-1']"
)


def progress(learned: int, waiting: int = 0, pending: int = 0, state_full: int = 0) -> Progress:
    return Progress(
        consumed=learned, learned=learned, dead_lettered=0, pending=pending, waiting=waiting,
        lag=0, checkpoints=0, hwm_mb=0.0, held=0, state_full=state_full, paused=(),
    )  # fmt: skip


def sample(t: float, learned: int, rss: float | None, ckpt: int | None, **kw: int) -> Sample:
    return Sample(t, rss, rss, ckpt, progress(learned, **kw) if learned else None)


def run_of(name: str, samples: list[Sample], **stats: object) -> RunResult:
    learned = max(s.learned for s in samples)
    return RunResult(
        name=name, max_read_ahead_s=30.0 if name == "aligned" else None, samples=samples,
        stats={"learned": learned, "max_rss_mb": 150.0, **stats}, busy_s=10.0, wall_s=12.0,
        final_checkpoint_bytes=500_000,
        expected_dead_letters={"late_outcome": 3},
    )  # fmt: skip


# ---- the consumer's progress line -----------------------------------------------------------


def test_the_progress_line_gives_the_join_state_the_guard_and_the_paused_partitions() -> None:
    p = parse_progress(LINE)
    assert p == Progress(
        consumed=120345, learned=80012, dead_lettered=345, pending=118, waiting=20000, lag=2000,
        checkpoints=17, hwm_mb=137.0, held=3, state_full=5651,
        paused=("run.outcomes-0", "run.impressions-1"),
    )  # fmt: skip


def test_no_paused_partition_is_an_empty_tuple() -> None:
    p = parse_progress(LINE.split(" paused=")[0] + " paused=-\n")
    assert p is not None and p.paused == ()


@pytest.mark.parametrize(
    "line",
    [
        "2026-01-05 10:00:05,000 INFO nudge.consume: idle for 3.0s after 14.2s: finishing",
        "2026-01-05 10:00:06,000 INFO nudge.consume: done: learned=100000 dead_lettered=1131 "
        "pending=0 checkpoints=30",
        "",
    ],
)
def test_other_log_lines_are_not_progress(line: str) -> None:
    assert parse_progress(line) is None


def test_the_parser_reads_the_line_the_consumer_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Against `StreamLearner._report` itself: a change to its format fails here, not in a
    benchmark run with empty columns."""
    stream = make_stream(tmp_path)
    learner = stream.consumer()
    learner.run(BOUNDED)
    with caplog.at_level(logging.INFO, logger="nudge.consume"):
        learner._report(1.0, (0, 0))
    parsed = [p for r in caplog.records if (p := parse_progress(r.getMessage())) is not None]
    summary = learner.summary()
    assert len(parsed) == 1
    p = parsed[0]
    assert (p.consumed, p.learned, p.dead_lettered) == (
        summary["consumed"], summary["learned"], summary["dead_lettered"],
    )  # fmt: skip
    assert (p.pending, p.waiting, p.held) == (summary["pending"], summary["waiting"], 0)
    assert p.learned > 0


def test_proc_status_gives_rss_and_peak_in_mb() -> None:
    text = "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert proc_memory_mb(text) == (100.0, 200.0)
    assert proc_memory_mb("Name:\tzombie\n") == (None, None)


def test_the_log_tail_keeps_a_half_written_line_for_the_next_read(tmp_path: Path) -> None:
    log = tmp_path / "consume.log"
    log.write_text("starting\n" + LINE[:80])
    tail = LogTail(log)
    try:
        assert tail.read() is None
        with log.open("a") as out:
            out.write(LINE[80:] + "\nsomething else\n")
        assert tail.read() == parse_progress(LINE)
        assert tail.read() == parse_progress(LINE)  # the newest so far, nothing new read
    finally:
        tail.close()


# ---- slope, progress points, trends ----------------------------------------------------------


def test_slope_of_points_on_a_line_is_its_gradient() -> None:
    assert slope([0, 10, 20, 30], [1, 21, 41, 61]) == pytest.approx(2.0)


def test_slope_is_the_least_squares_one() -> None:
    # mean x 1, mean y 1; sum (x-1)(y-1) = (-1)(-1) + 0 + (1)(0) = 1; sum (x-1)^2 = 2
    assert slope([0, 1, 2], [0, 2, 1]) == pytest.approx(0.5)


@pytest.mark.parametrize("xs, ys", [([], []), ([5], [1]), ([5, 5], [1, 2])])
def test_slope_needs_two_distinct_xs(xs: list[float], ys: list[float]) -> None:
    assert slope(xs, ys) is None


def test_slope_refuses_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="3 xs but 2 ys"):
        slope([0, 1, 2], [0, 1])


def test_progress_points_are_the_first_sample_past_each_tenth() -> None:
    samples = [sample(t, learned, 100.0, 1000) for t, learned in enumerate(range(0, 101, 5))]
    points = progress_points(samples)
    assert [p.learned for p in points] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_a_sample_first_past_several_tenths_comes_once() -> None:
    samples = [sample(0, 0, 50.0, None), sample(1, 45, 90.0, 10), sample(2, 100, 95.0, 10)]
    assert [p.learned for p in progress_points(samples)] == [45, 100]
    assert progress_points([sample(0, 0, 50.0, None)]) == []


def test_a_growing_measure_has_its_growth_per_100k_and_grows() -> None:
    # RSS 100 MB + 1 MB per 1,000 learned: 100 MB per 100k learned
    samples = [
        sample(t, n, 100 + n / 1000, 2_000_000) for t, n in enumerate(range(0, 10_001, 1000))
    ]
    rss = trend(samples, "rss_mb")
    assert (rss.at_10, rss.at_100, rss.max) == (101.0, 110.0, 110.0)
    assert rss.per_100k == pytest.approx(100.0)
    # second half: 5,000..10,000 learned, mean 107.5 MB, 5 MB of growth
    assert rss.drift == pytest.approx(5 / 107.5)
    assert rss.shape(0.10) == "flat"
    assert rss.shape(0.01) == "grows"
    ckpt = trend(samples, "checkpoint_mb")
    assert (ckpt.at_10, ckpt.per_100k, ckpt.shape(0.01)) == (2.0, 0.0, "flat")


def test_a_shrinking_measure_is_not_called_growing() -> None:
    samples = [sample(t, n, 200 - n / 100, None) for t, n in enumerate(range(0, 10_001, 1000))]
    rss = trend(samples, "rss_mb")
    assert rss.shape(0.10) == "shrinks"
    ckpt = trend(samples, "checkpoint_mb")  # never measured
    assert (ckpt.at_10, ckpt.at_100, ckpt.max, ckpt.per_100k, ckpt.shape(0.1)) == (
        None, None, None, None, None,
    )  # fmt: skip


# ---- the report ------------------------------------------------------------------------------


def _runs() -> list[RunResult]:
    aligned = run_of(
        "aligned",
        [sample(t, n, 100.0, 1_000_000, waiting=7) for t, n in enumerate(range(0, 10_001, 1000))],
        dead_letters_by_reason={"late_outcome": 3, "join_state_full": 0},
    )
    unaligned = run_of(
        "unaligned",
        [
            sample(t, n, 100 + n / 100, 1_000_000 + 100 * n, waiting=20_000, state_full=n // 10)
            for t, n in enumerate(range(0, 10_001, 1000))
        ],
        dead_letters_by_reason={"late_outcome": 1, "join_state_full": 1000},
    )
    return [aligned, unaligned]


def test_the_progress_table_has_a_row_per_run_and_tenth() -> None:
    lines = progress_table(_runs()).splitlines()
    assert len(lines) == 2 + 10 + 10
    assert lines[2] == "| aligned | 10% | 1,000 | 1 | 100.0 | 1.00 | 7 | 0 | 0 | 0 |"
    assert lines[-1] == "| unaligned | 100% | 10,000 | 10 | 200.0 | 2.00 | 20,000 | 0 | 0 | 1,000 |"


def test_the_verdict_table_has_a_column_per_run_and_says_which_grows() -> None:
    text = verdict_table(_runs(), 0.10)
    lines = text.splitlines()
    assert lines[0] == (
        "| measure | aligned (max_read_ahead_s 30 s) | unaligned (max_read_ahead_s null) |"
    )
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert rows["RSS at 10% / 100% / max"] == [
        "100.0 / 100.0 / 100.0 MB",
        "110.0 / 200.0 / 200.0 MB |",
    ]
    assert rows["RSS growth per 100,000 learned (2nd half)"][1].startswith("+1,000.0 MB (+28.6%")
    assert rows["shape (flat: 2nd-half drift within ±10%): RSS, checkpoint"] == [
        "flat, flat", "GROWS, GROWS |",
    ]  # fmt: skip
    assert rows["dead letters by reason"] == [
        "late_outcome 3",
        "join_state_full 1,000, late_outcome 1 |",
    ]
    assert rows["the simulator expects"] == ["late_outcome 3", "late_outcome 3 |"]


def test_the_plot_has_a_line_per_run_in_each_panel() -> None:
    root = ET.fromstring(svg_of(_runs()))  # noqa: S314 (our own output)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 4
    # the aligned RSS line is flat: every point at one height
    heights = {pt.split(",")[1] for pt in lines[0].get("points", "").split()}
    assert len(heights) == 1
