"""The adapter to kafka-python, and the only module that imports it.

Partitions are assigned manually (no group rebalancing): the checkpoint, not the broker, says
where to resume, and offsets are committed to the group only after the checkpoint that covers
them, so the group's lag is always true. kafka-python errors become `BrokerError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from bandit.config import KafkaConfig
from bandit.envelopes import Source, partition_key
from bandit.errors import BrokerError

log = logging.getLogger(__name__)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except KafkaError as exc:
        raise BrokerError(f"Kafka {what} failed: {exc!r}") from exc


def ensure_topics(cfg: KafkaConfig, topics: Iterable[str], partitions: int) -> None:
    """Create the topics that do not exist yet (single replica, for local and test brokers)."""
    with _translated("admin"):
        admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers, **cfg.client)
        try:
            existing = set(admin.list_topics())
            new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
            if new:
                with suppress(TopicAlreadyExistsError):  # created meanwhile by someone else
                    admin.create_topics(new)
        finally:
            admin.close()


SNAPSHOT_MESSAGE_BYTES = 64 * 1024 * 1024


def ensure_snapshot_topic(cfg: KafkaConfig, topic: str) -> None:
    """Create the compacted snapshot topic (latest snapshot per policy name) if missing."""
    with _translated("admin"):
        admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers, **cfg.client)
        try:
            if topic not in set(admin.list_topics()):
                configs = {
                    "cleanup.policy": "compact",
                    "max.message.bytes": str(SNAPSHOT_MESSAGE_BYTES),
                }
                with suppress(TopicAlreadyExistsError):
                    admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
        finally:
            admin.close()


class MessageSource:
    """Reads the impression and outcome topics from given offsets; tracks lag per partition."""

    def __init__(self, cfg: KafkaConfig, topics: list[str]) -> None:
        self.cfg = cfg
        self.topics = topics
        with _translated("consumer start"):
            self._consumer = KafkaConsumer(
                bootstrap_servers=cfg.bootstrap_servers,
                group_id=cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=cfg.max_poll_records,
                **cfg.client,
            )
        self._partitions: list[TopicPartition] = []

    def assign(self, start_offsets: Mapping[str, int], wait_s: float = 30.0) -> None:
        """Assign every partition of the topics; seek to the checkpoint's offsets or the start."""
        deadline = time.monotonic() + wait_s
        partitions: list[TopicPartition] = []
        with _translated("metadata"):
            for topic in self.topics:
                ids = self._consumer.partitions_for_topic(topic)
                while not ids and time.monotonic() < deadline:
                    time.sleep(0.2)
                    ids = self._consumer.partitions_for_topic(topic)
                if not ids:
                    raise BrokerError(
                        f"topic {topic!r} does not exist on {self.cfg.bootstrap_servers}"
                    )
                partitions += [TopicPartition(topic, p) for p in sorted(ids)]
            self._consumer.assign(partitions)
            for tp in partitions:
                offset = start_offsets.get(partition_key(tp.topic, tp.partition))
                if offset is None:
                    self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, offset)
        self._partitions = partitions

    @property
    def partition_keys(self) -> list[str]:
        """ "topic/partition" of every assigned partition."""
        return [partition_key(tp.topic, tp.partition) for tp in self._partitions]

    def poll(self, timeout_ms: int) -> list[tuple[Source, bytes | None]]:
        """The next batch of records as (source, value bytes), in partition order."""
        with _translated("poll"):
            batches = self._consumer.poll(
                timeout_ms=timeout_ms, max_records=self.cfg.max_poll_records
            )
        out: list[tuple[Source, bytes | None]] = []
        for tp, records in batches.items():
            out.extend((Source(tp.topic, tp.partition, r.offset), r.value) for r in records)
        return out

    def lag_by_partition(self) -> dict[str, int]:
        """Records not yet read per partition (from the last fetch's high watermark)."""
        lag: dict[str, int] = {}
        for tp in self._partitions:
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            with _translated("position"):
                lag[partition_key(tp.topic, tp.partition)] = max(0, high - self._consumer.position(tp))
        return lag

    def commit(self, offsets: Mapping[str, int]) -> None:
        """Commit next-offsets to the consumer group (for monitoring; checkpoints rule restarts)."""
        to_commit: dict[TopicPartition, OffsetAndMetadata] = {}
        for key, offset in offsets.items():
            topic, _, partition = key.rpartition("/")
            to_commit[TopicPartition(topic, int(partition))] = OffsetAndMetadata(offset, "", -1)
        if to_commit:
            with _translated("commit"):
                self._consumer.commit(to_commit)

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class Producer:
    """Produces with acks=all (dead letters, simulated traffic); `flush()` before a checkpoint."""

    def __init__(self, cfg: KafkaConfig, max_request_size: int = 1_048_576) -> None:
        with _translated("producer start"):
            self._producer = KafkaProducer(
                bootstrap_servers=cfg.bootstrap_servers,
                acks="all",
                linger_ms=20,
                max_request_size=max_request_size,
                **cfg.client,
            )

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        with _translated("produce"):
            self._producer.send(topic, key=key, value=value, headers=headers or [])

    def flush(self, timeout_s: float = 60.0) -> None:
        with _translated("flush"):
            self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        with _translated("producer close"):
            self._producer.flush()
            self._producer.close()


def read_topic(
    cfg: KafkaConfig, topic: str, idle_ms: int = 3000
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Every record of `topic` from the beginning as (key, value, headers); for tests and tools."""
    with _translated("read"):
        consumer = KafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=idle_ms,
            **cfg.client,
        )
        try:
            ids = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in ids])
            consumer.seek_to_beginning()
            return [(r.key, r.value, dict(r.headers or [])) for r in consumer]
        finally:
            consumer.close()


def end_offsets(cfg: KafkaConfig, topics: Iterable[str]) -> dict[str, int]:
    """The next offset to be written in every partition of `topics` ("topic/partition" keys)."""
    with _translated("end offsets"):
        consumer = KafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers, enable_auto_commit=False, **cfg.client
        )
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(consumer.partitions_for_topic(topic) or set())
            ]
            ends = consumer.end_offsets(partitions)
            return {partition_key(tp.topic, tp.partition): int(off) for tp, off in ends.items()}
        finally:
            consumer.close()


class TopicFollower:
    """Reads every partition of one topic from the beginning, then follows it (no group)."""

    def __init__(self, cfg: KafkaConfig, topic: str, max_message_bytes: int) -> None:
        with _translated("follower start"):
            self._consumer = KafkaConsumer(
                bootstrap_servers=cfg.bootstrap_servers,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=max_message_bytes,
                fetch_max_bytes=max_message_bytes,
                **cfg.client,
            )
            ids = self._consumer.partitions_for_topic(topic) or set()
            self._consumer.assign([TopicPartition(topic, p) for p in sorted(ids)])
            self._consumer.seek_to_beginning()

    def poll(self, timeout_ms: int) -> list[tuple[bytes | None, bytes]]:
        with _translated("poll"):
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        return [(r.key, r.value) for records in batches.values() for r in records]

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def read_range(
    cfg: KafkaConfig,
    topics: Iterable[str],
    start: int | float | None = None,
    end: int | float | None = None,
    idle_s: float = 30.0,
) -> list[tuple[Source, bytes | None]]:
    """The records of `topics` from `start` up to `end` as (source, value), by topic, partition
    and offset; bounded: it stops at the end offsets taken when it starts, never follows.

    `start` / `end` each: None (the beginning / the end), an int offset for every partition
    (start inclusive, end exclusive, clipped to what the partition holds), or a float
    epoch-seconds record timestamp (the first offset at or after it, via offsets_for_times).
    """
    for name, bound in (("start", start), ("end", end)):
        if isinstance(bound, bool) or not isinstance(bound, int | float | None):
            raise TypeError(f"{name} must be None, an int offset or float epoch seconds: {bound!r}")
    with _translated("range read"):
        consumer = KafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers, enable_auto_commit=False, **cfg.client
        )
        try:
            partitions = []
            for topic in topics:
                ids = consumer.partitions_for_topic(topic)
                if not ids:
                    raise BrokerError(f"topic {topic!r} does not exist on {cfg.bootstrap_servers}")
                partitions += [TopicPartition(topic, p) for p in sorted(ids)]
            first = consumer.beginning_offsets(partitions)
            last = consumer.end_offsets(partitions)
            lows = _bound_offsets(consumer, partitions, start, first, last, first)
            highs = _bound_offsets(consumer, partitions, end, first, last, last)
            bounds = {tp: (lows[tp], highs[tp]) for tp in partitions if lows[tp] < highs[tp]}
            return _read_bounded(consumer, bounds, cfg, idle_s)
        finally:
            consumer.close()


def _bound_offsets(
    consumer: KafkaConsumer,
    partitions: list[TopicPartition],
    bound: int | float | None,
    first: Mapping[TopicPartition, int],
    last: Mapping[TopicPartition, int],
    default: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """One offset per partition for a range bound, within [first, last]."""
    if bound is None:
        return {tp: int(default[tp]) for tp in partitions}
    if isinstance(bound, int):
        return {tp: min(max(bound, int(first[tp])), int(last[tp])) for tp in partitions}
    found = consumer.offsets_for_times({tp: int(bound * 1000) for tp in partitions})
    return {tp: int(last[tp]) if found[tp] is None else found[tp].offset for tp in partitions}


def _read_bounded(
    consumer: KafkaConsumer,
    bounds: Mapping[TopicPartition, tuple[int, int]],
    cfg: KafkaConfig,
    idle_s: float,
) -> list[tuple[Source, bytes | None]]:
    """Poll the assigned partitions from their low to their high offset (exclusive)."""
    consumer.assign(list(bounds))
    for tp, (low, _) in bounds.items():
        consumer.seek(tp, low)
    read: dict[TopicPartition, list[tuple[Source, bytes | None]]] = {tp: [] for tp in bounds}
    unfinished = set(bounds)
    deadline = time.monotonic() + idle_s
    while unfinished:
        batches = consumer.poll(timeout_ms=cfg.poll_timeout_ms, max_records=cfg.max_poll_records)
        for tp, records in batches.items():
            high = bounds[tp][1]
            read[tp].extend(
                (Source(tp.topic, tp.partition, r.offset), r.value)
                for r in records
                if r.offset < high
            )
        if batches:
            deadline = time.monotonic() + idle_s
        done = {tp for tp in unfinished if consumer.position(tp) >= bounds[tp][1]}
        if done:
            consumer.pause(*done)
            unfinished -= done
        if unfinished and time.monotonic() > deadline:
            behind = sorted(partition_key(tp.topic, tp.partition) for tp in unfinished)
            raise BrokerError(f"no records for {idle_s}s before the end offsets of {behind}")
    return [item for tp in bounds for item in read[tp]]
