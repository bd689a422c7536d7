"""ProgressPrinter: rate and ETA text, throttling, TTY bar, quiet; injected clock and stream."""

from __future__ import annotations

import io

import pytest

from replay.progress import ProgressPrinter, format_duration, format_rate


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _printer(
    *, every_s: float = 1.0, quiet: bool = False, tty: bool = False
) -> tuple[ProgressPrinter, FakeClock, io.StringIO]:
    """A printer on a fake clock, writing to a string stream that says it is (not) a TTY."""
    clock = FakeClock()
    stream = FakeTty() if tty else io.StringIO()
    printer = ProgressPrinter(every_s=every_s, quiet=quiet, stream=stream, clock=clock)
    return printer, clock, stream


def test_log_line_gives_counts_rate_and_eta() -> None:
    progress, clock, stream = _printer()
    progress("loading", 0, 1_000_000)
    clock.now += 1.5
    progress("loading", 127_500, 1_000_000)
    assert stream.getvalue().splitlines() == [
        "replay: loading 0/1,000,000",
        "replay: loading 127,500/1,000,000 (85,000/s, eta 10 s)",
    ]


def test_completion_is_written_at_once_with_the_elapsed_time() -> None:
    progress, clock, stream = _printer(every_s=10.0)
    progress("bootstrap", 0, 200)
    clock.now += 2.0
    progress("bootstrap", 200, 200)
    progress("bootstrap", 200, 200)  # a repeated completion is not written again
    assert stream.getvalue().splitlines()[1:] == ["replay: bootstrap 200/200 (100/s, in 2 s)"]


def test_reports_closer_than_every_s_are_dropped() -> None:
    progress, clock, stream = _printer(every_s=1.0)
    # Binary-exact steps: reports at t = 0, .25, .5, .75, 1.25, 1.75, 2.25 s.
    for step, dt in enumerate([0.0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5]):
        clock.now += dt
        progress("scoring", step, 100)
    # Written at 0, then 1.25 (the first >= 1 s later), then 2.25 (1 s after 1.25).
    counts = [line.split()[2] for line in stream.getvalue().splitlines()]
    assert counts == ["0/100", "4/100", "6/100"]


def test_unknown_total_shows_count_and_rate_without_eta() -> None:
    progress, clock, stream = _printer()
    progress("reading", 0, None)
    clock.now += 2.0
    progress("reading", 50, None)
    assert stream.getvalue().splitlines()[-1] == "replay: reading 50 (25.0/s)"


def test_rate_restarts_with_each_stage() -> None:
    progress, clock, stream = _printer(every_s=0.0)
    progress("loading", 0, 10)
    clock.now += 1.0
    progress("loading", 10, 10)
    progress("fitting", 0, 4)
    clock.now += 4.0
    progress("fitting", 2, 4)
    assert stream.getvalue().splitlines()[-1] == "replay: fitting 2/4 (0.5/s, eta 4 s)"


def test_quiet_writes_nothing_even_at_completion() -> None:
    progress, clock, stream = _printer(quiet=True)
    progress("loading", 0, 10)
    clock.now += 5.0
    progress("loading", 10, 10)
    progress.close()
    assert stream.getvalue() == ""


def test_tty_redraws_one_line_in_place_and_ends_it_at_completion() -> None:
    progress, clock, stream = _printer(tty=True)
    progress("loading", 0, 100)
    clock.now += 1.0
    progress("loading", 50, 100)
    text = stream.getvalue()
    assert "\n" not in text
    assert text.count("\r") == 2
    last = text.split("\r")[-1]
    assert last == f"replay: loading [{'#' * 12}{'.' * 12}]  50% 50/100 50.0/s eta 1 s\x1b[K"
    clock.now += 1.0
    progress("loading", 100, 100)
    assert stream.getvalue().endswith("100/100 50.0/s in 2 s\x1b[K\n")


def test_tty_close_ends_a_line_left_open() -> None:
    progress, _, stream = _printer(tty=True)
    progress("loading", 3, None)
    progress.close()
    progress.close()  # safe twice
    assert stream.getvalue() == "\rreplay: loading 3\x1b[K\n"


def test_tty_keeps_the_last_bar_of_a_stage_when_the_next_begins() -> None:
    progress, _, stream = _printer(tty=True, every_s=0.0)
    progress("policy a", 0, 2)
    progress("policy b", 1, 2)
    assert stream.getvalue() == "\rreplay: policy a [" + "." * 24 + "]   0% 0/2\x1b[K\n" + (
        "\rreplay: policy b [" + "#" * 12 + "." * 12 + "]  50% 1/2\x1b[K"
    )


def test_negative_every_s_is_refused() -> None:
    with pytest.raises(ValueError, match="every_s must be a number >= 0; got -1"):
        ProgressPrinter(every_s=-1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (42.0, "42 s"), (185.0, "3 min 05 s"), (3725.0, "1 h 02 min")],
)
def test_durations_read_in_whole_units(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("rate", "text"), [(85_000.4, "85,000"), (100.0, "100"), (3.25, "3.2")])
def test_rates_have_separators_and_a_decimal_only_when_slow(rate: float, text: str) -> None:
    assert format_rate(rate) == text
