"""Pausing a partition on the real broker (event-time alignment): held back while paused, then
every record returned once, in offset order, after it is resumed; with either client library.
Reproduces a kafka-python 3.0 bug where a resumed partition stayed parked for good
(`streams.kafka_io._unpark_resumed`) and covers the confluent source's own hold-back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pytest

from bandit.envelopes import partition_key
from streams.kafka_io import Producer, ensure_topics
from streams.sources import record_source_type
from tests.integration.conftest import Deployment

BIG, SMALL = 6000, 8000  # records of ~800 and ~60 bytes: fetches fill by bytes, as a backlog's


def _fill(dep: Deployment) -> tuple[str, str]:
    k = dep.config.kafka
    ensure_topics(k, [k.impressions_topic, k.outcomes_topic], 1)
    producer = Producer(k)
    for i in range(BIG):
        producer.send(k.impressions_topic, None, b"i" * 800 + str(i).encode())
    for i in range(SMALL):
        producer.send(k.outcomes_topic, None, b"o" * 60 + str(i).encode())
    producer.flush()
    producer.close()
    return partition_key(k.impressions_topic, 0), partition_key(k.outcomes_topic, 0)


@pytest.mark.parametrize("library", ["kafka-python", "confluent-kafka"])
def test_a_paused_partition_is_held_back_then_read_whole_once_resumed(
    deployment: Callable[..., Deployment], library: str
) -> None:
    dep = deployment(kafka={"client_library": library})
    big, small = _fill(dep)
    k = dep.config.kafka
    source = record_source_type(k)(k, [k.impressions_topic, k.outcomes_topic])
    offsets: dict[str, list[int]] = defaultdict(list)
    try:
        source.assign({})
        polls = 0
        while not offsets[small] and polls < 50:  # until the small records are being read
            for src, _ in source.poll(500):
                offsets[src.partition_key].append(src.offset)
            polls += 1
        source.pause_only([small])
        held = len(offsets[small])
        while source.lag_by_partition().get(big, 1) > 0 and polls < 200:
            for src, _ in source.poll(500):
                offsets[src.partition_key].append(src.offset)
            polls += 1
        assert len(offsets[small]) == held  # nothing of the paused partition while paused
        assert offsets[big] == list(range(BIG))
        source.pause_only([])
        for _ in range(100):
            if len(offsets[small]) == SMALL:
                break
            for src, _ in source.poll(500):
                offsets[src.partition_key].append(src.offset)
    finally:
        source.close()
    assert offsets[small] == list(range(SMALL))
    assert offsets[big] == list(range(BIG))


@pytest.mark.parametrize("library", ["kafka-python", "confluent-kafka"])
def test_every_partition_has_its_lag_before_its_first_fetch(
    deployment: Callable[..., Deployment], library: str
) -> None:
    """Alignment needs to know which partitions have records from the first poll on: with
    lags only from fetches, a backlog's first partition fetched read ahead alone."""
    dep = deployment(kafka={"client_library": library})
    big, small = _fill(dep)
    k = dep.config.kafka
    source = record_source_type(k)(k, [k.impressions_topic, k.outcomes_topic])
    try:
        source.assign({})
        assert source.lag_by_partition() == {big: BIG, small: SMALL}
    finally:
        source.close()
