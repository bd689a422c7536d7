"""`nudge.replay_command.load_kafka` against the real broker: the same decisions as the file loader."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bandit.errors import InvalidEvent, ReplayInputError
from bandit.events import decode_event
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from nudge.replay_command import load_kafka
from replay.logged import LoggedData
from replay.sources import load_events
from streams.kafka_io import read_range

pytestmark = pytest.mark.kafka

EVENTS, SEED, INVALID = 3_000, 13, 0.02
COLUMNS = ("event_ids", "triggers", "learners", "timestamps", "mask", "chosen", "pscore",
           "logging_pmf", "reward", "labels")  # fmt: skip


def by_event_id(data: LoggedData) -> LoggedData:
    """The rows sorted by event id: the Kafka loader merges topics in event time, the file
    loader reads arrival order, so the join may settle the same decisions in another order."""
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
