"""Logged decisions with their rewards, as columns over one action vocabulary: what replay reads.

Every source (our own events joined by the consumer's reward join, DSJSON, tables) ends up
here. Row i is one decision; column k of the (n, K) arrays is action ``actions[k]``.
``impressions`` keeps each decision's context and candidate order when the source has them
(VW-based candidate policies need them; a table without contexts can still be replayed by
policies that depend only on the trigger).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bandit.events import Impression
from bandit.join import JoinedEvent

PMF_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LoggedData:
    """n logged decisions over K actions (see the module docstring)."""

    event_ids: np.ndarray  # (n,) str
    triggers: np.ndarray  # (n,) str
    learners: np.ndarray  # (n,) str; "" when the source has none
    timestamps: np.ndarray  # (n,) epoch seconds; nan when the source has none
    actions: tuple[str, ...]  # the vocabulary, K
    mask: np.ndarray  # (n, K) bool: the action was a candidate of the decision
    chosen: np.ndarray  # (n,) int64 index into `actions`
    pscore: np.ndarray  # (n,) logged probability of the chosen action
    logging_pmf: np.ndarray | None  # (n, K) logged distribution; None unless every row has one
    reward: np.ndarray  # (n,) float
    labels: np.ndarray  # (n,) str outcome label ("" when the source has none)
    none_action: str | None  # the send-nothing action, when it is in the vocabulary
    impressions: tuple[Impression, ...] | None = None  # contexts, when the source has them
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> events left out
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.event_ids)
        if n == 0:
            raise ValueError(f"no logged decisions in {self.source or 'the input'}")
        k = len(self.actions)
        for name in ("triggers", "learners", "timestamps", "chosen", "pscore", "reward", "labels"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows; expected {n}")
        if self.mask.shape != (n, k):
            raise ValueError(f"mask has shape {self.mask.shape}; expected {(n, k)}")
        if self.logging_pmf is not None and self.logging_pmf.shape != (n, k):
            raise ValueError(f"logging_pmf has shape {self.logging_pmf.shape}; expected {(n, k)}")
        if self.impressions is not None and len(self.impressions) != n:
            raise ValueError(f"impressions has {len(self.impressions)} rows; expected {n}")

    @property
    def n(self) -> int:
        return len(self.event_ids)

    @property
    def trigger_ids(self) -> tuple[str, ...]:
        """The distinct triggers, sorted."""
        return tuple(sorted(set(self.triggers.tolist())))

    def trigger_codes(self) -> tuple[tuple[str, ...], np.ndarray]:
        """(distinct triggers, (n,) index of each row's trigger): the strata of tabular models."""
        names, codes = np.unique(self.triggers.astype(str), return_inverse=True)
        return tuple(names.tolist()), codes.astype(np.int64)

    def action_index(self, action: str) -> int:
        try:
            return self.actions.index(action)
        except ValueError:
            raise KeyError(f"action {action!r} is not in the log; it has {list(self.actions)}") from None

    def folds(self, k: int) -> np.ndarray:
        """(n,) fold of each row in [0, k), from a hash of its event id: the same rows fall in
        the same fold whatever the source format or row order."""
        if k < 2:
            raise ValueError(f"need at least 2 folds; got {k}")
        return np.fromiter(
            (zlib.crc32(str(e).encode()) % k for e in self.event_ids), np.int64, self.n
        )

    def subset(self, rows: np.ndarray) -> LoggedData:
        """The rows selected by a boolean mask or index array (skips kept)."""
        rows = np.asarray(rows)
        idx = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows
        return LoggedData(
            event_ids=self.event_ids[idx],
            triggers=self.triggers[idx],
            learners=self.learners[idx],
            timestamps=self.timestamps[idx],
            actions=self.actions,
            mask=self.mask[idx],
            chosen=self.chosen[idx],
            pscore=self.pscore[idx],
            logging_pmf=None if self.logging_pmf is None else self.logging_pmf[idx],
            reward=self.reward[idx],
            labels=self.labels[idx],
            none_action=self.none_action,
            impressions=None
            if self.impressions is None
            else tuple(self.impressions[i] for i in idx.tolist()),
            skipped=self.skipped,
            source=self.source,
        )


def from_joined(
    joined: Sequence[JoinedEvent],
    *,
    none_action: str | None,
    skipped: Counter[str] | None = None,
    source: str = "",
) -> LoggedData:
    """Columns of joined events (impression + settled reward), in the given order."""
    if not joined:
        raise ValueError(f"no joined decisions in {source or 'the input'}")
    vocabulary: dict[str, int] = {}
    for event in joined:
        for action in event.impression.action_ids:
            vocabulary.setdefault(action, len(vocabulary))
    actions = tuple(vocabulary)
    n, k = len(joined), len(actions)
    mask = np.zeros((n, k), dtype=bool)
    pmf = np.zeros((n, k))
    has_pmf = True
    chosen = np.empty(n, dtype=np.int64)
    for i, event in enumerate(joined):
        imp = event.impression
        cols = [vocabulary[a] for a in imp.action_ids]
        mask[i, cols] = True
        chosen[i] = cols[imp.chosen_index]
        if imp.pmf is None:
            has_pmf = False
        elif has_pmf:
            pmf[i, cols] = imp.pmf
    impressions = tuple(e.impression for e in joined)
    return LoggedData(
        event_ids=np.array([imp.event_id for imp in impressions], dtype=object),
        triggers=np.array([imp.trigger for imp in impressions], dtype=object),
        learners=np.array([imp.learner_id for imp in impressions], dtype=object),
        timestamps=np.array([imp.ts for imp in impressions], dtype=np.float64),
        actions=actions,
        mask=mask,
        chosen=chosen,
        pscore=np.array([imp.probability for imp in impressions], dtype=np.float64),
        logging_pmf=pmf if has_pmf else None,
        reward=np.array([e.reward for e in joined], dtype=np.float64),
        labels=np.array([str(e.label.value) for e in joined], dtype=object),
        none_action=none_action if none_action in vocabulary else None,
        impressions=impressions,
        skipped=Counter(skipped or {}),
        source=source,
    )
