"""Progress of a long replay on stderr: an in-place bar on a terminal, log lines otherwise.

`ProgressPrinter` is the ``progress(stage, done, total)`` callback `replay.evaluation.evaluate`
takes; it throttles itself, so callers may report as often as they like.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

Progress = Callable[[str, int, int | None], None]  # (stage, done, total if known): loaders, policies, evaluate

_BAR_CHARS = 24


@dataclass
class _Stage:
    """When a stage was first reported and how far it was then: the origin of its rate."""

    name: str
    started_s: float
    started_done: int
    finished: bool = False


class ProgressPrinter:
    """Writes ``progress(stage, done, total)`` reports to a stream at most every ``every_s``.

    A report is written when ``every_s`` seconds have passed since the last one, and always
    when a stage completes (``done >= total``). On a TTY the line is redrawn in place as a
    bar with rate and ETA; otherwise each report is one log line, e.g.
    ``replay: loading 120,000/1,000,000 (85,000/s, eta 10 s)``. ``quiet`` prints nothing.
    ``clock`` and ``stream`` are injectable for tests; ``tty`` overrides ``stream.isatty()``.
    """

    def __init__(
        self,
        *,
        every_s: float = 1.0,
        quiet: bool = False,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        prefix: str = "replay",
    ) -> None:
        if not every_s >= 0:
            raise ValueError(f"every_s must be a number >= 0; got {every_s!r}")
        self.every_s = every_s
        self.quiet = quiet
        self.stream = stream
        self.clock = clock
        self.tty = tty
        self.prefix = prefix
        self._stage: _Stage | None = None
        self._last_write_s: float | None = None
        self._line_open = False  # an in-place line is on screen without its newline

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        """Record a report and write it if it is due (see the class docstring)."""
        if self.quiet:
            return
        now = self.clock()
        if self._stage is None or self._stage.name != stage:
            self.close()  # keep the previous stage's last bar on screen
            self._stage = _Stage(stage, now, done)
        complete = total is not None and done >= total
        if complete and self._stage.finished:
            return
        due = self._last_write_s is None or now - self._last_write_s >= self.every_s
        if not (due or complete):
            return
        self._stage.finished = complete
        self._last_write_s = now
        self._write(self._stage, done, total, now, complete)

    def close(self) -> None:
        """End an in-place line left open (a stage that never reported completion)."""
        if self._line_open:
            self._out().write("\n")
            self._out().flush()
            self._line_open = False

    def _out(self) -> TextIO:
        # Resolved on each write so that a replaced sys.stderr (pytest's capture) is honoured.
        return self.stream if self.stream is not None else sys.stderr

    def _is_tty(self) -> bool:
        if self.tty is not None:
            return self.tty
        isatty = getattr(self._out(), "isatty", None)
        return bool(isatty and isatty())

    def _write(
        self, stage: _Stage, done: int, total: int | None, now: float, complete: bool
    ) -> None:
        out = self._out()
        elapsed = now - stage.started_s
        rate = (done - stage.started_done) / elapsed if elapsed > 0 else None
        if self._is_tty():
            text = bar_line(self.prefix, stage.name, done, total, rate, elapsed, complete)
            newline = "\n" if complete else ""
            out.write(f"\r{text}\x1b[K{newline}")
            self._line_open = not complete
        else:
            out.write(
                log_line(self.prefix, stage.name, done, total, rate, elapsed, complete) + "\n"
            )
        out.flush()


def log_line(
    prefix: str,
    stage: str,
    done: int,
    total: int | None,
    rate: float | None,
    elapsed_s: float,
    complete: bool,
) -> str:
    """``prefix: stage done/total (rate/s, eta T)``; at completion the elapsed time instead."""
    count = f"{done:,}" if total is None else f"{done:,}/{total:,}"
    details = _details(done, total, rate, elapsed_s, complete)
    return f"{prefix}: {stage} {count}" + (f" ({', '.join(details)})" if details else "")


def bar_line(
    prefix: str,
    stage: str,
    done: int,
    total: int | None,
    rate: float | None,
    elapsed_s: float,
    complete: bool,
) -> str:
    """``prefix: stage [#####.....] 42% done/total rate/s eta T`` (no bar without a total)."""
    parts = [f"{prefix}: {stage}"]
    if total is not None and total > 0:
        share = min(1.0, max(0.0, done / total))
        filled = round(share * _BAR_CHARS)
        parts.append(f"[{'#' * filled}{'.' * (_BAR_CHARS - filled)}] {share:4.0%}")
        parts.append(f"{done:,}/{total:,}")
    else:
        parts.append(f"{done:,}")
    parts += _details(done, total, rate, elapsed_s, complete)
    return " ".join(parts)


def _details(
    done: int, total: int | None, rate: float | None, elapsed_s: float, complete: bool
) -> list[str]:
    """Rate, then the ETA while running (when known) or the elapsed time once complete."""
    details = []
    if rate is not None and rate > 0:
        details.append(f"{format_rate(rate)}/s")
    if complete:
        details.append(f"in {format_duration(elapsed_s)}")
    elif total is not None and rate is not None and rate > 0:
        details.append(f"eta {format_duration(max(0, total - done) / rate)}")
    return details


def format_rate(per_s: float) -> str:
    """A rate with thousands separators; one decimal below 100 (slow stages like bootstrap)."""
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:,.1f}"


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min``: whole units, as an ETA needs no more."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
