"""Hand-made partitions of impressions and outcomes for replay's reading-order tests, in memory
and on the broker: a few decisions after a warm-up, a time in seconds from `T0` for each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bandit.envelopes import Source
from bandit.events import timestamp_text
from bandit.ports import Record
from replay.logged import LoggedData

T0 = 1_767_600_000.0  # 2026-01-05T08:00:00Z
IMP, OUT = "nudge.impressions", "nudge.outcomes"  # the config's topics

Case = dict[tuple[str, int], list[dict[str, Any]]]  # (topic, partition) -> messages in order


def impression(event_id: str, at: float) -> dict[str, Any]:
    return {
        "type": "impression",
        "event_id": event_id,
        "timestamp": timestamp_text(T0 + at),
        "trigger": "quiz_failed",
        "learner_id": "u1",
        "context": {"learner": {"level": "novice"}},
        "actions": [{"id": "hint", "features": {"kind": "hint"}}, {"id": "none"}],
        "chosen": "hint",
        "probability": 0.5,
        "pmf": [0.5, 0.5],
    }


def outcome(event_id: str, at: float) -> dict[str, Any]:
    return {
        "type": "outcome",
        "event_id": event_id,
        "timestamp": timestamp_text(T0 + at),
        "trigger": "quiz_failed",
        "outcome": "helpful",
    }


def warm_up(topic: str, partition: int) -> list[dict[str, Any]]:
    """Three decisions (and their outcomes) a minute before the case: the event-time guard
    holds a partition's first records until two later ones agree with them."""
    make = impression if topic == IMP else outcome
    first = -60.0 if topic == IMP else -55.0
    return [make(f"w{partition}-{k}", first + 10 * k) for k in range(3)]


def records(case: Case, topics: Mapping[str, str] | None = None) -> list[Record]:
    """The messages of each partition, after its warm-up, at offsets 0, 1, ..., partition by
    partition; `topics` renames IMP and OUT."""
    rename = dict(topics or {})
    return [
        (Source(rename.get(topic, topic), partition, offset), orjson.dumps(doc))
        for (topic, partition), docs in case.items()
        for offset, doc in enumerate([*warm_up(topic, partition), *docs])
    ]


def rewards(data: LoggedData) -> dict[str, float]:
    """Reward by event id of the case's decisions (the warm-up left out)."""
    pairs = zip(data.event_ids.tolist(), data.reward.tolist(), strict=True)
    return {event_id: reward for event_id, reward in pairs if not event_id.startswith("w")}


# The case: the outcome of e1 (100 s after it, well inside its 300 s window) reaches
# its partition after an outcome 420 s into the stream, and the impressions have passed 360 s
# (the window's end plus the allowed lateness) before it is read: the consumer has closed
# e1's window with the default outcome and dead-letters the outcome as late.
LATE_ON_ITS_PARTITION: Case = {
    (IMP, 0): [impression("e1", 0), impression("e2", 400), impression("e3", 500)],
    (OUT, 0): [outcome("e2", 420), outcome("e1", 100)],
}
