"""Counters of the consumer, saved in every checkpoint, and the ledger that proves exactly-once."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bandit.join import JoinedEvent
from bandit.learned_ids import event_hash

__all__ = ["ConsumerStats", "Ledger", "event_hash"]

_MASK = (1 << 64) - 1


@dataclass(slots=True)
class Ledger:
    """Order-free multiset digest of learned event ids: count and sum of hashes mod 2^64.

    Learning one event twice or skipping one changes the digest, so comparing it with the
    digest of the expected ids proves each was learned exactly once.
    """

    count: int = 0
    digest: int = 0

    def add(self, event_id: str) -> None:
        self.count += 1
        self.digest = (self.digest + event_hash(event_id)) & _MASK

    @classmethod
    def of(cls, event_ids: list[str]) -> Ledger:
        ledger = cls()
        for event_id in event_ids:
            ledger.add(event_id)
        return ledger


@dataclass(slots=True)
class ConsumerStats:
    """Cumulative counts since the first start (restored from the checkpoint on restart)."""

    consumed: int = 0
    impressions: int = 0
    outcomes: int = 0
    learned: int = 0
    defaulted: int = 0
    closed_early: int = 0  # pending impressions closed before their window ended (state full)
    dead_lettered: int = 0
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    outcomes_learned: Counter[str] = field(default_factory=Counter)
    reward_sum: float = 0.0
    checkpoints: int = 0
    snapshots: int = 0
    snapshot_sequence: int = 0  # of the last published snapshot: numbering never goes back
    starts: int = 0
    checkpoint_fallbacks: int = 0  # corrupt checkpoints passed over at a start for an older one
    read_pauses: int = 0  # partitions paused for running ahead in event time (join.max_read_ahead_s)
    ledger: Ledger = field(default_factory=Ledger)

    def record_learned(self, event: JoinedEvent) -> None:
        self.learned += 1
        self.defaulted += event.defaulted
        self.closed_early += event.closed_early
        self.outcomes_learned[event.label.value] += 1
        self.reward_sum += event.reward
        self.ledger.add(event.impression.event_id)

    def record_dead_letter(self, reason: str) -> None:
        self.dead_lettered += 1
        self.dead_letters_by_reason[reason] += 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["dead_letters_by_reason"] = dict(sorted(self.dead_letters_by_reason.items()))
        data["outcomes_learned"] = dict(sorted(self.outcomes_learned.items()))
        data["ledger"] = {"count": self.ledger.count, "digest": f"{self.ledger.digest:016x}"}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConsumerStats:
        ledger = data.get("ledger", {})
        return cls(
            consumed=data["consumed"],
            impressions=data["impressions"],
            outcomes=data["outcomes"],
            learned=data["learned"],
            defaulted=data["defaulted"],
            closed_early=data.get("closed_early", 0),
            dead_lettered=data["dead_lettered"],
            dead_letters_by_reason=Counter(data["dead_letters_by_reason"]),
            outcomes_learned=Counter(data["outcomes_learned"]),
            reward_sum=data["reward_sum"],
            checkpoints=data["checkpoints"],
            snapshots=data.get("snapshots", 0),
            snapshot_sequence=data.get("snapshot_sequence", 0),
            starts=data["starts"],
            checkpoint_fallbacks=data.get("checkpoint_fallbacks", 0),
            read_pauses=data.get("read_pauses", 0),
            ledger=Ledger(int(ledger.get("count", 0)), int(ledger.get("digest", "0"), 16)),
        )
