"""The consumer's reward join over records already read from Kafka, in the consumer's order.

`nudge consume` reads each partition in offset order, passes every record through the
event-time guard, adds it to the `RewardJoin`, and after each poll moves the join's watermark
to the slowest partition's highest event time (`WatermarkTracker`); catching up, it pauses a
partition running ahead of the slowest (`partitions_to_pause`, `join.max_read_ahead_s`). So
an outcome its partition delivers after records more than `allowed_lateness_s` past the end
of its window is late there (a dead letter), whatever its own event time.

`join_as_read` drives that same guard, tracker and join, one record at a time, always from
the partition furthest behind in event time (ties: the earlier partition): the consumer
reading one record per poll with alignment at zero slack. Within a partition the order is
exactly the consumer's. Across partitions it cannot be: how Kafka splits the partitions into
polls depends on bytes and timing, a real consumer moves its watermark once per poll (a
record read in the same poll as those that pass its window is not late there; replay's
polls of one record are the strictest reading), lets partitions run up to
`max_read_ahead_s` apart, and leaves a caught-up partition out after `idle_partition_s` of
wall time. Replay has no wall clock: a partition with no record counts for nothing, the
others hold event time back until every record is read; then all are idle, as at the end of
`nudge consume --until-idle` (longer than `idle_partition_s`), before the open windows close.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from bandit.config import JoinConfig, RewardConfig
from bandit.envelopes import Envelope, Rejected
from bandit.join import JoinedEvent, RewardJoin
from bandit.watermarks import EventTimeGuard, WatermarkTracker

T = TypeVar("T")
_NEG_INF = float("-inf")


def reading_order(
    partitions: Mapping[str, Sequence[T]], highest: Mapping[str, float]
) -> Iterator[tuple[str, T]]:
    """(partition, item) of every item, each partition in its own order, the next always from
    the partition whose `highest` event time is lowest (unknown: -inf), ties to the partition
    given first. `highest` is read before each step: the caller raises it as items count."""
    heap: list[tuple[float, int, str]] = [
        (highest.get(key, _NEG_INF), rank, key)
        for rank, (key, items) in enumerate(partitions.items())
        if items
    ]
    heapq.heapify(heap)
    positions = dict.fromkeys(partitions, 0)
    while heap:
        _, rank, key = heapq.heappop(heap)
        items, position = partitions[key], positions[key]
        positions[key] = position + 1
        yield key, items[position]
        if position + 1 < len(items):  # only this partition's highest can have moved
            heapq.heappush(heap, (highest.get(key, _NEG_INF), rank, key))


def join_as_read(
    partitions: Mapping[str, Sequence[Envelope[Any]]], config: JoinConfig, rewards: RewardConfig
) -> tuple[list[JoinedEvent], list[Rejected]]:
    """The decisions learned and the events dead-lettered by a consumer reading `partitions`
    ("topic/partition" -> decoded events in offset order) in `reading_order`, then ending its
    bounded run; both in the order the consumer settles them."""
    guard = EventTimeGuard.for_join(config)
    tracker = WatermarkTracker()  # idle_s 0: partitions caught up are idle at once
    join = RewardJoin(config, rewards)
    counted = [key for key, envelopes in partitions.items() if envelopes]
    joined: list[JoinedEvent] = []
    rejected: list[Rejected] = []

    def pass_on(passed: list[Envelope[Any]], refused: list[Rejected]) -> None:
        rejected.extend(refused)
        for envelope in passed:
            tracker.observe(envelope.source.partition_key, envelope.event.ts)
            join.add(envelope)

    def settle() -> None:
        j, r = join.drain()
        joined.extend(j)
        rejected.extend(r)

    for key, envelope in reading_order(partitions, tracker.highest):
        if envelope.source.partition_key != key:
            raise ValueError(f"a record of {envelope.source.partition_key} under {key!r}")
        pass_on(*guard.offer(envelope))
        join.advance(tracker.current(counted, caught_up=frozenset()))
        settle()
    join.advance(tracker.current(counted, caught_up=frozenset(counted)))
    settle()
    pass_on(*guard.close())
    join.close_all()
    settle()
    return joined, rejected
