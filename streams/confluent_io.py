"""The record source on confluent-kafka (librdkafka), and the only module that imports it.

Chosen by `kafka.client_library: confluent-kafka` (the `fast` extra). Only the records
`nudge consume` reads come through it; dead letters, snapshots and topic creation stay on
kafka-python (`streams.kafka_io`). Like `MessageSource` it assigns partitions manually and
commits to the group only what a checkpoint covers. `kafka.client` keeps kafka-python's names:
it is checked and typed as for kafka-python's consumer, then the keys that consumer takes are
renamed to librdkafka's (`librdkafka_options`); one without a mapping is refused.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from bandit.config import KafkaConfig, mask_secrets, secret_values
from bandit.envelopes import Source, partition_key
from bandit.errors import BrokerError, ConfigError

# kafka-python's consumer class only as the reference of which `kafka.client` keys a consumer
# takes (and their types): the same check as for kafka-python, not a second list to keep.
from streams.kafka_io import (
    _SEE,
    KafkaConsumer,
    _check_sasl,
    client_options,
    login_refused,
    mechanism_refused,
    unreachable,
)

# librdkafka logs here; the lines of a failed start are kept back (the error raised says it).
LIBRDKAFKA_LOG = logging.getLogger("confluent_kafka")

# kafka-python consumer setting -> librdkafka property (same meaning, same unit).
LIBRDKAFKA_NAMES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "client_id": "client.id",
    "client_rack": "client.rack",
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_max_bytes": "fetch.max.bytes",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "receive_message_max_bytes": "receive.message.max.bytes",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "request_timeout_ms": "socket.timeout.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "max_in_flight_requests_per_connection": "max.in.flight.requests.per.connection",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "isolation_level": "isolation.level",
    "check_crcs": "check.crcs",
    "allow_auto_create_topics": "allow.auto.create.topics",
}
_PROBE_S = 0.5  # a refused login ends the start at once, not after kafka.connect_timeout_s


def librdkafka_options(cfg: KafkaConfig) -> dict[str, str]:
    """`kafka.client` as librdkafka properties for the record source's consumer.

    Keys are checked and typed as for kafka-python's consumer (unknown keys and bad values fail
    the same way); keys only a producer or admin client takes are left to kafka-python; a
    consumer key with no librdkafka mapping here is a `ConfigError` naming it.
    """
    options = client_options(cfg, KafkaConsumer)
    _check_sasl(options)
    out: dict[str, str] = {}
    for key, value in options.items():
        if key == "ssl_check_hostname":
            out["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif key in LIBRDKAFKA_NAMES:
            out[LIBRDKAFKA_NAMES[key]] = _text(value)
        else:
            raise ConfigError(
                f"kafka.client.{key}: not mapped to confluent-kafka (kafka.client_library: "
                "confluent-kafka); remove it or use client_library: kafka-python"
            )
    return out


def _text(value: Any) -> str:
    """librdkafka takes every property as text; booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _masked(text: str, cfg: KafkaConfig) -> str:
    return mask_secrets(text, secret_values(cfg.client))


@contextmanager
def _translated(what: str, cfg: KafkaConfig) -> Iterator[None]:
    try:
        yield
    except KafkaException as exc:
        raise BrokerError(_masked(f"Kafka {what} failed: {_describe(exc)}", cfg)) from exc


def _describe(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    if not isinstance(error, KafkaError):
        return repr(exc)
    return f"{error.name()}: {' '.join(error.str().split())}"  # some end in a newline


@contextmanager
def _quiet_unless_debug() -> Iterator[None]:
    """Drop librdkafka's log lines meanwhile, unless its logger is on at debug level."""
    if LIBRDKAFKA_LOG.isEnabledFor(logging.DEBUG):
        yield
        return

    def drop(record: logging.LogRecord) -> bool:
        return False

    LIBRDKAFKA_LOG.addFilter(drop)
    try:
        yield
    finally:
        LIBRDKAFKA_LOG.removeFilter(drop)


def _open_consumer(cfg: KafkaConfig, errors: list[KafkaError]) -> Consumer:
    """A librdkafka consumer that has reached the brokers within `kafka.connect_timeout_s`;
    what stops it becomes one `ConfigError` / `BrokerAuthError` / `BrokerError`."""
    options = librdkafka_options(cfg)
    settings: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "group.id": cfg.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_uncommitted",  # kafka-python's default
        # Prefetch a few polls' worth per partition, not librdkafka's 100,000 messages / 64 MB:
        # the consumer's memory stays flat, and a partition paused in librdkafka (which drops
        # what it prefetched) costs little to fetch again.
        "queued.min.messages": 10 * cfg.max_poll_records,
        "queued.max.messages.kbytes": 32_768,
        "error_cb": errors.append,
        "logger": LIBRDKAFKA_LOG,
        **options,
    }
    try:
        consumer = Consumer(settings)
    except (KafkaException, ValueError, TypeError) as exc:
        why = _describe(exc) if isinstance(exc, KafkaException) else str(exc)
        message = f"kafka.client: confluent-kafka refused the settings: {why}; {_SEE}"
        raise ConfigError(_masked(message, cfg)) from exc
    deadline = time.monotonic() + cfg.connect_timeout_s
    while True:
        try:
            consumer.list_topics(timeout=min(_PROBE_S, max(0.01, deadline - time.monotonic())))
        except KafkaException as exc:
            with _quiet_unless_debug():
                consumer.poll(0)  # hands over the errors met so far (error_cb) and log lines
            refused = any(e.code() == KafkaError._AUTHENTICATION for e in errors)
            if refused or time.monotonic() >= deadline:
                with _quiet_unless_debug():
                    consumer.close()
                raise _start_error(cfg, errors) from exc
        else:
            errors.clear()  # retried and overcome
            return consumer


def _start_error(cfg: KafkaConfig, errors: list[KafkaError]) -> BrokerError | ConfigError:
    """The error of a failed start, worded as `streams.kafka_io` words kafka-python's."""
    mechanism = cfg.client.get("sasl_mechanism")
    refused = [e.str() for e in errors if e.code() == KafkaError._AUTHENTICATION]
    if any("Unsupported SASL mechanism" in text for text in refused):
        return mechanism_refused(cfg, mechanism)
    if refused:
        return login_refused(cfg, mechanism, cfg.client.get("sasl_plain_username"))
    return unreachable(
        cfg, [e.str() for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
    )


class ConfluentSource:
    """`RecordSource` on librdkafka: reads the impression and outcome topics from given offsets,
    pauses partitions on request, reports lag from cached watermarks, commits synchronously.

    Pausing: librdkafka drops what it prefetched of a partition it pauses and fetches it again
    on resume, a round trip each time; event-time alignment pauses and resumes the partition
    running ahead every few polls. So a pause is first kept here: records of a paused
    partition that librdkafka hands over are held back (in offset order) and returned once it
    is resumed; only when a partition holds two polls' worth of them is it paused in
    librdkafka as well. Nothing is lost or repeated either way.
    """

    def __init__(self, cfg: KafkaConfig, topics: list[str]) -> None:
        self.cfg = cfg
        self.topics = topics
        self._errors: list[KafkaError] = []  # from librdkafka (error_cb), served by each poll
        self._consumer = _open_consumer(cfg, self._errors)
        self._partitions: dict[str, TopicPartition] = {}
        self._starts: dict[str, int | None] = {}  # None: from the partition's beginning
        self._bounds_at_start: dict[str, tuple[int, int]] = {}  # (first, end) at assignment
        self._paused: set[str] = set()  # what the consumer asked for
        self._fetch_paused: set[str] = set()  # paused in librdkafka too
        self._held: dict[str, deque[tuple[Source, bytes | None]]] = {}
        self._closed = False

    def assign(self, start_offsets: Mapping[str, int], wait_s: float = 30.0) -> None:
        """Assign every partition of the topics, each from the checkpoint's offset or its start;
        waits up to `wait_s` for topics the brokers do not know yet (just created)."""
        deadline = time.monotonic() + wait_s
        partitions: dict[str, TopicPartition] = {}
        with _translated("metadata", self.cfg):
            for topic in self.topics:
                ids = self._partition_ids(topic)
                while not ids and time.monotonic() < deadline:
                    time.sleep(0.2)
                    ids = self._partition_ids(topic)
                if not ids:
                    raise BrokerError(
                        f"topic {topic!r} does not exist on {self.cfg.bootstrap_servers}"
                    )
                for p in ids:
                    partitions[partition_key(topic, p)] = TopicPartition(topic, p)
            self._starts = {key: start_offsets.get(key) for key in partitions}
            self._consumer.assign(
                [
                    TopicPartition(tp.topic, tp.partition, _or_beginning(self._starts[key]))
                    for key, tp in partitions.items()
                ]
            )
            # what each partition has to read, before librdkafka's first fetch of it tells
            self._bounds_at_start = {
                key: self._consumer.get_watermark_offsets(
                    tp, timeout=self.cfg.connect_timeout_s, cached=False
                )
                for key, tp in partitions.items()
            }
        self._partitions = partitions
        self._paused = set()
        self._fetch_paused = set()
        self._held = {}

    def _partition_ids(self, topic: str) -> list[int]:
        metadata = self._consumer.list_topics(topic, timeout=self.cfg.connect_timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    @property
    def partition_keys(self) -> list[str]:
        """ "topic/partition" of every assigned partition."""
        return list(self._partitions)

    def poll(self, timeout_ms: int) -> list[tuple[Source, bytes | None]]:
        """The next batch: waits up to `timeout_ms` for a first record, then takes what librdkafka
        has fetched already, up to `kafka.max_poll_records`; offset order within a partition."""
        limit = self.cfg.max_poll_records
        out = self._released(limit)
        with _translated("poll", self.cfg):
            if out:
                messages = self._consumer.consume(limit - len(out), 0) if len(out) < limit else []
            else:
                messages = self._consumer.consume(1, timeout_ms / 1000)
                if messages and limit > 1:
                    messages += self._consumer.consume(limit - 1, 0)
        self._raise_fatal()
        for message in messages:
            if message.error() is not None:
                self._on_error(message)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            record = (Source(topic, partition, offset), message.value())
            key = record[0].partition_key
            if key in self._paused:
                self._hold(key, record)
            else:
                out.append(record)
        return out

    def _released(self, limit: int) -> list[tuple[Source, bytes | None]]:
        """Held records of partitions resumed since, oldest first, up to `limit`."""
        out: list[tuple[Source, bytes | None]] = []
        for key, held in self._held.items():
            if key in self._paused:
                continue
            while held and len(out) < limit:
                out.append(held.popleft())
        return out

    def _hold(self, key: str, record: tuple[Source, bytes | None]) -> None:
        """Keep a record of a paused partition; past a poll's worth, pause it in librdkafka."""
        held = self._held.setdefault(key, deque())
        held.append(record)
        if len(held) >= 2 * self.cfg.max_poll_records and key not in self._fetch_paused:
            with _translated("pause", self.cfg):
                self._consumer.pause([self._partitions[key]])
            self._fetch_paused.add(key)

    def _raise_fatal(self) -> None:
        """A fatal librdkafka error stops the consumer; others are retried by librdkafka, which
        logs them itself."""
        errors = list(self._errors)
        self._errors.clear()
        for error in errors:
            if error.fatal():
                raise BrokerError(_masked(f"Kafka consumer failed: {error.str()}", self.cfg))

    def _on_error(self, message: Message) -> None:
        """An error in place of a record: fatal or about a partition (not authorized, gone)
        stops the consumer; a transient one is logged and retried by librdkafka."""
        error = message.error()
        if error is None:
            return
        if error.fatal() or (message.topic() is not None and not error.retriable()):
            where = f" on {message.topic()}/{message.partition()}" if message.topic() else ""
            raise BrokerError(_masked(f"Kafka poll failed{where}: {error.str()}", self.cfg))
        LIBRDKAFKA_LOG.warning("Kafka poll: %s", error.str())

    def lag_by_partition(self) -> dict[str, int]:
        """Records not yet read per partition: the high watermark of the last fetch (cached by
        librdkafka, no request), or for a partition not fetched yet its offsets at assignment,
        less the position."""
        lag: dict[str, int] = {}
        with _translated("position", self.cfg):
            positions = self._consumer.position(list(self._partitions.values()))
            for tp in positions:
                key = partition_key(tp.topic, tp.partition)
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:  # not fetched yet
                    low, high = self._bounds_at_start.get(key, (low, high))
                position = tp.offset if tp.offset >= 0 else self._starts.get(key)
                if position is None:
                    position = low
                if high >= 0 and position >= 0:
                    held = self._held.get(key)
                    lag[key] = max(0, high - position) + (len(held) if held else 0)
        return lag

    def pause_only(self, keys: Collection[str]) -> None:
        """Return no record of exactly these partitions until resumed, every other one's again
        (held records first); see the class for how librdkafka is paused."""
        wanted = set(keys) & set(self._partitions)  # as the other sources: others ignored
        resume = [self._partitions[k] for k in sorted(self._fetch_paused - wanted)]
        if resume:
            with _translated("pause", self.cfg):
                self._consumer.resume(resume)
            self._fetch_paused &= wanted
        self._paused = wanted

    def commit(self, offsets: Mapping[str, int]) -> None:
        """Commit next-offsets to the consumer group, synchronously (as `MessageSource` does)."""
        to_commit = []
        for key, offset in offsets.items():
            topic, _, partition = key.rpartition("/")
            to_commit.append(TopicPartition(topic, int(partition), offset))
        if not to_commit:
            return
        with _translated("commit", self.cfg):
            done = self._consumer.commit(offsets=to_commit, asynchronous=False)
        failed = [tp for tp in done or [] if tp.error is not None]
        if failed:
            tp = failed[0]
            raise BrokerError(
                _masked(f"Kafka commit failed for {tp.topic}/{tp.partition}: {tp.error}", self.cfg)
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()


def _or_beginning(offset: int | None) -> int:
    return OFFSET_BEGINNING if offset is None else offset
