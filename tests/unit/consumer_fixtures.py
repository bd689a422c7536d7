"""A small simulated stream on an in-memory broker and consumers over it (tests of the consumer).

The stream comes from `simulate_traffic`, whose summary states what a correct consumer must
end with: every valid impression learned exactly once (the ledger of `valid_event_ids`) and
so many dead letters of each reason. Cadences are by event count, and the manual clock moves
only while the source is idle, so every run of a given stream is the same run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bandit.atomic_dir import FileOps
from bandit.config import Config, parse_config
from bandit.envelopes import partition_key
from bandit.ports import MessageSink, RecordSource
from bandit.simulation.publish import publish
from bandit.simulation.traffic import SimulationRun, simulate_traffic
from bandit.simulation.world import World
from bandit.state import LearnerState
from streams.checkpoints import CheckpointStore
from streams.consumer import RunOptions, StreamLearner
from streams.memory import ManualClock, MemoryBroker, MemorySink, MemorySource
from streams.stats import ConsumerStats, Ledger

SEED, IMPRESSIONS, INVALID = 5, 400, 0.05
PARTITIONS = 2
MAX_POLL_RECORDS = 40
SNAPSHOT_TOPIC = "nudge.snapshots"
# Longer than join.idle_partition_s: at the end of the input, idle partitions stop holding
# event time back and windows close on the watermark before the run ends.
BOUNDED = RunOptions(until_idle_s=8.0)


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """Small cadences (a checkpoint every 120 messages, a snapshot every 60 learned)."""
    data: dict[str, dict[str, Any]] = {
        "kafka": {"max_poll_records": MAX_POLL_RECORDS, "poll_timeout_ms": 100},
        "checkpoint": {
            "directory": str(tmp_path / "checkpoints"),
            "every_events": 120,
            "every_s": 1e6,
            "keep": 1,
        },
        "snapshots": {
            "directory": str(tmp_path / "snapshots"),
            "every_events": 60,
            "every_s": 1e6,
            "min_interval_s": 0,
            "keep": 1,
            "kafka_topic": SNAPSHOT_TOPIC,
        },
        "simulator": {"learners": 50, "courses": 2, "duplicate_fraction": 0.03},
        "consumer": {"progress_every_s": 1e6},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data)


@dataclass(frozen=True)
class Stream:
    """A simulated run published to an in-memory broker, and what a consumer must make of it."""

    config: Config
    truth: SimulationRun
    broker: MemoryBroker

    @property
    def topics(self) -> list[str]:
        return [self.config.kafka.impressions_topic, self.config.kafka.outcomes_topic]

    def source(self, clock: ManualClock) -> MemorySource:
        return MemorySource(
            self.broker, self.topics, max_poll_records=MAX_POLL_RECORDS, clock=clock
        )

    def consumer(
        self,
        clock: ManualClock | None = None,
        *,
        source: RecordSource | None = None,
        producer: MessageSink | None = None,
        snapshot_sink: MessageSink | None = None,
        file_ops: FileOps | None = None,
    ) -> StreamLearner:
        """A fresh consumer (a new process) on this stream's broker and directories."""
        clock = clock or ManualClock()
        return StreamLearner(
            self.config,
            source or self.source(clock),
            producer or MemorySink(self.broker),
            snapshot_sink=snapshot_sink or MemorySink(self.broker),
            clock=clock,
            file_ops=file_ops,
        )

    def end_offsets(self) -> dict[str, int]:
        """The next offset of every partition of the input topics: where a finished run is."""
        return {
            partition_key(topic, partition): self.broker.end_offset(topic, partition)
            for topic in self.topics
            for partition in range(self.broker.partitions(topic))
        }

    def expected_ledger(self) -> Ledger:
        return Ledger.of(self.truth.valid_event_ids)

    def dead_letters(self) -> list[tuple[str, str]]:
        """(key, reason) of every durable dead letter, in the order written."""
        topic = self.config.kafka.dead_letter_topic
        if topic not in self.broker.topics():
            return []
        letters = []
        for record in self.broker.records(topic):
            assert record.key is not None and record.value is not None
            letters.append((record.key.decode(), str(orjson.loads(record.value)["reason"])))
        return letters

    def latest_checkpoint_stats(self) -> ConsumerStats | None:
        ckpt = CheckpointStore(self.config.checkpoint.directory).latest()
        return ConsumerStats.from_json(ckpt.stats) if ckpt else None

    def latest_learner_state(self) -> LearnerState | None:
        ckpt = CheckpointStore(self.config.checkpoint.directory).latest()
        return ckpt.learner if ckpt else None


def make_stream(tmp_path: Path, **sections: dict[str, Any]) -> Stream:
    """`IMPRESSIONS` simulated impressions with their outcomes, a share corrupted or doubled."""
    config = make_config(tmp_path, **sections)
    sim = config.simulator
    truth = simulate_traffic(
        World(SEED, sim.learners, sim.courses), sim, config.join, IMPRESSIONS, SEED, INVALID
    )
    broker = MemoryBroker()
    for topic in (config.kafka.impressions_topic, config.kafka.outcomes_topic):
        broker.create_topic(topic, PARTITIONS)
    publish(truth, MemorySink(broker), config.kafka.impressions_topic, config.kafka.outcomes_topic)
    return Stream(config, truth, broker)


def distinct_reasons(letters: list[tuple[str, str]]) -> Counter[str]:
    """Dead letters by reason, one per source message (a crash may write one twice)."""
    by_key: dict[str, str] = {}
    for key, reason in letters:
        assert by_key.setdefault(key, reason) == reason, f"{key}: two reasons"
    return Counter(by_key.values())
