"""The I/O the engine needs, as small Protocols: where records come from, where messages go, time.

The consumer, the closed loop and the traffic publisher take these as arguments; the Kafka
adapter (`streams.kafka_io`) implements them for a real broker and `streams.memory` in memory,
so commit order, dead letters, restores and crash points are tested without a broker.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from bandit.envelopes import Source

Record = tuple[Source, bytes | None]  # where it was read, and its value (None: a tombstone)


class MessageSink(Protocol):
    """Produces messages; `flush()` returns once everything sent so far is durable."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...

    def flush(self, timeout_s: float = 60.0) -> None: ...

    def close(self) -> None: ...


class RecordSource(Protocol):
    """Reads assigned partitions from given offsets, reports lag, commits consumed offsets."""

    def assign(self, start_offsets: Mapping[str, int]) -> None:
        """Read every partition of the topics, each from its offset here or from its start."""
        ...

    @property
    def partition_keys(self) -> Sequence[str]:
        """ "topic/partition" of every assigned partition."""
        ...

    def poll(self, timeout_ms: int) -> list[Record]:
        """The next batch of records, in offset order within each partition."""
        ...

    def lag_by_partition(self) -> dict[str, int]:
        """Records not yet read, per partition."""
        ...

    def pause_only(self, keys: Collection[str]) -> None:
        """Stop fetching exactly these partitions ("topic/partition") and resume every other;
        a paused partition's records are not returned until it is resumed, none lost."""
        ...

    def commit(self, offsets: Mapping[str, int]) -> None:
        """Record next-offsets as consumed (monitoring; checkpoints rule restarts)."""
        ...

    def close(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds (wall time for idleness and cadence, never event time)."""

    def __call__(self) -> float: ...
