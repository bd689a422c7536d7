"""What the learner has seen: the action catalogue per trigger, and each learner's reactions.

The catalogue tells a decision service which messages exist and where (a snapshot carries
it); the reaction counts decide cold start ("fewer than k logged outcomes"). Both are plain
state the consumer checkpoints and the snapshot exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bandit.events import Impression


class ActionCatalogue:
    """Every action id with its latest features, and the actions offered at each trigger."""

    def __init__(
        self,
        actions: Mapping[str, Mapping[str, float | str]] | None = None,
        triggers: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.actions: dict[str, dict[str, float | str]] = {
            a: dict(f) for a, f in (actions or {}).items()
        }
        self.triggers: dict[str, list[str]] = {t: list(ids) for t, ids in (triggers or {}).items()}
        # trigger -> candidate ids -> (`_writes` when checked, the `actions` entries then): while
        # nothing was written since, one tuple comparison tells whether anything is new.
        self._seen: dict[str, dict[tuple[str, ...], tuple[int, tuple[dict[str, Any], ...]]]] = {}
        self._writes = 0

    def observe(self, impression: Impression) -> None:
        """Record the impression's candidates at its trigger (cheap when nothing is new)."""
        ids, features = impression.action_ids, impression.action_features
        seen = self._seen.get(impression.trigger)
        if seen is None:
            seen = self._seen[impression.trigger] = {}
        checked = seen.get(ids)
        if checked is not None:
            if checked[0] == self._writes and checked[1] == features:
                return
            if all(self.actions.get(a) == f for a, f in zip(ids, features, strict=True)):
                seen[ids] = (self._writes, tuple(self.actions[a] for a in ids))
                return
        offered = self.triggers.setdefault(impression.trigger, [])
        for action_id, action_features in zip(ids, features, strict=True):
            self.actions[action_id] = dict(action_features)
            if action_id not in offered:
                offered.append(action_id)
        self._writes += 1
        seen[ids] = (self._writes, tuple(self.actions[a] for a in ids))

    def to_json(self) -> dict[str, Any]:
        return {"actions": self.actions, "triggers": self.triggers}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionCatalogue:
        return cls(data.get("actions", {}), data.get("triggers", {}))


class ReactionCounts:
    """Per learner, how many reactions (outcomes that arrived) were learned, capped at `cap`.

    Counting stops at the cold-start threshold, so memory is one small int per learner
    seen and nothing at all when cold start is off (`cap` 0).
    """

    def __init__(self, cap: int, counts: Mapping[str, int] | None = None) -> None:
        self.cap = cap
        self.counts: dict[str, int] = (
            {k: min(int(v), cap) for k, v in (counts or {}).items()} if cap else {}
        )

    def record(self, learner_id: str) -> None:
        if not self.cap:
            return
        seen = self.counts.get(learner_id, 0)
        if seen < self.cap:
            self.counts[learner_id] = seen + 1

    def get(self, learner_id: str) -> int:
        return self.counts.get(learner_id, 0)

    def to_json(self) -> dict[str, int]:
        return dict(self.counts)
