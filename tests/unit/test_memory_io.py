"""Unit tests of the in-memory broker, source, sink and clock (`streams.memory`)."""

from __future__ import annotations

import pytest

from bandit.envelopes import Source
from bandit.errors import BrokerError
from streams.memory import ManualClock, MemoryBroker, MemorySink, MemorySource


def broker_with(records: dict[str, list[bytes]], partitions: int = 1) -> MemoryBroker:
    """A broker whose topics hold these values, unkeyed (so spread over partitions in turn)."""
    broker = MemoryBroker()
    for topic, values in records.items():
        broker.create_topic(topic, partitions)
        for value in values:
            broker.append(topic, None, value)
    return broker


def test_sent_messages_become_records_only_when_flushed() -> None:
    broker = MemoryBroker()
    sink = MemorySink(broker)
    sink.send("letters", b"k1", b"one", headers=[("reason", b"late_outcome")])
    sink.send("letters", b"k2", b"two")

    assert "letters" not in broker.topics() and sink.unflushed == 2
    sink.flush()

    assert [(r.key, r.value, r.headers) for r in broker.records("letters")] == [
        (b"k1", b"one", (("reason", b"late_outcome"),)),
        (b"k2", b"two", ()),
    ]
    assert sink.unflushed == 0 and sink.flushes == 1


def test_a_crashed_sink_loses_what_was_not_flushed_and_ignores_later_calls() -> None:
    broker = MemoryBroker()
    sink = MemorySink(broker)
    sink.send("letters", b"k1", b"durable")
    sink.flush()
    sink.send("letters", b"k2", b"lost")

    sink.crash()
    sink.send("letters", b"k3", b"after death")
    sink.flush()
    sink.close()

    assert [r.value for r in broker.records("letters")] == [b"durable"]


def test_closing_a_sink_flushes_it_first_and_refuses_later_sends() -> None:
    broker = MemoryBroker()
    sink = MemorySink(broker)
    sink.send("letters", None, b"one")
    sink.close()
    assert [r.value for r in broker.records("letters")] == [b"one"]
    with pytest.raises(BrokerError, match="closed"):
        sink.send("letters", None, b"two")


def test_a_key_always_goes_to_the_same_partition_and_unkeyed_records_take_turns() -> None:
    broker = MemoryBroker()
    broker.create_topic("t", 3)
    keyed = {broker.append("t", b"event-7", b"v").partition for _ in range(5)}
    unkeyed = [broker.append("t", None, b"v").partition for _ in range(4)]

    assert len(keyed) == 1
    assert unkeyed == [0, 1, 2, 0]
    first = broker.records("t", next(iter(keyed)))[0]
    assert first.source == Source("t", next(iter(keyed)), 0)


def test_poll_takes_at_most_max_poll_records_and_keeps_offset_order_per_partition() -> None:
    broker = broker_with({"a": [b"%d" % i for i in range(10)], "b": [b"x", b"y"]}, partitions=2)
    source = MemorySource(broker, ["a", "b"], max_poll_records=3)
    source.assign({})

    batches = []
    while batch := source.poll(100):
        batches.append(batch)

    assert all(len(batch) <= 3 for batch in batches)
    read = [record for batch in batches for record in batch]
    assert len(read) == 12
    for key in source.partition_keys:
        offsets = [s.offset for s, _ in read if s.partition_key == key]
        assert offsets == list(range(len(offsets)))
    assert {s.partition_key for s, _ in batches[0]} == {"a/0", "a/1", "b/0"}  # shared out


def test_assign_starts_each_partition_at_its_offset_or_else_at_its_start() -> None:
    broker = broker_with({"a": [b"0", b"1", b"2", b"3"]}, partitions=2)  # a/0: 0, 2; a/1: 1, 3
    source = MemorySource(broker, ["a"])

    source.assign({"a/0": 1})

    assert source.lag_by_partition() == {"a/0": 1, "a/1": 2}
    assert sorted(value for _, value in source.poll(100)) == [b"1", b"2", b"3"]
    assert source.lag_by_partition() == {"a/0": 0, "a/1": 0}
    assert source.partition_keys == ["a/0", "a/1"]


def test_commits_are_kept_on_the_broker_per_group_and_listed_by_the_source() -> None:
    broker = broker_with({"a": [b"0"]})
    source = MemorySource(broker, ["a"], group="learners")
    source.assign({})

    source.commit({"a/0": 1})

    assert broker.committed("learners") == {"a/0": 1}
    assert broker.committed("others") == {}
    assert source.commits == [{"a/0": 1}]


def test_a_poll_that_finds_nothing_waits_out_its_timeout_on_the_clock() -> None:
    clock = ManualClock(10.0)
    source = MemorySource(broker_with({"a": [b"0"]}), ["a"], clock=clock)
    source.assign({})

    assert len(source.poll(500)) == 1 and clock() == 10.0  # records: no waiting
    assert source.poll(500) == [] and clock() == 10.5


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock()
    clock.advance(2.5)
    assert clock() == 2.5
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1.0)


def test_reading_a_missing_topic_is_a_broker_error() -> None:
    with pytest.raises(BrokerError, match="'nope'"):
        MemorySource(MemoryBroker(), ["nope"]).assign({})


def test_a_closed_source_refuses_to_poll() -> None:
    source = MemorySource(broker_with({"a": []}), ["a"])
    source.assign({})
    source.close()
    with pytest.raises(BrokerError, match="closed"):
        source.poll(100)
