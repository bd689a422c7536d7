"""Event-time progress across partitions: how far every input has certainly got."""

from __future__ import annotations

from collections.abc import Iterable, Set


class WatermarkTracker:
    """Highest event time seen per partition; the watermark is the slowest busy partition's.

    A partition not read yet holds the watermark back entirely (its first records may be old).
    A partition the consumer has fully read (no lag) and that has had no new record for
    `idle_s` seconds of wall time is idle: it is left out, so a quiet topic does not stall
    expiry. The wait matters when producers write two topics at once: a partition that is
    momentarily caught up may still have records in flight, and event time can run far
    ahead of wall time (replays, simulations). If every partition is idle, the highest time
    seen anywhere is the watermark.
    """

    def __init__(self, highest: dict[str, float] | None = None, idle_s: float = 0.0) -> None:
        self.highest: dict[str, float] = dict(highest or {})
        self.idle_s = idle_s
        self._last_record: dict[str, float] = {}

    def observe(self, partition: str, event_time: float, now: float = 0.0) -> None:
        """Record an event of `partition` read at wall time `now` (monotonic seconds)."""
        self._last_record[partition] = now
        if event_time > self.highest.get(partition, float("-inf")):
            self.highest[partition] = event_time

    def current(self, partitions: Iterable[str], caught_up: Set[str], now: float = 0.0) -> float:
        """The watermark over `partitions`, leaving out those caught up and idle at `now`."""
        unknown = float("-inf")
        partitions = list(partitions)
        for p in partitions:  # first seen now: it is idle only after idle_s without records
            self._last_record.setdefault(p, now)
        busy = [
            self.highest.get(p, unknown)
            for p in partitions
            if p not in caught_up or now - self._last_record.get(p, -1e18) < self.idle_s
        ]
        if busy:
            return min(busy)
        return max(self.highest.values(), default=unknown)
