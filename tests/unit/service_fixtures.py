"""Shared helpers of the decision-service tests: the app over real parts, in memory.

A real `Decider` on a snapshot trained from simulated traffic, a real `Spool` and
`DecisionLog` in a temporary directory, a wall clock that moves only when told, and a drain
of the spool through `MemorySink` into a `MemoryBroker`, whose records are decoded with the
consumer's own `decode_event`: what the tests read is exactly what the consumer would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from decision_fixtures import T0, joined_events, make_config, publish, train
from fastapi.testclient import TestClient

from bandit.config import Config, parse_config
from bandit.decisions import Decider
from bandit.events import Event, Impression, Outcome, decode_event
from nudge.service.app import ServiceParts, create_app
from nudge.service.decision_log import DecisionLog
from nudge.service.metrics import ServiceMetrics
from streams.memory import ManualClock, MemoryBroker, MemorySink
from streams.spool import Drainer, Spool

KEY = "service-test-key-0123456789"
OTHER_KEY = "second-service-key-abcdefgh"
MAX_MESSAGE_BYTES = 8192
MAX_ACTIONS = 8
DEFERRED_EXPIRY_S = 600.0
SEED = 11


def service_config(**sections: Any) -> Config:
    """The config the test snapshot was trained with, plus small limits for the service."""
    data: dict[str, Any] = {
        "limits": {"max_message_bytes": MAX_MESSAGE_BYTES, "max_actions": MAX_ACTIONS},
        "serve": {"deferred_expiry_s": DEFERRED_EXPIRY_S},
    }
    data.update(sections)
    return parse_config(data)


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot directory (with `LATEST`) of a policy trained on simulated traffic."""
    directory = tmp_path_factory.mktemp("snapshots")
    config = make_config()
    learner = train(config, joined_events())
    try:
        publish(config, learner, directory)
    finally:
        learner.close()
    return directory


@dataclass
class Logged:
    """One record the service logged, as the consumer reads it."""

    topic: str
    key: bytes | None
    event: Event
    raw: bytes


@dataclass
class Harness:
    """The app over real parts, a client for it, and the broker its spool drains into."""

    parts: ServiceParts
    client: TestClient
    clock: ManualClock
    broker: MemoryBroker = field(default_factory=MemoryBroker)
    _read: dict[str, int] = field(default_factory=dict)

    def drain(self) -> list[Logged]:
        """Move everything spooled to the broker (as the drainer would) and return the records
        that arrived since the last drain, decoded, in the order they were spooled."""
        drainer = Drainer(self.parts.spool, lambda: MemorySink(self.broker))
        try:
            while drainer.drain_once():
                pass
        finally:
            drainer.stop(drain_timeout_s=0.0)
        cfg = self.parts.config
        new: list[Logged] = []
        for topic in self.broker.topics():
            records = self.broker.records(topic)
            for record in records[self._read.get(topic, 0) :]:
                assert record.value is not None
                event = decode_event(record.value, cfg.event_rules())
                new.append(Logged(topic, record.key, event, record.value))
            self._read[topic] = len(records)
        # One partition per topic: offsets follow the spool's order within each topic.
        return new

    def impressions(self, logged: list[Logged]) -> list[Impression]:
        topic = self.parts.config.kafka.impressions_topic
        found = [r.event for r in logged if r.topic == topic]
        assert all(isinstance(e, Impression) for e in found)
        return found  # type: ignore[return-value]

    def outcomes(self, logged: list[Logged]) -> list[Outcome]:
        topic = self.parts.config.kafka.outcomes_topic
        found = [r.event for r in logged if r.topic == topic]
        assert all(isinstance(e, Outcome) for e in found)
        return found  # type: ignore[return-value]

    def spooled(self) -> int:
        return self.parts.spool.depth()[0]


def make_harness(
    tmp_path: Path,
    snapshot_dir: Path | None,
    *,
    config: Config | None = None,
    keys: tuple[str, ...] = (KEY, OTHER_KEY),
    max_events: int = 1000,
) -> Iterator[Harness]:
    """A harness over fresh parts in `tmp_path` (no snapshot: `snapshot_dir` None)."""
    config = config or service_config()
    clock = ManualClock(T0)
    spool = Spool(tmp_path / "spool", max_events=max_events, max_bytes=10_000_000, clock=clock)
    decisions = DecisionLog(
        spool,
        remember_s=config.serve.remember_s,
        deferred_expiry_s=config.serve.deferred_expiry_s,
        clock=clock,
    )
    decider = Decider(snapshot_dir, seed=SEED) if snapshot_dir is not None else None
    parts = ServiceParts(
        config=config,
        decider=lambda: decider,
        spool=spool,
        decisions=decisions,
        metrics=ServiceMetrics(clock=clock),
        api_keys=frozenset(k.encode() for k in keys),
        clock=clock,
    )
    client = TestClient(create_app(parts), headers={"Authorization": f"Bearer {KEY}"})
    try:
        yield Harness(parts, client, clock)
    finally:
        client.close()
        if decider is not None:
            decider.close()
        decisions.close()
        spool.close()
