"""An event with the bytes it came from and where it came from, and the record of a rejection."""

from __future__ import annotations

from dataclasses import field
from typing import Generic, TypeVar

from bandit.events import Event
from bandit.value_types import value_type

E = TypeVar("E", bound=Event)


def partition_key(topic: str, partition: int) -> str:
    """The "topic/partition" key of offsets, lags and watermarks."""
    return f"{topic}/{partition}"


@value_type
class Source:
    """Where a message was read: a Kafka topic/partition/offset, or a file and line number."""

    topic: str
    partition: int
    offset: int
    _partition_key: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Stable identity of the message, used as the dead-letter key (dedupe after a crash)."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def partition_key(self) -> str:
        """ "topic/partition" of the partition it was read from (made once: the consumer asks
        for it several times per message)."""
        key = self._partition_key
        if key is None:
            key = partition_key(self.topic, self.partition)
            object.__setattr__(self, "_partition_key", key)
        return key


@value_type
class Envelope(Generic[E]):
    """A decoded event, the exact bytes it was decoded from, and its source."""

    event: E
    raw: bytes
    source: Source


@value_type
class Rejected:
    """A message that will not be learned: why, its original bytes and its source."""

    reason: str
    detail: str
    raw: bytes
    source: Source
