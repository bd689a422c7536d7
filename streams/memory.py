"""In-memory I/O for the consumer: a broker, a record source over it, a sink, a manual clock.

They implement the ports of `bandit.ports` as `streams.kafka_io` does for Kafka, with the
guarantees the consumer relies on and nothing more, so tests of commit order, dead letters,
restores and crash points run in milliseconds without a broker:
- a record is durable once `MemoryBroker.append` returns; a sink's sends become records only
  on `flush()`, so a crash before the flush loses them, as it would with an unflushed Kafka
  producer (`MemorySink.crash()` simulates that crash);
- a source reads every partition of its topics in offset order from the offsets it is given,
  at most `max_poll_records` per poll, and its commits are stored on the broker per group;
- time moves only when told: a poll that finds nothing waits out its timeout on the clock.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from bandit.envelopes import Source, partition_key
from bandit.errors import BrokerError
from bandit.ports import Record


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record on the broker: where it is, its key, value and headers."""

    source: Source
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class ManualClock:
    """Monotonic seconds that move only when told to (`advance`)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back; got {seconds} seconds")
        self._now += seconds


class MemoryBroker:
    """Topics of partitions of records, in memory, and the offsets each group committed.

    A topic written to before it was created gets one partition (as a broker that creates
    topics on first use does). A keyed record goes to the partition its key hashes to
    (crc32, stable across runs); an unkeyed one to the partitions in turn.
    """

    def __init__(self) -> None:
        self._topics: dict[str, list[list[StoredRecord]]] = {}
        self._next_unkeyed: dict[str, int] = {}
        self._committed: dict[str, dict[str, int]] = {}

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        """Create `topic` with `partitions` empty partitions (refused if it exists)."""
        if partitions < 1:
            raise ValueError(f"a topic needs at least one partition, got {partitions}")
        if topic in self._topics:
            raise ValueError(f"topic {topic!r} exists already")
        self._topics[topic] = [[] for _ in range(partitions)]

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has (BrokerError if there is no such topic)."""
        return len(self._log(topic))

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Source:
        """Write one record durably; returns where it was written."""
        if topic not in self._topics:
            self.create_topic(topic)
        log = self._topics[topic]
        if key is not None:
            partition = zlib.crc32(key) % len(log)
        else:
            partition = self._next_unkeyed.get(topic, 0) % len(log)
            self._next_unkeyed[topic] = partition + 1
        source = Source(topic, partition, len(log[partition]))
        log[partition].append(StoredRecord(source, key, value, tuple(headers)))
        return source

    def records(self, topic: str, partition: int | None = None) -> list[StoredRecord]:
        """The records of one partition, or of every partition in turn, in offset order."""
        log = self._log(topic)
        if partition is None:
            return [record for part in log for record in part]
        return list(log[partition])

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next record of this partition will get."""
        return len(self._log(topic)[partition])

    def commit(self, group: str, offsets: Mapping[str, int]) -> None:
        """Store next-offsets ("topic/partition" -> offset) as consumed by `group`."""
        self._committed.setdefault(group, {}).update(offsets)

    def committed(self, group: str) -> dict[str, int]:
        """The offsets `group` committed last, per partition (empty before its first commit)."""
        return dict(self._committed.get(group, {}))

    def _log(self, topic: str) -> list[list[StoredRecord]]:
        try:
            return self._topics[topic]
        except KeyError:
            raise BrokerError(f"topic {topic!r} does not exist on the in-memory broker") from None


class MemorySource:
    """A `RecordSource` over a `MemoryBroker`: reads every partition of `topics`.

    Each poll takes up to `max_poll_records`, shared out evenly over the partitions that have
    records (in turn, so none starves). `fetch_records` (topic -> records per partition per
    poll) replaces that share for a topic, as Kafka's fetches are bounded by bytes, not
    records: a topic of small messages is read many more records per poll than one of large
    messages, so during a catch-up one topic runs ahead of the other in event time.
    `clock`, when given, advances by the poll timeout when a poll finds nothing, as a real
    poll blocks that long. `commits` lists every commit.
    """

    def __init__(
        self,
        broker: MemoryBroker,
        topics: Sequence[str],
        *,
        group: str = "nudge-learner",
        max_poll_records: int = 500,
        clock: ManualClock | None = None,
        fetch_records: Mapping[str, int] | None = None,
    ) -> None:
        if max_poll_records < 1:
            raise ValueError(f"max_poll_records must be at least 1, got {max_poll_records}")
        self.broker = broker
        self.topics = list(topics)
        self.group = group
        self.max_poll_records = max_poll_records
        self.clock = clock
        self.fetch_records = dict(fetch_records or {})
        self.commits: list[dict[str, int]] = []
        self._positions: dict[tuple[str, int], int] = {}
        self._turn = 0
        self._closed = False
        self._paused: set[tuple[str, int]] = set()
        self.pauses: list[frozenset[str]] = []  # every pause_only call, in order

    def assign(self, start_offsets: Mapping[str, int]) -> None:
        """Read every partition of the topics, each from its offset here or from its start."""
        self._check_open()
        positions: dict[tuple[str, int], int] = {}
        for topic in self.topics:
            for partition in range(self.broker.partitions(topic)):
                end = self.broker.end_offset(topic, partition)
                start = start_offsets.get(partition_key(topic, partition), 0)
                positions[(topic, partition)] = min(max(start, 0), end)
        self._positions = positions

    @property
    def partition_keys(self) -> list[str]:
        """ "topic/partition" of every assigned partition."""
        return [partition_key(topic, partition) for topic, partition in self._positions]

    def poll(self, timeout_ms: int) -> list[Record]:
        """The next batch, in offset order within each partition."""
        self._check_open()
        behind = [tp for tp in self._positions if self._lag(tp) > 0 and tp not in self._paused]
        if not behind:
            if self.clock is not None:
                self.clock.advance(timeout_ms / 1000.0)
            return []
        start = self._turn % len(behind)
        self._turn += 1
        share = max(1, self.max_poll_records // len(behind))
        budget = self.max_poll_records
        batch: list[Record] = []
        for topic, partition in behind[start:] + behind[:start]:
            fixed = self.fetch_records.get(topic)
            if fixed is None and budget == 0:
                continue
            take = min(share if fixed is None else fixed, self._lag((topic, partition)))
            if fixed is None:
                take = min(take, budget)
                budget -= take
            position = self._positions[(topic, partition)]
            for record in self.broker.records(topic, partition)[position : position + take]:
                batch.append((record.source, record.value))
            self._positions[(topic, partition)] = position + take
        return batch

    def lag_by_partition(self) -> dict[str, int]:
        """Records not yet read, per partition."""
        return {partition_key(*tp): self._lag(tp) for tp in self._positions}

    def pause_only(self, keys: Collection[str]) -> None:
        """Poll skips exactly these partitions ("topic/partition") until the next call."""
        self._check_open()
        self.pauses.append(frozenset(keys))
        wanted = set(keys)
        self._paused = {tp for tp in self._positions if partition_key(*tp) in wanted}

    def commit(self, offsets: Mapping[str, int]) -> None:
        """Store next-offsets on the broker for this source's group."""
        self._check_open()
        self.commits.append(dict(offsets))
        self.broker.commit(self.group, offsets)

    def close(self) -> None:
        self._closed = True

    def _lag(self, tp: tuple[str, int]) -> int:
        return self.broker.end_offset(*tp) - self._positions[tp]

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError("the in-memory source is closed")


class MemorySink:
    """A `MessageSink` into a `MemoryBroker` whose sends become records only on `flush()`.

    `close()` flushes first, as the Kafka producer's does. `crash()` is what a kill -9 does to
    a producer: what was not flushed is lost, and the dead process makes no further calls
    (any that the test's unwinding still makes are ignored).
    """

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.flushes = 0
        self._unflushed: list[tuple[str, bytes | None, bytes, tuple[tuple[str, bytes], ...]]] = []
        self._closed = False
        self._crashed = False

    @property
    def unflushed(self) -> int:
        """Messages sent but not yet durable."""
        return len(self._unflushed)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if self._crashed:
            return
        if self._closed:
            raise BrokerError("send on a closed in-memory sink")
        self._unflushed.append((topic, key, value, tuple(headers or ())))

    def flush(self, timeout_s: float = 60.0) -> None:
        """Make everything sent so far durable on the broker, in the order it was sent."""
        del timeout_s  # an in-memory flush never waits
        if self._crashed:
            return
        for topic, key, value, headers in self._unflushed:
            self.broker.append(topic, key, value, headers)
        self._unflushed.clear()
        self.flushes += 1

    def close(self) -> None:
        if self._crashed or self._closed:
            return
        self.flush()
        self._closed = True

    def crash(self) -> None:
        """Lose what was not flushed and ignore every later call."""
        self._unflushed.clear()
        self._crashed = True
