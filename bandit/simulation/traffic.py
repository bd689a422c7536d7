"""The event traffic the simulated platform logs, deterministic from a seed.

Impressions are logged under a uniform-random policy with exact propensities (1/K and the
whole pmf). Reactions arrive after a log-normal delay; every message reaches the broker after
a transport jitter, so some outcomes arrive before their impressions. A share of messages is
corrupted (each with the reason code the consumer must give it) and a share duplicated.
The run also states what the consumer must end up with: how many impressions it learns and
how many dead letters of each reason it writes.

`simulate_traffic` returns the whole run (tests); `stream_traffic` yields the same messages,
byte for byte and in the same order, as they arrive, holding only those still in flight (a join
window's worth), so `nudge simulate --out` writes any number of events in bounded memory.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

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
    sent: int = 0  # messages produced (also when they are streamed, not kept)
    impressions: int = 0
    outcomes: int = 0
    invalid: int = 0
    duplicates: int = 0
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    expected_dead_letters: Counter[str] = field(default_factory=Counter)
    valid_event_ids: list[str] = field(default_factory=list)
    keep_ids: bool = True  # False: valid_event_ids stays empty (a streamed run of any size)

    def summary(self) -> dict[str, Any]:
        return {
            "impressions": self.impressions,
            "outcomes": self.outcomes,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "messages": self.sent,
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
    event_time: float  # of the impression: no message logged after this one arrives earlier
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
    _check_fraction(invalid_fraction)
    rng = np.random.default_rng([seed, 2])
    logged = list(_logged_events(world, sim, join, n_impressions, seed, rng))
    return _to_run(logged, rng, sim, invalid_fraction)


def stream_traffic(
    world: World,
    sim: SimulatorConfig,
    join: JoinConfig,
    n_impressions: int,
    seed: int,
    invalid_fraction: float = 0.0,
    tally: SimulationRun | None = None,
) -> Iterator[SimMessage]:
    """The messages of `simulate_traffic` with the same arguments, in the same order, yielded
    as they arrive; ``tally`` (its ``messages`` left empty) gets the run's counts.

    Two passes of the generator: the first only counts the logged messages, because the draws
    that corrupt and duplicate them come after all of them in the generator's stream (at
    offsets known from the count, reached with PCG64's ``advance``); the second makes them. A
    message is released once no later one can arrive before it: arrivals never precede their
    impression's event time, which only grows.
    """
    _check_fraction(invalid_fraction)
    run = tally if tally is not None else SimulationRun(messages=[])
    rng = np.random.default_rng([seed, 2])
    count = sum(1 for _ in _logged_events(world, sim, join, n_impressions, seed, rng, build=False))
    corrupted, duplicated, jitters = (_advanced(rng, count * i) for i in range(3))
    rng = np.random.default_rng([seed, 2])
    pending: list[tuple[float, int, SimMessage]] = []
    bad_impressions: set[str] = set()
    order = 0
    for n, m in enumerate(_logged_events(world, sim, join, n_impressions, seed, rng)):
        while pending and pending[0][0] < m.event_time:
            yield heapq.heappop(pending)[2]
        bad = corrupted.random() < invalid_fraction
        dup = duplicated.random() < sim.duplicate_fraction
        if bad and m.kind == "impression":
            bad_impressions.add(m.event_id)
        for msg in _tally_one(run, m, n, bad, dup, lambda: _jitter(jitters, sim), bad_impressions):
            heapq.heappush(pending, (msg.arrival, order, msg))
            order += 1
        if m.kind == "outcome":
            bad_impressions.discard(m.event_id)
    while pending:
        yield heapq.heappop(pending)[2]
    _stringify(run)


def _check_fraction(invalid_fraction: float) -> None:
    if not 0.0 <= invalid_fraction < 1.0:
        raise ValueError(f"invalid_fraction must be in [0, 1), got {invalid_fraction}")


def _advanced(rng: np.random.Generator, steps: int) -> np.random.Generator:
    """A generator at ``rng``'s state moved ``steps`` 64-bit draws on (one per double)."""
    bits = cast(np.random.PCG64, copy.deepcopy(rng.bit_generator))
    return np.random.Generator(bits.advance(steps))


def _logged_events(
    world: World,
    sim: SimulatorConfig,
    join: JoinConfig,
    n_impressions: int,
    seed: int,
    rng: np.random.Generator,
    *,
    build: bool = True,
) -> Iterator[_Logged]:
    """The impressions and outcomes in the order they are logged (not arrival order); without
    ``build`` their documents are left empty (counting only: the same draws, less work)."""
    t = datetime.fromisoformat(sim.start).timestamp()
    max_delay = 1.5 * join.window_s  # later than this the join could no longer call it late
    for i in range(n_impressions):
        t += float(rng.exponential(sim.mean_gap_s))
        learner = int(rng.integers(world.n_learners))
        trigger = world.triggers[int(rng.integers(len(world.triggers)))]
        k = len(trigger.candidates)
        chosen = int(rng.integers(k))
        event_id = f"sim{seed}-{i:08d}"
        imp = (
            {}
            if not build
            else {
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
        )
        yield _Logged("impression", event_id, imp, t + _jitter(rng, sim), t)
        message = trigger.candidates[chosen]
        probs = world.outcome_probabilities(learner, trigger, message)
        label = _LABELS[int(rng.choice(3, p=probs))]
        if message == NONE_ACTION or label == OutcomeLabel.IGNORED:
            continue  # nothing shown or no reaction: no outcome is sent, the join defaults
        delay = min(float(rng.lognormal(math.log(sim.median_delay_s), _DELAY_SIGMA)), max_delay)
        value = float(rng.poisson(3.0 if label == OutcomeLabel.HELPFUL else 1.0))
        out = (
            {}
            if not build
            else {
                "type": "outcome",
                "event_id": event_id,
                "timestamp": timestamp_text(t + delay),
                "trigger": trigger.trigger_id,
                "outcome": label.value,
                "value": value,
            }
        )
        late = delay > join.window_s
        yield _Logged("outcome", event_id, out, t + delay + _jitter(rng, sim), t, late)


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
        run.messages += _tally_one(
            run, m, n, bool(bad), bool(dup), lambda: _jitter(rng, sim), bad_impressions
        )
    run.messages.sort(key=lambda msg: msg.arrival)
    _stringify(run)
    return run


def _tally_one(
    run: SimulationRun,
    m: _Logged,
    n: int,
    bad: bool,
    dup: bool,
    jitter: Callable[[], float],
    bad_impressions: set[str],
) -> list[SimMessage]:
    """The messages of the ``n``-th logged event (corrupted, once or duplicated), with what a
    correct consumer must make of them added to ``run``'s counts."""
    key = m.event_id.encode()
    if bad:
        table = IMPRESSION_CORRUPTIONS if m.kind == "impression" else OUTCOME_CORRUPTIONS
        reason, corrupt = table[n % len(table)]
        run.invalid += 1
        run.invalid_by_reason[reason] += 1
        run.expected_dead_letters[reason] += 1
        run.sent += 1
        return [SimMessage(m.kind, key, corrupt(m.doc), m.arrival)]
    value = orjson.dumps(m.doc)
    copies = 2 if dup else 1
    out = [
        SimMessage(m.kind, key, value, m.arrival + (jitter() if c else 0.0)) for c in range(copies)
    ]
    run.sent += copies
    run.duplicates += copies - 1
    if m.kind == "impression":
        run.impressions += 1
        if run.keep_ids:
            run.valid_event_ids.append(m.event_id)
        if dup:
            run.expected_dead_letters[Reason.DUPLICATE_IMPRESSION] += 1
        return out
    run.outcomes += 1
    if m.event_id in bad_impressions:
        run.expected_dead_letters[Reason.UNMATCHED_OUTCOME] += copies
    elif m.late:
        run.expected_dead_letters[Reason.LATE_OUTCOME] += copies
    elif dup:
        run.expected_dead_letters[Reason.DUPLICATE_OUTCOME] += 1
    return out


def _stringify(run: SimulationRun) -> None:
    """Reason keys as plain strings (what the consumer's stats use)."""
    run.expected_dead_letters = Counter({str(k): v for k, v in run.expected_dead_letters.items()})
    run.invalid_by_reason = Counter({str(k): v for k, v in run.invalid_by_reason.items()})
