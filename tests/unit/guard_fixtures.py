"""Records for closed-form tests of the event-time guard: skew X = 100 s, age H = 1,000 s,
K = 3 confirming records; each record is an outcome whose bytes are its event time."""

from __future__ import annotations

import itertools
from typing import Any

from bandit.envelopes import Envelope, Rejected, Source
from bandit.events import Event, Outcome, OutcomeLabel, Reason
from bandit.watermarks import EventTimeGuard

T0 = 1_767_600_000.0  # 2026-01-05T08:00:00Z
SKEW, AGE, K = 100.0, 1_000.0, 3
YEAR_9999 = 253_402_297_200.0
YEAR_1 = -62_135_596_800.0  # 0001-01-01T00:00:00Z

_offsets = itertools.count()


def record(ts: float, partition: int = 0, name: str | None = None) -> Envelope[Any]:
    """A record of partition `partition` stamped `ts` (an outcome: the guard reads only time)."""
    offset = next(_offsets)
    event = Outcome(name or f"e{offset}", ts, "quiz", OutcomeLabel.HELPFUL, None)
    return Envelope(event, f"{ts}".encode(), Source("nudge.outcomes", partition, offset))


def decode(raw: bytes) -> Event:
    """What a saved record decodes to again (its bytes are its time)."""
    return Outcome("x", float(raw.decode()), "quiz", OutcomeLabel.HELPFUL, None)


def run(g: EventTimeGuard, *records: Envelope[Any]) -> tuple[list[float], list[float]]:
    """Offer each record; the event times passed on and rejected, in order."""
    passed: list[float] = []
    refused: list[float] = []
    for r in records:
        p, x = g.offer(r)
        passed += [e.event.ts for e in p]
        refused += [ts_of(x_) for x_ in x]
    return passed, refused


def ts_of(rejected: Rejected) -> float:
    """The event time of a record the guard dead-lettered."""
    assert rejected.reason == Reason.IMPLAUSIBLE_EVENT_TIME.value
    return float(rejected.raw.decode())
