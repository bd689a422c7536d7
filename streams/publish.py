"""Publishes simulated traffic to Kafka (and/or a JSON-lines file) in arrival order."""

from __future__ import annotations

from pathlib import Path

from bandit.config import KafkaConfig
from bandit.simulation.traffic import SimulationRun
from streams.kafka_io import Producer, ensure_topics


def publish_to_kafka(run: SimulationRun, cfg: KafkaConfig) -> None:
    """Produce every message to the impressions or outcomes topic, keyed by event id."""
    ensure_topics(
        cfg,
        [cfg.impressions_topic, cfg.outcomes_topic, cfg.dead_letter_topic],
        cfg.topic_partitions,
    )
    producer = Producer(cfg)
    try:
        for msg in run.messages:
            topic = cfg.impressions_topic if msg.kind == "impression" else cfg.outcomes_topic
            producer.send(topic, key=msg.key, value=msg.value)
    finally:
        producer.close()


def write_jsonl(run: SimulationRun, path: Path) -> None:
    """One message per line, exactly the bytes that go to Kafka (invalid ones included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for msg in run.messages:
            fh.write(msg.value.replace(b"\n", b" ") + b"\n")
