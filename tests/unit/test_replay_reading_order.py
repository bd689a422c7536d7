"""Replay of records read from Kafka joins them in the consumer's reading order
(`replay.reading_order`): each partition in offset order, the partitions kept level in event
time, the watermark the slowest partition's. Hand-made partitions of a few records, and the
in-memory consumer itself as the reference on simulated streams."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from consumer_fixtures import BOUNDED, make_config
from reading_order_cases import (
    IMP,
    LATE_ON_ITS_PARTITION,
    OUT,
    impression,
    outcome,
    records,
    rewards,
)

from bandit.config import Config, load_config
from bandit.envelopes import Envelope, Source
from bandit.events import decode_event
from bandit.join import join_events
from bandit.ports import Record
from bandit.simulation.publish import publish
from bandit.simulation.traffic import SimulationRun, simulate_traffic
from bandit.simulation.world import World
from replay.reading_order import join_as_read, reading_order
from replay.sources import load_records
from streams.consumer import StreamLearner
from streams.memory import ManualClock, MemoryBroker, MemorySink, MemorySource
from streams.stats import ConsumerStats, Ledger

ROOT = Path(__file__).resolve().parents[2]
WHERE = "kafka test"


@pytest.fixture(scope="module")
def config() -> Config:
    # window 300 s, allowed lateness 60 s: a window ending at t closes once every partition
    # has read past t + 60
    return load_config(ROOT / "config.yaml", environ={})


def test_an_outcome_its_partition_delivers_after_the_window_closed_is_late_as_in_the_consumer(
    config,
):
    data = load_records(records(LATE_ON_ITS_PARTITION), config, where=WHERE)

    assert data.skipped == Counter({"late_outcome": 1})
    assert rewards(data) == {"e1": 0.0, "e2": 1.0, "e3": 0.0}  # e1 got the default outcome


def test_sorting_the_same_records_by_event_time_would_have_joined_that_outcome(config):
    envelopes = [
        Envelope(decode_event(raw, config.event_rules()), raw, source)
        for source, raw in records(LATE_ON_ITS_PARTITION)
        if raw is not None
    ]
    envelopes.sort(key=lambda e: e.event.ts)

    joined, rejected = join_events(envelopes, config.join, config.rewards)

    assert rejected == []
    assert {e.impression.event_id: e.reward for e in joined}["e1"] == 1.0


def test_an_outcome_out_of_order_by_less_than_the_allowed_lateness_is_joined(config):
    partitions = {
        (IMP, 0): [impression("e1", 0), impression("e2", 340), impression("e3", 500)],
        (OUT, 0): [outcome("e2", 350), outcome("e1", 290)],  # 350 < 300 + 60
    }

    data = load_records(records(partitions), config, where=WHERE)

    assert data.skipped == Counter()
    assert rewards(data) == {"e1": 1.0, "e2": 1.0, "e3": 0.0}


def test_a_topic_written_long_after_the_other_is_still_joined_partitions_are_read_level(config):
    # every outcome reached Kafka after every impression: only the order within a partition
    # counts, as the consumer pauses the partition running ahead in event time
    partitions = {
        (IMP, 0): [impression(f"e{i}", 100 * i) for i in range(20)],
        (OUT, 0): [outcome(f"e{i}", 100 * i + 50) for i in range(20)],
    }
    shuffled = list(reversed(records(partitions)))  # the order records are given in is free

    data = load_records(shuffled, config, where=WHERE)

    assert data.skipped == Counter()
    assert rewards(data) == {f"e{i}": 1.0 for i in range(20)}


def test_the_slowest_partition_of_several_holds_the_watermark(config):
    # when e1's outcome is read, the impressions have passed 360 s (e1's window end plus the
    # allowed lateness), but outcomes/1 is at 200 s: the watermark is the slowest partition's
    partitions = {
        (IMP, 0): [impression("e1", 0), impression("e2", 400), impression("e3", 500)],
        (OUT, 0): [outcome("e2", 420), outcome("e3", 510)],
        (OUT, 1): [outcome("e9", 200), outcome("e1", 250)],
        (IMP, 1): [impression("e9", 150), impression("e8", 900)],
    }

    data = load_records(records(partitions), config, where=WHERE)

    assert data.skipped == Counter()
    assert rewards(data)["e1"] == 1.0


def test_an_impression_its_partition_delivers_after_its_outcome_was_given_up_is_defaulted(config):
    # the outcome of e1 waits for its impression until the watermark passes its time plus
    # the unmatched wait (the window: 300 s); the impression comes on its partition later
    partitions = {
        (OUT, 0): [outcome("e1", 10), outcome("e2", 520)],
        (IMP, 0): [impression("e2", 500), impression("e3", 800), impression("e1", 5)],
    }

    data = load_records(records(partitions), config, where=WHERE)

    assert data.skipped == Counter({"unmatched_outcome": 1})
    assert rewards(data) == {"e1": 0.0, "e2": 1.0, "e3": 0.0}


# ---- the order alone ------------------------------------------------------------------------


def order_of(partitions: dict[str, list[float]]) -> list[tuple[str, float]]:
    """The reading order of partitions of bare event times, each read raising its highest."""
    highest: dict[str, float] = {}
    read = []
    for key, ts in reading_order(partitions, highest):
        read.append((key, ts))
        highest[key] = max(highest.get(key, float("-inf")), ts)
    return read


def test_the_next_record_comes_from_the_partition_furthest_behind_ties_to_the_earlier():
    read = order_of({"a": [10.0, 20.0, 30.0], "b": [15.0, 16.0, 40.0]})

    assert read == [("a", 10.0), ("b", 15.0), ("a", 20.0), ("b", 16.0), ("b", 40.0),
                    ("a", 30.0)]  # fmt: skip


def test_each_partition_is_read_in_its_own_order_even_when_its_times_go_back():
    read = order_of({"a": [50.0, 5.0, 60.0], "b": [10.0, 70.0]})

    assert [ts for key, ts in read if key == "a"] == [50.0, 5.0, 60.0]
    assert read[:3] == [("a", 50.0), ("b", 10.0), ("b", 70.0)]


def test_empty_partitions_are_passed_over():
    assert order_of({"a": [], "b": [1.0], "c": []}) == [("b", 1.0)]


def test_join_as_read_refuses_a_record_filed_under_another_partition(config):
    raw = orjson.dumps(impression("e1", 0))
    envelope = Envelope(decode_event(raw, config.event_rules()), raw, Source(IMP, 1, 0))

    with pytest.raises(ValueError, match=r"nudge\.impressions/1 under 'nudge\.impressions/0'"):
        join_as_read({f"{IMP}/0": [envelope]}, config.join, config.rewards)


# ---- the in-memory consumer as the reference ------------------------------------------------


@dataclass(frozen=True)
class ConsumerRun:
    config: Config
    truth: SimulationRun
    broker: MemoryBroker
    stats: ConsumerStats

    def records(self) -> list[Record]:
        topics = (self.config.kafka.impressions_topic, self.config.kafka.outcomes_topic)
        return [(r.source, r.value) for topic in topics for r in self.broker.records(topic)]


def consumer_run(tmp_path: Path, seed: int) -> ConsumerRun:
    """A simulated stream whose transport jitter (600 s) puts outcomes out of order by more
    than the allowed lateness, on two partitions per topic, consumed one record per poll with
    alignment at (almost) zero slack: a reading order with no choice left to the transport."""
    config = make_config(
        tmp_path,
        kafka={"max_poll_records": 1},
        join={"max_read_ahead_s": 1e-6},  # must be > 0: a microsecond
        simulator={"max_transport_jitter_s": 600},
    )
    sim = config.simulator
    truth = simulate_traffic(World(seed, sim.learners, sim.courses), sim, config.join, 300, seed,
                             0.03)  # fmt: skip
    broker = MemoryBroker()
    topics = [config.kafka.impressions_topic, config.kafka.outcomes_topic]
    for topic in topics:
        broker.create_topic(topic, 2)
    publish(truth, MemorySink(broker), *topics)
    clock = ManualClock()
    source = MemorySource(broker, topics, max_poll_records=1, clock=clock)
    learner = StreamLearner(
        config, source, MemorySink(broker), snapshot_sink=MemorySink(broker), clock=clock
    )
    return ConsumerRun(config, truth, broker, learner.run(BOUNDED))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_learns_exactly_what_the_consumer_learned_and_dead_letters_the_same(tmp_path, seed):
    run = consumer_run(tmp_path, seed)
    stats = run.stats

    data = load_records(run.records(), run.config, where=WHERE, on_error="skip")

    # outcomes in their window, late only by the order they arrived in: the case is exercised
    assert stats.dead_letters_by_reason["late_outcome"] > (
        run.truth.expected_dead_letters["late_outcome"] + 5
    )
    assert data.skipped == stats.dead_letters_by_reason
    assert data.n == stats.learned
    assert Ledger.of(data.event_ids.tolist()) == stats.ledger  # the same impression ids
    labels = Counter(str(label) for label in data.labels.tolist())
    assert labels == stats.outcomes_learned
    assert data.reward.sum() == pytest.approx(stats.reward_sum, abs=1e-9)
