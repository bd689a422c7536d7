"""`streams.confluent_io.ConfluentSource` (kafka.client_library: confluent-kafka) against the real
broker: records in offset order with their coordinates, a paused partition held back with
nothing lost, lag down to 0, group commits, and `nudge consume` learning exactly what it learns
with kafka-python from the same topics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from bandit.config import KafkaConfig, load_config
from bandit.envelopes import Source
from bandit.errors import BrokerAuthError, BrokerError
from streams.kafka_io import Producer, ensure_topics
from tests.integration import test_tls_scram as tls
from tests.integration.conftest import Deployment
from tests.integration.test_tls_scram import sasl_ssl  # noqa: F401 (the listener fixture)

confluent_kafka = pytest.importorskip("confluent_kafka")
from streams.confluent_io import ConfluentSource  # noqa: E402 (needs the optional library)

pytestmark = pytest.mark.kafka

PER_PARTITION = 3_000  # more than one poll's worth (max_poll_records below)


def value(partition: int, offset: int) -> bytes:
    return f"p{partition}-{offset}".encode()


@pytest.fixture
def filled(broker: str) -> KafkaConfig:
    """A fresh two-partition topic holding PER_PARTITION records in each partition (the last
    one of partition 1 a tombstone), and a kafka config whose impressions topic it is."""
    run = f"it-{uuid.uuid4().hex[:10]}"
    cfg = KafkaConfig(
        bootstrap_servers=broker, impressions_topic=f"{run}.impressions",
        outcomes_topic=f"{run}.outcomes", dead_letter_topic=f"{run}.dead-letters",
        group_id=run, max_poll_records=500,
    )  # fmt: skip
    ensure_topics(cfg, [cfg.impressions_topic], 2)
    producer = confluent_kafka.Producer({"bootstrap.servers": broker, "linger.ms": 20})
    for offset in range(PER_PARTITION):
        for partition in (0, 1):
            tombstone = partition == 1 and offset == PER_PARTITION - 1
            producer.produce(
                cfg.impressions_topic, partition=partition,
                value=None if tombstone else value(partition, offset),
            )  # fmt: skip
        producer.poll(0)
    assert producer.flush(30) == 0
    return cfg


@pytest.fixture
def source(filled: KafkaConfig) -> Iterator[ConfluentSource]:
    src = ConfluentSource(filled, [filled.impressions_topic])
    yield src
    src.close()


def read_until_quiet(
    src: ConfluentSource, into: dict[int, list[tuple[Source, bytes | None]]], quiet_polls: int = 2
) -> None:
    """Poll until `quiet_polls` polls in a row return nothing."""
    empty = 0
    while empty < quiet_polls:
        batch = src.poll(300)
        empty = 0 if batch else empty + 1
        for item in batch:
            into[item[0].partition].append(item)


def read_until_whole(
    src: ConfluentSource,
    into: dict[int, list[tuple[Source, bytes | None]]],
    partitions: tuple[int, ...] = (0, 1),
    wait_s: float = 30.0,
    counts: dict[int, int] | None = None,
) -> None:
    """Poll until each of `partitions` holds PER_PARTITION records (or its count in `counts`;
    librdkafka's first fetch, or its fetch again of a resumed partition, can take more than a
    couple of empty polls under load), or `wait_s` passes; then until two polls in a row
    bring nothing."""
    deadline = time.monotonic() + wait_s
    want = counts or {}
    while any(len(into[p]) < want.get(p, PER_PARTITION) for p in partitions):
        if time.monotonic() > deadline:
            break
        for item in src.poll(300):
            into[item[0].partition].append(item)
    read_until_quiet(src, into)


def test_records_come_back_in_offset_order_with_their_coordinates(
    source: ConfluentSource, filled: KafkaConfig
) -> None:
    topic = filled.impressions_topic
    source.assign({f"{topic}/0": 1000})  # partition 1 from its beginning
    read: dict[int, list[tuple[Source, bytes | None]]] = {0: [], 1: []}

    read_until_whole(source, read, counts={0: PER_PARTITION - 1000})

    assert source.partition_keys == [f"{topic}/0", f"{topic}/1"]
    assert read[0] == [(Source(topic, 0, o), value(0, o)) for o in range(1000, PER_PARTITION)]
    expected_1: list[tuple[Source, bytes | None]] = [
        (Source(topic, 1, o), value(1, o)) for o in range(PER_PARTITION - 1)
    ]
    expected_1.append((Source(topic, 1, PER_PARTITION - 1), None))  # the tombstone
    assert read[1] == expected_1


def test_lag_reaches_zero_once_everything_is_read(
    source: ConfluentSource, filled: KafkaConfig
) -> None:
    topic = filled.impressions_topic
    source.assign({})
    first: list[tuple[Source, bytes | None]] = []
    while not first:
        first = source.poll(300)
    early = source.lag_by_partition()
    read: dict[int, list[tuple[Source, bytes | None]]] = {0: [], 1: []}
    for item in first:
        read[item[0].partition].append(item)

    read_until_whole(source, read)

    assert sum(early.values()) > 0, early  # one batch of at most 500 records read
    assert source.lag_by_partition() == {f"{topic}/0": 0, f"{topic}/1": 0}


@pytest.mark.parametrize("read_before_pause", [False, True], ids=["unread", "partly-read"])
def test_a_paused_partition_is_held_back_and_resumes_where_it_stopped(
    source: ConfluentSource, filled: KafkaConfig, read_before_pause: bool
) -> None:
    topic = filled.impressions_topic
    source.assign({})
    read: dict[int, list[tuple[Source, bytes | None]]] = {0: [], 1: []}
    while read_before_pause and not read[0]:  # librdkafka has prefetched more of it by now
        for item in source.poll(300):
            read[item[0].partition].append(item)
    held = len(read[0])

    source.pause_only([f"{topic}/0"])
    read_until_whole(source, read, partitions=(1,))

    assert len(read[0]) == held < PER_PARTITION  # nothing of the paused partition...
    assert len(read[1]) == PER_PARTITION  # ...while the other one is read to its end

    source.pause_only([])
    read_until_whole(source, read)

    assert [s.offset for s, _ in read[0]] == list(range(PER_PARTITION))  # none lost or repeated
    assert [s.offset for s, _ in read[1]] == list(range(PER_PARTITION))


def test_commit_records_the_offsets_for_the_group(
    source: ConfluentSource, filled: KafkaConfig
) -> None:
    topic = filled.impressions_topic
    source.assign({})
    source.commit({f"{topic}/0": 1234, f"{topic}/1": 7})

    probe = confluent_kafka.Consumer(
        {"bootstrap.servers": filled.bootstrap_servers, "group.id": filled.group_id}
    )
    try:
        committed = probe.committed(
            [confluent_kafka.TopicPartition(topic, 0), confluent_kafka.TopicPartition(topic, 1)],
            timeout=10,
        )
    finally:
        probe.close()
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 1234), (1, 7)]


def with_client_library(dep: Deployment, library: str, workdir: Path) -> Deployment:
    """The same topics read by another group into other directories, with `library`."""
    data = yaml.safe_load(dep.path.read_text())
    run = f"it-{uuid.uuid4().hex[:10]}"
    data["kafka"].update(
        client_library=library, group_id=run, dead_letter_topic=f"{run}.dead-letters"
    )
    data["checkpoint"]["directory"] = str(workdir / "checkpoints")
    data["snapshots"]["directory"] = str(workdir / "snapshots")
    workdir.mkdir()
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return Deployment(path, load_config(path, environ={}), workdir)


def test_consume_learns_with_confluent_kafka_exactly_what_it_learns_with_kafka_python(
    deployment: Callable[..., Deployment], tmp_path: Path
) -> None:
    dep = deployment()
    summary: dict[str, Any] = dep.simulate(
        "--events", "3000", "--seed", "17", "--invalid-fraction", "0.02"
    )
    stats: dict[str, dict[str, Any]] = {}
    for library in ("kafka-python", "confluent-kafka"):
        run = with_client_library(dep, library, tmp_path / library)
        done = run.nudge(
            "consume", "--until-idle", "2", "--stats-json", str(run.workdir / "s.json")
        )
        assert done.returncode == 0, done.stderr
        stats[library] = orjson.loads((run.workdir / "s.json").read_bytes())

    kafka_python, confluent = stats["kafka-python"], stats["confluent-kafka"]
    assert confluent["consumed"] == kafka_python["consumed"] == summary["messages"]
    assert confluent["learned"] == kafka_python["learned"] == summary["expected"]["learned"]
    assert confluent["ledger"] == kafka_python["ledger"]  # the same events, not just as many
    assert confluent["dead_letters_by_reason"] == kafka_python["dead_letters_by_reason"]
    assert confluent["dead_letters_by_reason"] == summary["expected"]["dead_letters_by_reason"]
    assert confluent["pending"] == 0 and confluent["lag"] == 0


def sasl_ssl_config(password: str) -> KafkaConfig:
    """The README's SASL_SSL example (kafka-python's names) on the local SASL_SSL listener."""
    client = {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": tls.SCRAM_USER, "sasl_plain_password": password,
        "ssl_cafile": str(tls.CA_FILE),
    }  # fmt: skip
    run = f"it-{uuid.uuid4().hex[:10]}"
    return KafkaConfig(
        bootstrap_servers=tls.BOOTSTRAP, connect_timeout_s=tls.CONNECT_TIMEOUT_S, client=client,
        impressions_topic=f"{run}.impressions", outcomes_topic=f"{run}.outcomes",
        dead_letter_topic=f"{run}.dead-letters", group_id=run,
    )  # fmt: skip


@pytest.mark.usefixtures("sasl_ssl")
def test_reads_through_sasl_ssl_scram_configured_by_kafka_python_names() -> None:
    cfg = sasl_ssl_config(tls.SCRAM_PASSWORD)
    ensure_topics(cfg, [cfg.impressions_topic], 1)
    producer = Producer(cfg)
    producer.send(cfg.impressions_topic, None, b"over tls")
    producer.close()

    src = ConfluentSource(cfg, [cfg.impressions_topic])
    try:
        src.assign({})
        batch: list[tuple[Source, bytes | None]] = []
        while not batch:
            batch = src.poll(300)
    finally:
        src.close()
    assert batch == [(Source(cfg.impressions_topic, 0, 0), b"over tls")]


@pytest.mark.usefixtures("sasl_ssl")
def test_a_wrong_scram_password_fails_the_start_naming_the_refused_login() -> None:
    wrong = "not-the-scram-secret-0123"

    with pytest.raises(BrokerAuthError) as caught:
        ConfluentSource(sasl_ssl_config(wrong), ["unused"])

    assert str(caught.value) == (
        f"authentication to {tls.BOOTSTRAP} failed for user '{tls.SCRAM_USER}' "
        "(SASL SCRAM-SHA-512): check kafka.client.sasl_plain_username / sasl_plain_password"
    )


def test_an_unreachable_broker_fails_the_start_after_connect_timeout_s(broker: str) -> None:
    cfg = KafkaConfig(bootstrap_servers="127.0.0.1:1", connect_timeout_s=1)

    with pytest.raises(BrokerError) as caught:
        ConfluentSource(cfg, ["unused"])

    message = str(caught.value)
    assert message.startswith(
        "cannot reach Kafka at 127.0.0.1:1 within 1 s (kafka.connect_timeout_s)"
    )
    assert "Connection refused" in message
