"""The event traffic the simulated platform logs, deterministic from a seed.

Impressions are logged under a uniform-random policy with exact propensities (1/K and the
whole pmf). Reactions arrive after a log-normal delay; every message reaches the broker after
a transport jitter, so some outcomes arrive before their impressions. A share of messages is
corrupted (each with the reason code the consumer must give it) and a share duplicated.
The run also states what the consumer must end up with: how many impressions it learns and
how many dead letters of each reason it writes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import orjson

from bandit.config import JoinConfig, SimulatorConfig
from bandit.events import OutcomeLabel, Reason, timestamp_text
from bandit.simulation.world import MESSAGE_FEATURES, NONE_ACTION, World

Kind = Literal["impression", "outcome"]
_LABELS = (OutcomeLabel.HELPFUL, OutcomeLabel.NOT_HELPFUL, OutcomeLabel.IGNORED)
_DELAY_SIGMA = 1.0


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message as it reaches the broker: topic kind, key, exact bytes, arrival time."""

    kind: Kind
    key: bytes | None
    value: bytes
    arrival: float


@dataclass(slots=True)
class SimulationRun:
    """The messages in arrival order plus what a correct consumer must make of them."""

    messages: list[SimMessage]
    impressions: int = 0
    outcomes: int = 0
    invalid: int = 0
    duplicates: int = 0
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    expected_dead_letters: Counter[str] = field(default_factory=Counter)
    valid_event_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "impressions": self.impressions,
            "outcomes": self.outcomes,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "messages": len(self.messages),
            "invalid_by_reason": dict(sorted(self.invalid_by_reason.items())),
            "expected": {
                "learned": self.impressions,
                "dead_lettered": sum(self.expected_dead_letters.values()),
                "dead_letters_by_reason": dict(sorted(self.expected_dead_letters.items())),
            },
        }


# ---- corruptions: each turns a valid message into one the contract rejects for `reason` ------

Corruption = tuple[str, Callable[[dict[str, Any]], bytes]]


def _with(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    def corrupt(doc: dict[str, Any]) -> bytes:
        return orjson.dumps({**doc, **changes})

    return corrupt


def _without(key: str) -> Callable[[dict[str, Any]], bytes]:
    def corrupt(doc: dict[str, Any]) -> bytes:
        return orjson.dumps({k: v for k, v in doc.items() if k != key})

    return corrupt


def _truncated(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)[:40]


def _chosen_unknown(doc: dict[str, Any]) -> bytes:
    return orjson.dumps({**doc, "chosen": "no-such-message"})


def _duplicate_action(doc: dict[str, Any]) -> bytes:
    return orjson.dumps({**doc, "actions": [*doc["actions"], doc["actions"][0]], "pmf": None})


def _bad_pmf(doc: dict[str, Any]) -> bytes:
    return orjson.dumps({**doc, "pmf": [p * 0.5 for p in doc["pmf"]]})


def _unknown_namespace(doc: dict[str, Any]) -> bytes:
    return orjson.dumps({**doc, "context": {**doc["context"], "browser": {"lang": "es"}}})


IMPRESSION_CORRUPTIONS: tuple[Corruption, ...] = (
    (Reason.UNDECODABLE, _truncated),
    (Reason.MISSING_FIELD, _without("event_id")),
    (Reason.PROBABILITY_OUT_OF_RANGE, _with(probability=1.5, pmf=None)),
    (Reason.PROBABILITY_OUT_OF_RANGE, _with(probability=0.0, pmf=None)),
    (Reason.CHOSEN_NOT_IN_ACTIONS, _chosen_unknown),
    (Reason.DUPLICATE_ACTION_ID, _duplicate_action),
    (Reason.BAD_TIMESTAMP, _with(timestamp="last tuesday")),
    (Reason.PMF_INVALID, _bad_pmf),
    (Reason.UNKNOWN_FIELD, _with(campaign="spring")),
    (Reason.EMPTY_ACTIONS, _with(actions=[], pmf=None)),
    (Reason.UNKNOWN_NAMESPACE, _unknown_namespace),
)
OUTCOME_CORRUPTIONS: tuple[Corruption, ...] = (
    (Reason.UNDECODABLE, _truncated),
    (Reason.INVALID_VALUE, _with(outcome="loved_it")),
    (Reason.BAD_TIMESTAMP, _with(timestamp="2026-13-45T99:00:00Z")),
    (Reason.MISSING_FIELD, _without("trigger")),
    (Reason.UNKNOWN_EVENT_TYPE, _with(type="reaction")),
)


@dataclass(slots=True)
class _Logged:
    kind: Kind
    event_id: str
    doc: dict[str, Any]
    arrival: float
    late: bool = False  # outcome beyond the window


def simulate_traffic(
    world: World,
    sim: SimulatorConfig,
    join: JoinConfig,
    n_impressions: int,
    seed: int,
    invalid_fraction: float = 0.0,
) -> SimulationRun:
    """Log `n_impressions` uniform-random decisions and their outcomes, as they reach Kafka."""
    if not 0.0 <= invalid_fraction < 1.0:
        raise ValueError(f"invalid_fraction must be in [0, 1), got {invalid_fraction}")
    rng = np.random.default_rng([seed, 2])
    t = datetime.fromisoformat(sim.start).timestamp()
    logged: list[_Logged] = []
    max_delay = 1.5 * join.window_s  # later than this the join could no longer call it late
    for i in range(n_impressions):
        t += float(rng.exponential(sim.mean_gap_s))
        learner = int(rng.integers(world.n_learners))
        trigger = world.triggers[int(rng.integers(len(world.triggers)))]
        k = len(trigger.candidates)
        chosen = int(rng.integers(k))
        event_id = f"sim{seed}-{i:08d}"
        imp = {
            "type": "impression",
            "event_id": event_id,
            "timestamp": timestamp_text(t),
            "trigger": trigger.trigger_id,
            "learner_id": f"u{learner:06d}",
            "context": world.context(learner, trigger),
            "actions": [{"id": a, "features": MESSAGE_FEATURES[a]} for a in trigger.candidates],
            "chosen": trigger.candidates[chosen],
            "probability": 1.0 / k,
            "pmf": [1.0 / k] * k,
            "policy_version": "uniform-random",
        }
        logged.append(_Logged("impression", event_id, imp, t + _jitter(rng, sim)))
        message = trigger.candidates[chosen]
        probs = world.outcome_probabilities(learner, trigger, message)
        label = _LABELS[int(rng.choice(3, p=probs))]
        if message == NONE_ACTION or label == OutcomeLabel.IGNORED:
            continue  # nothing shown or no reaction: no outcome is sent, the join defaults
        delay = min(float(rng.lognormal(math.log(sim.median_delay_s), _DELAY_SIGMA)), max_delay)
        value = float(rng.poisson(3.0 if label == OutcomeLabel.HELPFUL else 1.0))
        out = {
            "type": "outcome",
            "event_id": event_id,
            "timestamp": timestamp_text(t + delay),
            "trigger": trigger.trigger_id,
            "outcome": label.value,
            "value": value,
        }
        late = delay > join.window_s
        logged.append(_Logged("outcome", event_id, out, t + delay + _jitter(rng, sim), late))
    return _to_run(logged, rng, sim, invalid_fraction)


def _jitter(rng: np.random.Generator, sim: SimulatorConfig) -> float:
    return float(rng.uniform(0.0, sim.max_transport_jitter_s))


def _to_run(
    logged: list[_Logged], rng: np.random.Generator, sim: SimulatorConfig, invalid_fraction: float
) -> SimulationRun:
    run = SimulationRun(messages=[])
    corrupted = rng.random(len(logged)) < invalid_fraction
    duplicated = rng.random(len(logged)) < sim.duplicate_fraction
    bad_impressions = {
        m.event_id
        for m, bad in zip(logged, corrupted, strict=True)
        if bad and m.kind == "impression"
    }
    for n, (m, bad, dup) in enumerate(zip(logged, corrupted, duplicated, strict=True)):
        key = m.event_id.encode()
        if bad:
            table = IMPRESSION_CORRUPTIONS if m.kind == "impression" else OUTCOME_CORRUPTIONS
            reason, corrupt = table[n % len(table)]
            run.messages.append(SimMessage(m.kind, key, corrupt(m.doc), m.arrival))
            run.invalid += 1
            run.invalid_by_reason[reason] += 1
            run.expected_dead_letters[reason] += 1
            continue
        value = orjson.dumps(m.doc)
        copies = 2 if dup else 1
        for c in range(copies):
            arrival = m.arrival + (_jitter(rng, sim) if c else 0.0)
            run.messages.append(SimMessage(m.kind, key, value, arrival))
        run.duplicates += copies - 1
        if m.kind == "impression":
            run.impressions += 1
            run.valid_event_ids.append(m.event_id)
            if dup:
                run.expected_dead_letters[Reason.DUPLICATE_IMPRESSION] += 1
            continue
        run.outcomes += 1
        if m.event_id in bad_impressions:
            run.expected_dead_letters[Reason.UNMATCHED_OUTCOME] += copies
        elif m.late:
            run.expected_dead_letters[Reason.LATE_OUTCOME] += copies
        elif dup:
            run.expected_dead_letters[Reason.DUPLICATE_OUTCOME] += 1
    run.messages.sort(key=lambda msg: msg.arrival)
    run.expected_dead_letters = Counter({str(k): v for k, v in run.expected_dead_letters.items()})
    run.invalid_by_reason = Counter({str(k): v for k, v in run.invalid_by_reason.items()})
    return run
