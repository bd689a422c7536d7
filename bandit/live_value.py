"""The live value of the deployed policy over the recent joined events, next to its alternatives.

The consumer feeds every learned event to one `LiveValue`, which keeps the last `window` and
estimates, with normal intervals at `confidence`:
- `deployed`: the mean reward of the logged decisions (on-policy: they were made by the
  deployed mixture of exploitation, exploration, forced and re-test decisions);
- `send_nothing`: the value of always choosing the none action, by inverse propensity
  scoring (IPS) over the events where it was offered (SNIPS point given too);
- `by_message` and `best_message`: the IPS value of always choosing one message, over the
  events where it was offered.

IPS: for a policy that always picks m, over the n events offering m,
    V = (1/n) * sum_i 1[a_i = m] * r_i / p_i,
unbiased for any logging policy whose logged probability p_i of the chosen action a_i is
exact (here: the whole mixture's). Interval: V +- z * s / sqrt(n), s the sample standard
deviation of the per-event terms (central limit theorem; poor when m was chosen only a few
times, so `n_chosen` is reported with each). An action the logged pmf gave probability 0
(held back) was not really offered: that event gets no term for it.
References: Horvitz & Thompson (1952); Swaminathan & Joachims, "The Self-Normalized Estimator
for Counterfactual Learning" (NeurIPS 2015) for SNIPS.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from bandit.errors import CheckpointError
from bandit.join import JoinedEvent

ON_POLICY = "on-policy mean of logged rewards"
IPS = "ips"

# One remembered decision: (event time, offered action ids, chosen id, logged probability,
# reward). The offered tuple is the impression's own when nothing was held back.
_Logged = tuple[float, tuple[str, ...], str, float, float]


@dataclass(slots=True)
class _Sums:
    """Sums of one action's IPS terms over the events offering it."""

    offered: int = 0
    chosen: int = 0
    s1: float = 0.0  # sum of r / p where chosen
    s2: float = 0.0  # sum of (r / p)^2 where chosen
    inverse_p: float = 0.0  # sum of 1 / p where chosen (the SNIPS denominator)


class LiveValue:
    """Rolling estimates of the deployed policy, sending nothing and each single message.

    `add` is O(actions); `estimates` is O(window * actions) and meant for each snapshot.
    """

    def __init__(self, window: int = 5000, confidence: float = 0.95, none_action: str = "none"):
        if window < 1:
            raise ValueError(f"window must be at least 1 event, got {window}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        self.window = window
        self.confidence = confidence
        self.none_action = none_action
        self._events: deque[_Logged] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: JoinedEvent) -> None:
        """Remember one learned decision (the oldest is forgotten past `window`)."""
        imp = event.impression
        offered = imp.action_ids
        if imp.pmf is not None and min(imp.pmf) <= 0.0:
            offered = tuple(a for a, p in zip(imp.action_ids, imp.pmf, strict=True) if p > 0.0)
        self._events.append((imp.ts, offered, imp.chosen, imp.probability, event.reward))

    # ---- estimates ------------------------------------------------------------------------

    def estimates(self) -> dict[str, Any]:
        """JSON-ready estimates over the remembered events (None where there is no data).

        `best_message` is the message with the highest IPS value: picking the maximum of noisy
        estimates is optimistically biased (its value and interval run high), and messages
        are compared over the events where each was offered, which need not be the same.
        """
        z = NormalDist().inv_cdf(0.5 + self.confidence / 2.0)
        sums = self._sums()
        by_message = {
            action: {**_interval(s.s1, s.s2, s.offered, z), "n": s.offered, "n_chosen": s.chosen}
            for action, s in sorted(sums.items())
        }
        messages = {a: v for a, v in by_message.items() if a != self.none_action}
        best = max(messages, key=lambda a: (messages[a]["value"], a), default=None)
        rewards = [e[4] for e in self._events]
        none = sums.get(self.none_action)
        return {
            "n": len(self._events),
            "window": self.window,
            "confidence": self.confidence,
            "from_ts": min((e[0] for e in self._events), default=None),  # event time span
            "to_ts": max((e[0] for e in self._events), default=None),
            "deployed": {
                "estimator": ON_POLICY,
                **_interval(sum(rewards), sum(r * r for r in rewards), len(rewards), z),
                "n": len(rewards),
            }
            if rewards
            else None,
            "send_nothing": {
                "estimator": IPS,
                "action": self.none_action,
                **by_message[self.none_action],
                "snips": none.s1 / none.inverse_p if none.inverse_p > 0.0 else None,
            }
            if none is not None
            else None,
            "best_message": {"estimator": IPS, "action": best, **messages[best]}
            if best is not None
            else None,
            "by_message": by_message,
        }

    def _sums(self) -> dict[str, _Sums]:
        sums: dict[str, _Sums] = {}
        for _, offered, chosen, probability, reward in self._events:
            for action in offered:
                s = sums.get(action)
                if s is None:
                    s = sums[action] = _Sums()
                s.offered += 1
                if action == chosen:
                    x = reward / probability
                    s.chosen += 1
                    s.s1 += x
                    s.s2 += x * x
                    s.inverse_p += 1.0 / probability
        return sums

    # ---- checkpoints ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-ready: the remembered events, action ids and offered sets numbered once (a
        checkpoint holds it, so a restarted consumer ships the same estimates an uninterrupted
        one would). Numbering whole offered sets keeps it ~1 µs per event: it is in every
        checkpoint."""
        numbers: dict[str, int] = {}
        sets: dict[tuple[str, ...], int] = {}
        events: list[list[Any]] = []
        for ts, offered, chosen, probability, reward in self._events:
            k = sets.get(offered)
            if k is None:
                k = sets[offered] = len(sets)
            c = numbers.get(chosen)
            if c is None:
                c = numbers[chosen] = len(numbers)
            events.append([ts, k, c, probability, reward])
        for offered in sets:
            for action in offered:
                numbers.setdefault(action, len(numbers))
        offered_sets = [[numbers[a] for a in offered] for offered in sets]
        return {"actions": list(numbers), "offered": offered_sets, "events": events}

    @classmethod
    def from_state(
        cls,
        data: Mapping[str, Any],
        window: int = 5000,
        confidence: float = 0.95,
        none_action: str = "none",
    ) -> LiveValue:
        """A `LiveValue` holding the events `state()` saved (an empty mapping: none)."""
        live = cls(window, confidence, none_action)
        try:
            actions = [str(a) for a in data.get("actions", [])]
            # Saved before offered sets were numbered: each event lists its offered actions.
            sets = [tuple(actions[i] for i in offered) for offered in data.get("offered", [])]
            for ts, offered, chosen, probability, reward in data.get("events", []):
                live._events.append(
                    (
                        float(ts),
                        sets[offered] if "offered" in data else tuple(actions[i] for i in offered),
                        actions[chosen],
                        float(probability),
                        float(reward),
                    )
                )
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CheckpointError(f"saved live value does not parse ({exc})") from None
        return live


def _interval(s1: float, s2: float, n: int, z: float) -> dict[str, float | None]:
    """{value, low, high}: the mean of n terms with sums s1, s2 and its normal interval
    (None before two terms)."""
    mean = s1 / n if n else 0.0
    if n < 2:
        return {"value": mean, "low": None, "high": None}
    variance = max(s2 - n * mean * mean, 0.0) / (n - 1)
    half = z * math.sqrt(variance / n)
    return {"value": mean, "low": mean - half, "high": mean + half}
