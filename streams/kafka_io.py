"""The adapter to kafka-python, and the only module that imports it.

Partitions are assigned manually (no group rebalancing): the checkpoint, not the broker, says
where to resume, and offsets are committed to the group only after the checkpoint that covers
them, so the group's lag is always true.

kafka-python's errors are translated here: settings it refuses (`kafka.client`) become
`ConfigError`, a refused login `BrokerAuthError`, everything else `BrokerError`. Every client
starts through `_open`: it gives up after `kafka.connect_timeout_s`, and kafka-python's own log
lines of the start are kept back (unless debug logging is on), since the one error raised
says what they would.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    AuthorizationError,
    KafkaConfigurationError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from kafka.net.sasl import SASL_MECHANISMS
from kafka.structs import OffsetAndMetadata

from bandit.config import KafkaConfig, is_secret_key, mask_secrets, secret_values
from bandit.envelopes import Source, partition_key
from bandit.errors import BrokerAuthError, BrokerError, ConfigError, RecordRefused

log = logging.getLogger(__name__)


def _keep_bytes_read_with_the_close() -> None:
    """kafka-python 3.0 drops the bytes a socket read returned together with the peer's close
    (the read's error wins). A broker refusing a login sends its answer and closes at once, so
    the refusal was lost on most attempts and a wrong password read as an unreachable broker.
    Hand those bytes on first; the close is read again by the next read. (Skipped if a later
    kafka-python moved these internals.)"""
    try:
        from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport
    except ImportError:
        return
    for transport in (KafkaTCPTransport, KafkaSSLTransport):
        read = transport.__dict__.get("_sock_recv")
        if read is None or getattr(read, "keeps_bytes", False):
            continue

        def _sock_recv(self: Any, _read: Any = read) -> tuple[bytes, Exception | None]:
            data, err = _read(self)
            return (data, None) if data else (data, err)

        _sock_recv.keeps_bytes = True  # type: ignore[attr-defined]
        transport._sock_recv = _sock_recv


_keep_bytes_read_with_the_close()


def _unpark_resumed(consumer: KafkaConsumer) -> None:
    """kafka-python 3.0 parks the records it fetched for a partition that gets paused and hands
    them back after `resume` only when no other partition's records are in line (`is None`);
    a spent batch still in line (empty, not None) kept a resumed partition parked, and never
    fetched again, for good. Clear the spent batch so the parked ones return: at each resume,
    and before each poll, as the batch in line at a resume may be spent only later (seen with
    `max_poll_records: 1`: a partition resumed while another's batch still had records stayed
    parked after that batch ran dry). (Skipped if a later kafka-python moved these
    internals.)"""
    fetcher = getattr(consumer, "_fetcher", None)
    in_line = getattr(fetcher, "_next_partition_records", None)
    if in_line is not None and not in_line:
        fetcher._next_partition_records = None  # type: ignore[union-attr]

_Client = TypeVar("_Client", KafkaAdminClient, KafkaConsumer, KafkaProducer)
_CLIENTS: tuple[type[Any], ...] = (KafkaAdminClient, KafkaConsumer, KafkaProducer)
# Integer settings whose kafka-python default is None (the operating system's buffer size).
_INT_KEYS = frozenset({"receive_buffer_bytes", "send_buffer_bytes"})
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}  # fmt: skip
_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SEE = "see the README, 'Running against an existing Kafka cluster'"


@contextmanager
def _translated(what: str, cfg: KafkaConfig | None = None) -> Iterator[None]:
    try:
        yield
    except KafkaConfigurationError as exc:
        raise ConfigError(
            _masked(f"kafka.client: kafka-python refused the settings: {exc}", cfg)
        ) from exc
    except KafkaError as exc:
        raise BrokerError(_masked(f"Kafka {what} failed: {exc!r}", cfg)) from exc


def _retriable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retriable", False))


def _masked(text: str, cfg: KafkaConfig | None) -> str:
    return mask_secrets(text, secret_values(cfg.client)) if cfg is not None else text


def client_options(cfg: KafkaConfig, client: type[Any]) -> dict[str, Any]:
    """`kafka.client` for one kafka-python client class: the keys that class takes, text values
    typed like kafka-python's own default for the key.

    `kafka.client` is handed to every client that takes a key (admin, consumer, producer); a key
    none of them takes is a `ConfigError`. Text (environment overrides are text) becomes an int,
    float or bool where kafka-python's default for that key is one (`"30000"` for
    `request_timeout_ms`, `"false"` for `ssl_check_hostname`); other text stays text (`acks:
    all`, passwords).
    """
    known = set().union(*(c.DEFAULT_CONFIG for c in _CLIENTS))
    unknown = sorted(set(cfg.client) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=2)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"kafka.client: unknown key {unknown[0]!r} (kafka-python does not take it{hint}); "
            f"{_SEE}"
        )
    defaults = client.DEFAULT_CONFIG
    return {k: _typed(k, v, defaults[k]) for k, v in cfg.client.items() if k in defaults}


def _typed(key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        return value
    shown = "***" if is_secret_key(key) else repr(value)
    text = value.strip()
    if isinstance(default, bool):
        if text.lower() in _BOOLEANS:
            return _BOOLEANS[text.lower()]
        raise ConfigError(f"kafka.client.{key}: kafka-python takes true or false, got {shown}")
    if isinstance(default, int | float) or key in _INT_KEYS:
        with suppress(ValueError):
            return int(text)
        if isinstance(default, float):
            with suppress(ValueError):
                return float(text)
        if key != "acks":  # acks also takes "all"
            raise ConfigError(f"kafka.client.{key}: kafka-python takes a number, got {shown}")
    return value


def _check_sasl(options: Mapping[str, Any]) -> None:
    """What kafka-python would only find out on the wire, failing the bootstrap by timeout."""
    protocol = str(options.get("security_protocol", "PLAINTEXT"))
    mechanism = options.get("sasl_mechanism")
    if protocol.startswith("SASL") and mechanism not in SASL_MECHANISMS:
        raise ConfigError(
            f"kafka.client.sasl_mechanism: security_protocol {protocol} needs one of "
            f"{sorted(SASL_MECHANISMS)}, got {mechanism!r}; {_SEE}"
        )
    if protocol.startswith("SASL") and mechanism in _PASSWORD_MECHANISMS:
        missing = [
            k for k in ("sasl_plain_username", "sasl_plain_password") if options.get(k) is None
        ]
        if missing:
            raise ConfigError(
                f"kafka.client: SASL {mechanism} needs {' and '.join(missing)}; {_SEE}"
            )


class _StartLog(logging.Handler):
    """Keeps the exceptions kafka-python logs while a client starts: a failed bootstrap raises a
    bare timeout, and they say why (refused connection, refused login)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.exceptions: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.exceptions += [a for a in args if isinstance(a, BaseException)]
        if record.exc_info and record.exc_info[1] is not None:
            self.exceptions.append(record.exc_info[1])


@contextmanager
def _start_log() -> Iterator[_StartLog]:
    """Collect kafka-python's log records during a client start; hide them unless the `kafka`
    logger is on at debug level."""
    kafka_log = logging.getLogger("kafka")
    quiet = not kafka_log.isEnabledFor(logging.DEBUG)
    saved = kafka_log.level, kafka_log.propagate
    seen = _StartLog()
    kafka_log.addHandler(seen)
    if quiet:
        kafka_log.setLevel(logging.WARNING)
        kafka_log.propagate = False
    try:
        yield seen
    finally:
        kafka_log.removeHandler(seen)
        if quiet:
            kafka_log.setLevel(saved[0])
            kafka_log.propagate = saved[1]


def _open(client: type[_Client], cfg: KafkaConfig, what: str, **ours: Any) -> _Client:
    """Start a kafka-python client on `cfg` (`kafka.client` overrides `ours`, nudgebandit's
    defaults for this client); translate whatever stops it."""
    options = {**ours, **client_options(cfg, client)}
    _check_sasl(options)
    timeout_ms = round(cfg.connect_timeout_s * 1000)
    with _start_log() as seen:
        try:
            return client(
                bootstrap_servers=cfg.bootstrap_servers, bootstrap_timeout_ms=timeout_ms, **options
            )
        except (KafkaConfigurationError, TypeError, ValueError) as exc:
            message = f"kafka.client: kafka-python refused the settings: {exc}; {_SEE}"
            raise ConfigError(_masked(message, cfg)) from exc
        except KafkaError as exc:
            raise _start_error(cfg, options, what, exc, seen.exceptions) from exc


def mechanism_refused(cfg: KafkaConfig, mechanism: object) -> BrokerAuthError:
    """The brokers do not offer the configured SASL mechanism (worded once for both clients)."""
    return BrokerAuthError(
        f"{cfg.bootstrap_servers} does not offer SASL {mechanism}: check "
        f"kafka.client.sasl_mechanism (and security_protocol); {_SEE}"
    )


def login_refused(cfg: KafkaConfig, mechanism: object, user: object) -> BrokerAuthError:
    """The brokers refused the configured user's login."""
    return BrokerAuthError(
        f"authentication to {cfg.bootstrap_servers} failed for user {user!r} (SASL "
        f"{mechanism}): check kafka.client.sasl_plain_username / sasl_plain_password"
    )


def unreachable(cfg: KafkaConfig, causes: list[str]) -> BrokerError:
    """No broker answered within `kafka.connect_timeout_s`; the last cause seen, if any."""
    cause = f" (last: {causes[-1]})" if causes else ""
    return BrokerError(
        _masked(
            f"cannot reach Kafka at {cfg.bootstrap_servers} within {cfg.connect_timeout_s:g} s "
            f"(kafka.connect_timeout_s){cause}",
            cfg,
        )
    )


def _start_error(
    cfg: KafkaConfig,
    options: Mapping[str, Any],
    what: str,
    exc: KafkaError,
    seen: list[BaseException],
) -> ConfigError | BrokerError:
    """The error of a failed client start, from its exception and those kafka-python logged."""
    mechanism = options.get("sasl_mechanism")
    if any(isinstance(e, UnsupportedSaslMechanismError) for e in seen):
        return mechanism_refused(cfg, mechanism)
    if any(isinstance(e, SaslAuthenticationFailedError) for e in seen):
        return login_refused(cfg, mechanism, options.get("sasl_plain_username"))
    if isinstance(exc, KafkaTimeoutError):
        return unreachable(cfg, [str(e) for e in seen if isinstance(e, KafkaConnectionError)])
    return BrokerError(_masked(f"Kafka {what} failed: {exc!r}", cfg))


def ensure_topics(cfg: KafkaConfig, topics: Iterable[str], partitions: int) -> None:
    """Create the topics that do not exist yet (single replica, for local and test brokers)."""
    admin = _open(KafkaAdminClient, cfg, "admin")
    with _translated("admin", cfg):
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
    admin = _open(KafkaAdminClient, cfg, "admin")
    with _translated("admin", cfg):
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
        self._consumer = _open(
            KafkaConsumer, cfg, "consumer start",
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=cfg.max_poll_records,
        )  # fmt: skip
        self._partitions: list[TopicPartition] = []
        self._ends_at_start: dict[TopicPartition, int] = {}  # end offsets read at assignment

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
            self._ends_at_start = dict(self._consumer.end_offsets(partitions))
        self._partitions = partitions

    @property
    def partition_keys(self) -> list[str]:
        """ "topic/partition" of every assigned partition."""
        return [partition_key(tp.topic, tp.partition) for tp in self._partitions]

    def poll(self, timeout_ms: int) -> list[tuple[Source, bytes | None]]:
        """The next batch of records as (source, value bytes), in partition order."""
        _unpark_resumed(self._consumer)
        with _translated("poll"):
            batches = self._consumer.poll(
                timeout_ms=timeout_ms, max_records=self.cfg.max_poll_records
            )
        out: list[tuple[Source, bytes | None]] = []
        for tp, records in batches.items():
            out.extend((Source(tp.topic, tp.partition, r.offset), r.value) for r in records)
        return out

    def lag_by_partition(self) -> dict[str, int]:
        """Records not yet read per partition: from the last fetch's high watermark, or, for a
        partition not fetched yet, the end offset it had at assignment (kafka-python learns a
        high watermark only from a fetch: a backlog's first partitions read would otherwise
        run ahead of the others before event-time alignment knew those had records)."""
        lag: dict[str, int] = {}
        for tp in self._partitions:
            high = self._consumer.highwater(tp)
            if high is None:
                high = self._ends_at_start.get(tp)
            if high is None:
                continue
            with _translated("position"):
                lag[partition_key(tp.topic, tp.partition)] = max(
                    0, high - self._consumer.position(tp)
                )
        return lag

    def pause_only(self, keys: Collection[str]) -> None:
        """Fetch nothing more of exactly these partitions until the next call (kafka-python
        keeps what it fetched of them and returns it once they are resumed)."""
        wanted = set(keys)
        paused = [tp for tp in self._partitions if partition_key(tp.topic, tp.partition) in wanted]
        resumed = [tp for tp in self._partitions if tp not in set(paused)]
        with _translated("pause"):
            if resumed:
                self._consumer.resume(*resumed)
                _unpark_resumed(self._consumer)
            if paused:
                self._consumer.pause(*paused)

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


def _refused(exc: KafkaError, topic: str, key: bytes | None) -> RecordRefused | BrokerError:
    """A failed produce: refused for good (`RecordRefused`, with what to change) or a broker
    problem (`BrokerError`, retriable: unreachable, timed out, leader moving)."""
    if exc.retriable:
        return BrokerError(f"Kafka produce to {topic} failed: {exc}")
    hint = ""
    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError):
        hint = " (record too large for the topic's max.message.bytes or max_request_size)"
    elif isinstance(exc, AuthorizationError):
        hint = " (not authorized: check the topic's ACLs for this client)"
    return RecordRefused(f"Kafka refused a record for {topic}: {exc}{hint}", topic, key)


class Producer:
    """Produces with acks=all (dead letters, simulated traffic); `flush()` before a checkpoint.

    A record Kafka refuses, when it is sent or later when it is delivered, raises from `send`
    or from the next `flush`: `RecordRefused` for good (too large, not authorized), else
    `BrokerError`; a failed delivery is never dropped silently.
    """

    def __init__(self, cfg: KafkaConfig, max_request_size: int = 1_048_576) -> None:
        self._producer = _open(
            KafkaProducer, cfg, "producer start",
            acks="all", linger_ms=20, max_request_size=max_request_size,
        )  # fmt: skip
        self._failed: list[tuple[str, bytes | None, BaseException]] = []  # from the I/O thread

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        try:
            future = self._producer.send(topic, key=key, value=value, headers=headers or [])
        except KafkaError as exc:
            raise _refused(exc, topic, key) from exc
        future.add_errback(lambda exc: self._failed.append((topic, key, exc)))

    def flush(self, timeout_s: float = 60.0) -> None:
        with _translated("flush"):
            self._producer.flush(timeout=timeout_s)
        if self._failed:
            failed, self._failed = self._failed, []
            topic, key, exc = next((f for f in failed if not _retriable(f[2])), failed[0])
            if isinstance(exc, KafkaError):
                raise _refused(exc, topic, key) from exc
            raise BrokerError(f"Kafka produce to {topic} failed: {exc!r}") from exc

    def close(self) -> None:
        with _translated("producer close"):
            self._producer.flush()
            self._producer.close()


def read_topic(
    cfg: KafkaConfig, topic: str, idle_ms: int = 3000
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Every record of `topic` from the beginning as (key, value, headers); for tests and tools."""
    consumer = _open(
        KafkaConsumer, cfg, "read",
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=idle_ms,
    )  # fmt: skip
    with _translated("read", cfg):
        try:
            ids = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in ids])
            consumer.seek_to_beginning()
            return [(r.key, r.value, dict(r.headers or [])) for r in consumer]
        finally:
            consumer.close()


def end_offsets(cfg: KafkaConfig, topics: Iterable[str]) -> dict[str, int]:
    """The next offset to be written in every partition of `topics` ("topic/partition" keys)."""
    consumer = _open(KafkaConsumer, cfg, "end offsets", enable_auto_commit=False)
    with _translated("end offsets", cfg):
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
        self._consumer = _open(
            KafkaConsumer, cfg, "follower start",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max_message_bytes,
            fetch_max_bytes=max_message_bytes,
        )  # fmt: skip
        with _translated("follower start", cfg):
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
    consumer = _open(KafkaConsumer, cfg, "range read", enable_auto_commit=False)
    with _translated("range read", cfg):
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
