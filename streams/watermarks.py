"""Event-time progress across partitions: how far every input has certainly got."""

from __future__ import annotations

from collections.abc import Iterable, Set


class WatermarkTracker:
    """Highest event time seen per partition; the watermark is the slowest busy partition's.

    A partition not read yet holds the watermark back entirely (its first records may be old).
    A partition the consumer has fully read (no lag) is not holding anything back and is left
    out, so an idle topic does not stall expiry; if every partition is caught up, the
    highest time seen anywhere is the watermark.
    """

    def __init__(self, highest: dict[str, float] | None = None) -> None:
        self.highest: dict[str, float] = dict(highest or {})

    def observe(self, partition: str, event_time: float) -> None:
        if event_time > self.highest.get(partition, float("-inf")):
            self.highest[partition] = event_time

    def current(self, partitions: Iterable[str], caught_up: Set[str]) -> float:
        """The watermark over `partitions`, ignoring those in `caught_up`."""
        unknown = float("-inf")
        busy = [self.highest.get(p, unknown) for p in partitions if p not in caught_up]
        if busy:
            return min(busy)
        return max(self.highest.values(), default=unknown)
