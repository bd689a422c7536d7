"""Hand-made streams for the consumer left unattended: impressions and outcomes 2 s apart, with
the odd bad clock, re-send or repeated key, written to an in-memory broker as a live producer
would (each record at its wall time) and read by a consumer with real VW (small models)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bandit.config import Config, parse_config
from bandit.events import timestamp_text
from bandit.ports import Record
from streams.checkpoints import Checkpoint, CheckpointStore
from streams.consumer import RunOptions, StreamLearner
from streams.memory import ManualClock, MemoryBroker, MemorySink, MemorySource

T0 = datetime.fromisoformat("2026-01-05T08:00:00+00:00").timestamp()
YEAR_2030 = datetime.fromisoformat("2030-01-01T00:00:00+00:00").timestamp()
YEAR_9999 = datetime.fromisoformat("9999-12-31T23:00:00+00:00").timestamp()
YEAR_1 = datetime.fromisoformat("0001-01-01T00:00:00+00:00").timestamp()
IMPRESSIONS, OUTCOMES = "nudge.impressions", "nudge.outcomes"
# Longer than join.idle_partition_s (5): at the end both partitions go idle before the run ends.
BOUNDED = RunOptions(until_idle_s=8.0)


def config(tmp_path: Path, **join: Any) -> Config:
    """Checkpoints and snapshots only at the end of a run; small VW models."""
    return parse_config(
        {
            "kafka": {"max_poll_records": 40, "poll_timeout_ms": 100},
            "join": join,
            "learner": {"vw_args": "--cb_type mtr -b 16 --learning_rate 0.1"},
            "checkpoint": {"directory": str(tmp_path / "checkpoints"), "every_events": 10**6,
                           "every_s": 1e6, "keep": 2},
            "snapshots": {"directory": str(tmp_path / "snapshots"), "every_events": 10**6,
                          "every_s": 1e6, "min_interval_s": 1e6, "keep": 1},
            "consumer": {"progress_every_s": 1.0},
        }
    )  # fmt: skip


def impression(event_id: str, ts: float) -> bytes:
    return orjson.dumps(
        {
            "type": "impression", "event_id": event_id, "timestamp": timestamp_text(ts),
            "trigger": "B/quiz-3/quiz-failed", "learner_id": "u000001",
            "context": {"learner": {"country": "PE", "prior_ctr": 0.12}},
            "actions": [{"id": "hint", "features": {"kind": "hint"}},
                        {"id": "none", "features": {"kind": "none"}}],
            "chosen": "hint", "probability": 0.5, "pmf": [0.5, 0.5],
            "policy_version": "uniform-random",
        }
    )  # fmt: skip


def outcome(event_id: str, ts: float, label: str = "helpful") -> bytes:
    return orjson.dumps(
        {"type": "outcome", "event_id": event_id, "timestamp": timestamp_text(ts),
         "trigger": "B/quiz-3/quiz-failed", "outcome": label}
    )  # fmt: skip


Message = tuple[str, bytes]  # (topic, value)


def pairs(n: int, start: float = T0, prefix: str = "e") -> list[Message]:
    """`n` impressions 2 s apart, each with a helpful outcome a second later."""
    out: list[Message] = []
    for i in range(n):
        ts = start + 2.0 * i
        out += [
            (IMPRESSIONS, impression(f"{prefix}{i}", ts)),
            (OUTCOMES, outcome(f"{prefix}{i}", ts + 1)),
        ]
    return out


def pause(seconds: float) -> Message:
    """A gap in the producer's writing, in wall seconds (not a record)."""
    return ("", str(seconds).encode())


class LiveSource(MemorySource):
    """Each scheduled record reaches the broker when the clock passes its wall time; the source
    asks its consumer to stop once everything was written and read, if `stop_when_read`."""

    def __init__(
        self,
        broker: MemoryBroker,
        schedule: list[tuple[float, str, bytes]],
        clock: ManualClock,
        stop_when_read: bool = False,
        fetch_records: dict[str, int] | None = None,
    ) -> None:
        super().__init__(
            broker, [IMPRESSIONS, OUTCOMES], max_poll_records=40, clock=clock,
            fetch_records=fetch_records,
        )  # fmt: skip
        self.schedule = schedule
        self.written = 0
        self.stop_when_read = stop_when_read
        self.learner: StreamLearner | None = None

    def poll(self, timeout_ms: int) -> list[Record]:
        assert self.clock is not None
        while self.written < len(self.schedule) and self.schedule[self.written][0] <= self.clock():
            _, topic, value = self.schedule[self.written]
            self.broker.append(topic, None, value)
            self.written += 1
        batch = super().poll(timeout_ms)
        done = self.written == len(self.schedule) and not any(self.lag_by_partition().values())
        if done and self.stop_when_read and self.learner is not None:
            self.learner.request_stop()
        return batch


@dataclass
class Deployment:
    """A broker and a checkpoint directory that outlive the consumers run over them."""

    config: Config
    broker: MemoryBroker = field(default_factory=MemoryBroker)
    clock: ManualClock = field(default_factory=ManualClock)
    consumers: list[StreamLearner] = field(default_factory=list)
    fetch_records: dict[str, int] = field(default_factory=dict)  # see MemorySource

    def __post_init__(self) -> None:
        for topic in (IMPRESSIONS, OUTCOMES):
            self.broker.create_topic(topic, 1)

    def run(
        self, messages: Iterable[Message], options: RunOptions = BOUNDED, gap_s: float = 0.01
    ) -> StreamLearner:
        """A new consumer process over the deployment; `messages` are written while it runs,
        `gap_s` wall seconds apart (a `pause` waits longer)."""
        schedule: list[tuple[float, str, bytes]] = []
        wall = self.clock()
        for topic, value in messages:
            if topic == "":
                wall += float(value)
                continue
            schedule.append((wall, topic, value))
            wall += gap_s
        source = LiveSource(
            self.broker, schedule, self.clock, stop_when_read=options.until_idle_s is None,
            fetch_records=self.fetch_records,
        )  # fmt: skip
        learner = StreamLearner(self.config, source, MemorySink(self.broker), clock=self.clock)
        source.learner = learner
        learner.run(options)
        self.consumers.append(learner)
        return learner

    def dead_letters(self) -> list[tuple[str, dict[str, Any]]]:
        """(reason, body) of every dead letter written."""
        topic = self.config.kafka.dead_letter_topic
        if topic not in self.broker.topics():
            return []
        return [
            (str(orjson.loads(r.value or b"{}")["reason"]), orjson.loads(r.value or b"{}"))
            for r in self.broker.records(topic)
        ]

    def checkpoint(self) -> Checkpoint:
        ckpt = CheckpointStore(self.config.checkpoint.directory).latest()
        assert ckpt is not None
        return ckpt
