"""Event-time alignment of the partitions being read: which to pause so none runs far ahead.

Catching up on a backlog, a fetch is filled by bytes, so the topic of small records (outcomes)
reads hours of event time ahead of the topic of large ones (impressions): every outcome then
waits in the join for an impression not read yet, by the tens of thousands, up to the cap
that dead-letters them. Pausing a partition that is more than `max_ahead_s` ahead of the
slowest partition that still has records to read keeps the join's state to what the window
needs. The slowest such partition is never paused, so reading always progresses; partitions
with nothing left to read (caught up) neither hold others back nor are paused.
"""

from __future__ import annotations

from collections.abc import Mapping

_UNKNOWN = float("-inf")


def partitions_to_pause(
    highest: Mapping[str, float], lags: Mapping[str, int], max_ahead_s: float
) -> frozenset[str]:
    """The partitions to pause: those with records left whose highest event time read is more
    than `max_ahead_s` ahead of the slowest partition with records left (not read yet: -inf)."""
    behind = [p for p, lag in lags.items() if lag > 0]
    if len(behind) < 2:
        return frozenset()
    floor = min(highest.get(p, _UNKNOWN) for p in behind)
    limit = floor + max_ahead_s
    return frozenset(p for p in behind if highest.get(p, _UNKNOWN) > limit)
