"""Publishes simulated traffic, in arrival order, to a message sink and/or a JSON-lines file."""

from __future__ import annotations

from pathlib import Path

from bandit.ports import MessageSink
from bandit.simulation.traffic import SimulationRun


def publish(
    run: SimulationRun, sink: MessageSink, impressions_topic: str, outcomes_topic: str
) -> None:
    """Send every message to the impressions or outcomes topic, keyed by event id; then flush."""
    for msg in run.messages:
        topic = impressions_topic if msg.kind == "impression" else outcomes_topic
        sink.send(topic, key=msg.key, value=msg.value)
    sink.flush()


def write_jsonl(run: SimulationRun, path: Path) -> None:
    """One message per line, exactly the bytes that go to Kafka (invalid ones included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for msg in run.messages:
            fh.write(msg.value.replace(b"\n", b" ") + b"\n")
