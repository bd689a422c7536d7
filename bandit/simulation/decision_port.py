"""The closed loop's decision side as a port: ask what to show, report what happened.

The simulated platform calls a `DecisionPort`; the port decides and logs. `LibraryPort`
embeds the decision library (`Decider`, hot-reloading the snapshot directory) and produces
each impression and outcome itself, as a Python platform does; `nudge.service.client.HttpPort`
asks `nudge serve` over HTTP, and the service logs them. The loop is the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from bandit.config import Config
from bandit.decisions import Context, Decider
from bandit.events import OutcomeLabel, timestamp_text
from bandit.ports import MessageSink
from bandit.snapshots import signing_key


@dataclass(frozen=True, slots=True)
class ServedDecision:
    """What the platform was told to show, with the probability and pmf it was drawn from."""

    action: str
    probability: float
    pmf: tuple[float, ...]  # in the order of the candidates asked about
    why: str
    policy_version: str


@dataclass(frozen=True, slots=True)
class PolicyView:
    """The policy currently deciding: its version, the offsets it was trained through and how
    many examples it learned (the loop waits on `trained_through`)."""

    version: str
    trained_through: Mapping[str, int]
    examples: int


class DecisionPort(Protocol):
    """Where the simulated platform gets decisions and sends outcomes."""

    def decide(
        self,
        trigger: str,
        learner_id: str,
        context: Context,
        candidates: Sequence[str],
        event_id: str,
        timestamp: float,
    ) -> ServedDecision:
        """Decide among `candidates` at event time `timestamp` and log the impression."""
        ...

    def report_outcome(
        self,
        event_id: str,
        trigger: str,
        label: OutcomeLabel,
        value: float | None,
        timestamp: float,
    ) -> None:
        """Log the learner's reaction to the decision `event_id`, at event time `timestamp`."""
        ...

    def policy(self) -> PolicyView:
        """The policy that decides the next call."""
        ...

    def flush(self) -> None:
        """Return once everything logged so far is durable."""
        ...


class LibraryPort:
    """Decides in process with a `Decider` and produces the events to `sink` itself."""

    def __init__(
        self, decider: Decider, sink: MessageSink, impressions_topic: str, outcomes_topic: str
    ) -> None:
        self.decider = decider
        self.sink = sink
        self.impressions_topic = impressions_topic
        self.outcomes_topic = outcomes_topic

    @classmethod
    def open(
        cls, config: Config, sink: MessageSink, seed: int, watch_interval_s: float = 0.25
    ) -> LibraryPort:
        """A port on `config`'s snapshot directory (signing key applied), reloading every
        `watch_interval_s`, with exploration draws seeded by `seed`."""
        snapshots = config.snapshots
        key = signing_key(snapshots.signing_key_file)
        decider = Decider(Path(snapshots.directory), seed=seed, key=key)
        decider.watch(watch_interval_s)
        return cls(decider, sink, config.kafka.impressions_topic, config.kafka.outcomes_topic)

    def decide(
        self,
        trigger: str,
        learner_id: str,
        context: Context,
        candidates: Sequence[str],
        event_id: str,
        timestamp: float,
    ) -> ServedDecision:
        decision = self.decider.decide(
            trigger, learner_id, context, candidates, event_id=event_id, timestamp=timestamp
        )
        self.sink.send(self.impressions_topic, event_id.encode(), decision.impression_json())
        return ServedDecision(
            decision.action, decision.probability, decision.pmf, decision.why,
            decision.policy_version,
        )  # fmt: skip

    def report_outcome(
        self,
        event_id: str,
        trigger: str,
        label: OutcomeLabel,
        value: float | None,
        timestamp: float,
    ) -> None:
        outcome = {
            "type": "outcome",
            "event_id": event_id,
            "timestamp": timestamp_text(timestamp),
            "trigger": trigger,
            "outcome": label.value,
            "value": value,
        }
        self.sink.send(self.outcomes_topic, event_id.encode(), orjson.dumps(outcome))

    def policy(self) -> PolicyView:
        manifest = self.decider.policy.snapshot.manifest
        return PolicyView(manifest.policy_id, manifest.trained_through, manifest.examples)

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        """Stop reloading and release the models (the sink belongs to the caller)."""
        self.decider.close()
