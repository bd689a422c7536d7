"""Publishes simulated traffic, in arrival order, to a message sink and/or a JSON-lines file.

Each function takes a whole `SimulationRun` or any iterable of its messages, such as
`stream_traffic`'s generator, which they consume once and never hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from bandit.ports import MessageSink
from bandit.simulation.traffic import SimMessage, SimulationRun

Messages = SimulationRun | Iterable[SimMessage]


def _messages(run: Messages) -> Iterable[SimMessage]:
    return run.messages if isinstance(run, SimulationRun) else run


def publish(run: Messages, sink: MessageSink, impressions_topic: str, outcomes_topic: str) -> None:
    """Send every message to the impressions or outcomes topic, keyed by event id; then flush."""
    for msg in _messages(run):
        topic = impressions_topic if msg.kind == "impression" else outcomes_topic
        sink.send(topic, key=msg.key, value=msg.value)
    sink.flush()


def write_jsonl(run: Messages, path: Path) -> None:
    """One message per line, exactly the bytes that go to Kafka (invalid ones included)."""
    for _ in written_jsonl(run, path):
        pass


def written_jsonl(run: Messages, path: Path) -> Iterator[SimMessage]:
    """The messages, each written to ``path`` as `write_jsonl` writes it as it passes (the file
    is complete once they are all consumed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for msg in _messages(run):
            fh.write(msg.value.replace(b"\n", b" ") + b"\n")
            yield msg
