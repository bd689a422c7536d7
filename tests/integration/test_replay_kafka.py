"""`nudge.replay_command.load_kafka` against the real broker: the same decisions as the file loader,
and the same join as `nudge consume` on the same topics."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from bandit.errors import InvalidEvent, ReplayInputError
from bandit.events import decode_event
from bandit.ports import Record
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from nudge.replay_command import load_kafka
from replay.logged import LoggedData
from replay.sources import load_events
from streams.kafka_io import Producer, ensure_topics, read_range
from streams.stats import Ledger
from tests.integration.conftest import Deployment
from tests.unit.reading_order_cases import IMP, LATE_ON_ITS_PARTITION, OUT, records, rewards

pytestmark = pytest.mark.kafka

EVENTS, SEED, INVALID = 3_000, 13, 0.02
COLUMNS = ("event_ids", "triggers", "learners", "timestamps", "mask", "chosen", "pscore",
           "logging_pmf", "reward", "labels")  # fmt: skip


def by_event_id(data: LoggedData) -> LoggedData:
    """The rows sorted by event id: the Kafka loader reads the topics partition by partition,
    the file loader in arrival order, so the join may settle the same decisions in another
    order."""
    return data.subset(np.argsort(data.event_ids.astype(str), kind="stable"))


@pytest.fixture
def published(deployment, tmp_path):
    dep = deployment()
    path = tmp_path / "events.jsonl"
    before = time.time()
    dep.simulate("--events", str(EVENTS), "--seed", str(SEED), "--invalid-fraction", str(INVALID),
                 "--out", str(path))  # fmt: skip
    return dep, path, before


def test_kafka_gives_the_same_decisions_as_the_file_of_the_same_messages(published):
    dep, path, _ = published

    from_kafka = by_event_id(load_kafka(dep.config, on_error="skip"))
    from_file = by_event_id(load_events(path, dep.config, on_error="skip"))

    assert from_kafka.n == from_file.n > 0.9 * EVENTS
    assert from_kafka.actions == from_file.actions
    for name in COLUMNS:
        np.testing.assert_array_equal(
            getattr(from_kafka, name), getattr(from_file, name), err_msg=name
        )
    assert from_kafka.impressions == from_file.impressions
    assert from_kafka.skipped == from_file.skipped


def test_an_invalid_record_is_an_error_naming_topic_partition_offset(published):
    dep, _, _ = published
    cfg = dep.config
    truth = simulate_traffic(
        World(SEED, cfg.simulator.learners, cfg.simulator.courses),
        cfg.simulator, cfg.join, EVENTS, SEED, INVALID,
    )  # fmt: skip
    impressions = [m.value for m in truth.messages if m.kind == "impression"]
    first_bad = next(i for i, raw in enumerate(impressions) if _invalid(raw, cfg))

    with pytest.raises(ReplayInputError) as caught:
        load_kafka(cfg)

    assert caught.value.where == f"{cfg.kafka.impressions_topic}/0/{first_bad}"


def _invalid(raw: bytes, cfg) -> bool:
    try:
        decode_event(raw, cfg.event_rules())
    except InvalidEvent:
        return True
    return False


def test_an_offset_range_reads_exactly_those_offsets_and_fewer_decisions(published):
    dep, _, _ = published
    topic = dep.config.kafka.impressions_topic

    records = read_range(dep.config.kafka, [topic], 100, 1000)

    assert [s.offset for s, _ in records] == list(range(100, 1000))
    assert {s.topic for s, _ in records} == {topic}
    part = load_kafka(dep.config, start=100, end=1000, on_error="skip")
    full = load_kafka(dep.config, on_error="skip")
    assert 0 < part.n < full.n


def test_a_time_range_selects_by_record_timestamp(published):
    dep, _, before = published

    assert load_kafka(dep.config, start=before, on_error="skip").n == (
        load_kafka(dep.config, on_error="skip").n
    )
    with pytest.raises(ReplayInputError, match="no decision"):
        load_kafka(dep.config, end=before, on_error="skip")
    with pytest.raises(ReplayInputError, match="no decision"):
        load_kafka(dep.config, start=time.time() + 3600, on_error="skip")


# ---- the consumer's join ---------------------------------------------------------------------


def produce(dep: Deployment, messages: list[Record]) -> None:
    """Send each message to its topic (one partition each), keyed by its event id."""
    producer = Producer(dep.config.kafka)
    try:
        for source, value in messages:
            assert value is not None
            producer.send(source.topic, key=orjson.loads(value)["event_id"].encode(), value=value)
        producer.flush()
    finally:
        producer.close()


def committed(dep: Deployment, partitions: list[str]) -> dict[str, int | None]:
    """The next offsets the consumer group committed for these "topic/partition"s."""
    kafka = dep.config.kafka
    probe = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=kafka.group_id,
        enable_auto_commit=False,
    )  # fmt: skip
    try:
        return {
            key: probe.committed(TopicPartition(key.rpartition("/")[0], 0)) for key in partitions
        }
    finally:
        probe.close()


def ledger(event_ids: list[str]) -> dict[str, object]:
    """The learned-ids digest as the consumer's stats JSON writes it."""
    of = Ledger.of(event_ids)
    return {"count": of.count, "digest": f"{of.digest:016x}"}


def test_an_outcome_the_live_consumer_dead_letters_as_late_is_not_joined_in_replay(deployment):
    # The issue's case as it happens live: e1's outcome (100 s after it) reaches Kafka once the
    # consumer has read the impressions past 400 s and an outcome at 420 s, so its watermark
    # has closed e1's window (300 s, plus 60 s of lateness). Sorted by event time, replay
    # used to join that outcome.
    dep = deployment(checkpoint={"every_events": 1})  # offsets committed after every poll
    kafka = dep.config.kafka
    ensure_topics(kafka, [kafka.impressions_topic, kafka.outcomes_topic], 1)
    topics = {IMP: kafka.impressions_topic, OUT: kafka.outcomes_topic}
    *first, late = records(LATE_ON_ITS_PARTITION, topics)
    assert orjson.loads(late[1] or b"")["event_id"] == "e1"
    produce(dep, first)
    read_first = {f"{kafka.impressions_topic}/0": 6, f"{kafka.outcomes_topic}/0": 4}
    stats_path = dep.workdir / "stats.json"
    consumer = dep.popen("consume", "--until-idle", "8", "--stats-json", str(stats_path))
    try:
        deadline = time.monotonic() + 60
        while committed(dep, list(read_first)) != read_first:
            assert consumer.poll() is None and time.monotonic() < deadline, "not consumed"
            time.sleep(0.2)
        produce(dep, [late])
        assert consumer.wait(timeout=120) == 0
    finally:
        if consumer.poll() is None:
            consumer.kill()
        _, stderr = consumer.communicate()
    stats = orjson.loads(stats_path.read_bytes())

    data = load_kafka(dep.config)

    assert stats["dead_letters_by_reason"] == {"late_outcome": 1}, stderr[-2000:]
    assert data.skipped == Counter({"late_outcome": 1})
    assert rewards(data) == {"e1": 0.0, "e2": 1.0, "e3": 0.0}  # e1: the default outcome
    assert ledger(data.event_ids.tolist()) == stats["ledger"]


def test_consume_and_replay_kafka_learn_the_same_decisions_and_dead_letter_the_same(deployment):
    dep = deployment(kafka={"topic_partitions": 2})
    dep.simulate("--events", str(EVENTS), "--seed", str(SEED), "--invalid-fraction", str(INVALID))
    stats_path = dep.workdir / "stats.json"
    consumed = dep.nudge("consume", "--until-idle", "6", "--stats-json", str(stats_path))
    assert consumed.returncode == 0, consumed.stderr[-2000:]
    stats = orjson.loads(stats_path.read_bytes())
    dsjson = dep.workdir / "replayed.dsjson"

    done = dep.nudge(
        "replay", "--kafka", "--skip-invalid", "--policy", "uniform", "--estimators", "IPS",
        "--no-triggers", "--no-effects", "--json", "--quiet", "--write-dsjson", str(dsjson),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-2000:]
    replayed = orjson.loads(done.stdout)
    event_ids = [orjson.loads(line)["EventId"] for line in dsjson.read_bytes().splitlines()]
    assert replayed["n_events"] == stats["learned"] == len(event_ids) > 0.9 * EVENTS
    assert ledger(event_ids) == stats["ledger"]  # the same impression ids
    assert replayed["skipped"] == stats["dead_letters_by_reason"]
    assert stats["dead_letters_by_reason"]["late_outcome"] > 0


def test_one_record_per_poll_with_strict_alignment_reads_every_partition_to_its_end(deployment):
    """Reproduces a stall: with `max_poll_records: 1`, small fetches and partitions paused at
    every record, a partition resumed while another's batch still had records stayed parked
    in kafka-python 3.0 after that batch ran dry, and the consumer stopped with records unread
    (lag 94 of 1,500 events). Read to the end, the consumer reads in replay's own order, so
    both join exactly the same (`streams.kafka_io._unpark_resumed`, before every poll)."""
    dep = deployment(
        kafka={"topic_partitions": 2, "max_poll_records": 1,
               "client": {"max_partition_fetch_bytes": 4096}},
        join={"max_read_ahead_s": 1e-6},
        simulator={"max_transport_jitter_s": 600},
    )  # fmt: skip
    dep.simulate("--events", "1500", "--seed", str(SEED), "--invalid-fraction", str(INVALID))
    stats_path = dep.workdir / "stats.json"
    consumed = dep.nudge("consume", "--until-idle", "8", "--stats-json", str(stats_path))
    assert consumed.returncode == 0, consumed.stderr[-2000:]
    stats = orjson.loads(stats_path.read_bytes())

    data = load_kafka(dep.config, on_error="skip")

    assert stats["lag"] == 0, stats
    assert stats["read_pauses"] > 100  # the partitions were paused and resumed throughout
    assert ledger(data.event_ids.tolist()) == stats["ledger"]
    assert +data.skipped == Counter(stats["dead_letters_by_reason"])
