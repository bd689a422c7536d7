"""Issue 11: a message far over `limits.max_message_bytes` (but under the broker's 1 MB) must be
dead-lettered, bounded, and the rest learned; a dead letter Kafka refuses stops the consumer
naming the message, never as "is the broker up?" and never silently."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from collections.abc import Callable

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.kafka_io import Producer, read_topic
from tests.integration.conftest import Deployment

pytestmark = pytest.mark.kafka

DEFAULT_CAP = 262_144  # kafka.dead_letter_max_bytes


def _poison(dep: Deployment, *values: bytes) -> list[int]:
    """Append `values` to the impressions topic after the simulated traffic; their offsets."""
    producer = Producer(dep.config.kafka)
    try:
        for value in values:
            producer.send(dep.config.kafka.impressions_topic, key=None, value=value)
        producer.flush()
    finally:
        producer.close()
    letters = read_topic(dep.config.kafka, dep.config.kafka.impressions_topic, idle_ms=1500)
    return [i for i, (_, value, _) in enumerate(letters) if value in values]


def test_a_400_kb_message_is_dead_lettered_bounded_and_the_rest_is_learned(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment()
    summary = dep.simulate("--events", "300", "--seed", "5")
    # 400 KB of UTF-8 (tabs: two bytes each once escaped in JSON) and 400 KB that is not UTF-8;
    # each dead letter used to carry the original twice (text and base64): over 1 MB.
    text = b'{"type": "impression", "padding": "' + b"\t" * 400_000 + b'"}'
    binary = random.Random(1).randbytes(400_000)
    _poison(dep, text, binary)

    stats_path = dep.workdir / "stats.json"
    done = dep.nudge("consume", "--until-idle", "3", "--stats-json", str(stats_path))

    assert done.returncode == 0, done.stderr[-2000:]
    stats = orjson.loads(stats_path.read_bytes())
    assert stats["learned"] == summary["impressions"]
    assert stats["dead_letters_by_reason"].get("too_large") == 2
    letters = read_topic(dep.config.kafka, dep.config.kafka.dead_letter_topic)
    bodies = {}
    for _, value, headers in letters:
        body = orjson.loads(value)
        if body["reason"] == "too_large":
            assert len(value) <= DEFAULT_CAP
            assert headers["reason"] == b"too_large"
            bodies[body["original_sha256"]] = body
    by_text = bodies[hashlib.sha256(text).hexdigest()]
    assert by_text["original_bytes"] == len(text) and by_text["original_truncated"] is True
    assert text.decode().startswith(by_text["original"]) and "original_base64" not in by_text
    by_bytes = bodies[hashlib.sha256(binary).hexdigest()]
    assert by_bytes["original_bytes"] == len(binary) and "original" not in by_bytes
    assert binary.startswith(base64.b64decode(by_bytes["original_base64"]))


def test_a_dead_letter_the_topic_refuses_stops_the_consumer_naming_the_message(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment()
    k = dep.config.kafka
    # The dead-letter topic takes at most 20 KB per record: a 100 KB message's dead letter
    # (bounded at 256 KB) is refused by the broker, asynchronously, on every attempt.
    admin = KafkaAdminClient(bootstrap_servers=k.bootstrap_servers)
    try:
        admin.create_topics(
            [NewTopic(k.dead_letter_topic, 1, 1, topic_configs={"max.message.bytes": "20000"})]
        )
    finally:
        admin.close()
    dep.simulate("--events", "50", "--seed", "5")
    big = orjson.dumps({"type": "impression", "padding": os.urandom(50_000).hex()})
    (offset,) = _poison(dep, big)

    done = dep.nudge("consume", "--until-idle", "3")

    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("nudge: "), last
    assert f"{k.impressions_topic} partition 0 offset {offset}" in last
    assert k.dead_letter_topic in last and "too large" in last.lower()
    assert "is the broker up?" not in done.stderr
