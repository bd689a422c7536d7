"""Event-time progress across partitions: how far every input has certainly got."""

from __future__ import annotations

from collections.abc import Set


class WatermarkTracker:
    """Highest event time seen per partition; the watermark is the slowest busy partition's.

    A partition the consumer has fully read (no lag) is not holding anything back and is left
    out, so an idle topic does not stall expiry; if every partition is caught up, the
    highest time seen anywhere is the watermark.
    """

    def __init__(self, highest: dict[str, float] | None = None) -> None:
        self.highest: dict[str, float] = dict(highest or {})

    def observe(self, partition: str, event_time: float) -> None:
        if event_time > self.highest.get(partition, float("-inf")):
            self.highest[partition] = event_time

    def current(self, caught_up: Set[str]) -> float:
        if not self.highest:
            return float("-inf")
        busy = [t for p, t in self.highest.items() if p not in caught_up]
        return min(busy) if busy else max(self.highest.values())
