"""The consumer's Prometheus metrics: rendered from a reading of its live stats, read from a
real `StreamLearner` over the in-memory broker, and served over HTTP (no Kafka)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from consumer_fixtures import BOUNDED, make_stream
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.memory import ManualClock
from streams.metrics import ConsumerCollector, ConsumerReading, MetricsEndpoint, read_learner

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

READING = ConsumerReading(
    consumed=1_000, impressions=600, outcomes=380, learned=550,
    learned_by_outcome={"helpful": 200, "ignored": 350}, dead_letters_by_reason={
        "invalid_json": 15, "late_outcome": 5}, closed_early=2,
    lag_by_partition={"imps/0": 7, "imps/1": 0, "outs/0": 3}, pending_impressions=40,
    waiting_outcomes=4, held=1, checkpoints=9, checkpoint_age_s=12.5, snapshots=3,
    snapshot_sequence=17, snapshot_age_s=48.0,
)  # fmt: skip


def parse(text: bytes) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def scrape(collector: ConsumerCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    return parse(generate_latest(registry))


def test_every_number_of_a_reading_is_exposed_under_its_name() -> None:
    s = scrape(ConsumerCollector(lambda: READING, clock=ManualClock()))
    assert value(s, "nudge_consumer_consumed_total") == 1_000
    assert value(s, "nudge_consumer_impressions_total") == 600
    assert value(s, "nudge_consumer_outcomes_total") == 380
    assert value(s, "nudge_consumer_learned_total") == 550
    assert value(s, "nudge_consumer_learned_by_outcome_total", outcome="helpful") == 200
    assert value(s, "nudge_consumer_learned_by_outcome_total", outcome="ignored") == 350
    assert value(s, "nudge_consumer_dead_letters_total", reason="invalid_json") == 15
    assert value(s, "nudge_consumer_dead_letters_total", reason="late_outcome") == 5
    assert value(s, "nudge_consumer_closed_early_total") == 2
    assert value(s, "nudge_consumer_lag_messages", partition="imps/0") == 7
    assert value(s, "nudge_consumer_lag_messages", partition="imps/1") == 0
    assert value(s, "nudge_consumer_lag_messages", partition="outs/0") == 3
    assert value(s, "nudge_consumer_pending_impressions") == 40
    assert value(s, "nudge_consumer_waiting_outcomes") == 4
    assert value(s, "nudge_consumer_held_records") == 1
    assert value(s, "nudge_consumer_checkpoints_total") == 9
    assert value(s, "nudge_consumer_checkpoint_age_seconds") == 12.5
    assert value(s, "nudge_consumer_snapshots_total") == 3
    assert value(s, "nudge_consumer_snapshot_sequence") == 17
    assert value(s, "nudge_consumer_snapshot_age_seconds") == 48
    assert value(s, "nudge_consumer_messages_per_second") == 0  # no time has passed


def test_rates_span_about_the_last_window_of_scrapes() -> None:
    clock = ManualClock(100.0)
    current = [READING]
    collector = ConsumerCollector(lambda: current[0], clock=clock, rate_window_s=60)

    def after(seconds: float, consumed: int, learned: int) -> tuple[float, float]:
        clock.advance(seconds)
        current[0] = replace(READING, consumed=consumed, learned=learned)
        s = scrape(collector)
        return (
            value(s, "nudge_consumer_messages_per_second"),
            value(s, "nudge_consumer_learned_per_second"),
        )

    assert after(10, 1_500, 600) == (50, 5)  # since the collector was made
    assert after(30, 2_100, 750) == pytest.approx((1_100 / 40, 200 / 40))
    # 60 s later, the base moves up to the newest scrape at least a window old (t=140)
    assert after(60, 2_700, 750) == pytest.approx((600 / 60, 0))
    assert after(5, 2_700, 750) == pytest.approx((600 / 65, 0))


def test_a_reading_of_a_learner_is_its_stats_and_live_state(tmp_path: Path) -> None:
    stream = make_stream(tmp_path)
    clock = ManualClock()
    learner = stream.consumer(clock)
    learner.run(BOUNDED)
    summary = learner.summary()
    clock.advance(30)

    r = read_learner(learner)
    assert r.consumed == summary["consumed"] == len(stream.truth.messages)
    assert r.learned == summary["learned"] == stream.truth.impressions
    assert r.dead_letters_by_reason == summary["dead_letters_by_reason"]
    assert r.dead_letters_by_reason == dict(stream.truth.expected_dead_letters)
    assert r.learned_by_outcome == summary["outcomes_learned"]
    assert set(r.lag_by_partition) == set(stream.end_offsets())  # every partition, by name
    assert sum(r.lag_by_partition.values()) == summary["lag"] == 0
    assert (r.pending_impressions, r.waiting_outcomes) == (summary["pending"], summary["waiting"])
    assert r.checkpoints == summary["checkpoints"]
    assert r.snapshot_sequence == int(summary["snapshot"].removeprefix("snap-"))
    # the run ended with a checkpoint and a snapshot; 30 s have passed since
    assert r.checkpoint_age_s == r.snapshot_age_s == 30


def test_the_endpoint_serves_the_learners_metrics_and_frees_its_port(tmp_path: Path) -> None:
    stream = make_stream(tmp_path)
    learner = stream.consumer()
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    url = f"http://127.0.0.1:{endpoint.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            before = parse(response.read())  # process metrics only, until watch()
        assert ("nudge_consumer_learned_total", frozenset()) not in before
        assert any(name.startswith("process_") for name, _ in before)
        endpoint.watch(learner)
        learner.run(BOUNDED)
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            after = parse(response.read())
        assert value(after, "nudge_consumer_learned_total") == stream.truth.impressions
    finally:
        endpoint.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
