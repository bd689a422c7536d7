"""Evidence per (trigger, message): impressions, outcomes and an unbiased value estimate.

The value of always showing message m at trigger t is estimated from the logged decisions by
inverse propensity scoring: over the impressions where m was a candidate, the mean of
x = 1[chosen = m] * reward / p(chosen), unbiased whatever the logging policy (forced share,
exploration, cold start, re-tests) as long as p is the logged probability of the whole
mixture. Sums decay with a half-life in impressions, so old evidence fades and a message whose
value changes is re-judged on recent data. The interval is normal (martingale CLT) with the
variance of a weighted mean: se^2 = var * sum(w^2) / sum(w)^2.
Reference: Horvitz & Thompson (1952); Dudik, Langford & Li, "Doubly Robust Policy Evaluation
and Learning" (ICML 2011), section 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import Any

from bandit.events import OutcomeLabel
from bandit.value_types import value_type


@dataclass(slots=True)
class ArmSums:
    """Raw counts and decayed IPS sums of one message at one trigger."""

    shown: int = 0
    helpful: int = 0
    not_helpful: int = 0
    ignored: int = 0
    candidate: int = 0  # impressions where it was offered
    n: float = 0.0  # decayed count of those impressions
    n2: float = 0.0  # decayed sum of squared decay weights
    s1: float = 0.0  # decayed sum of x
    s2: float = 0.0  # decayed sum of x^2
    last_ts: float = 0.0  # event time of the last impression it was shown in

    @property
    def mean(self) -> float:
        return self.s1 / self.n if self.n else 0.0

    @property
    def variance_of_mean(self) -> float:
        """Estimated variance of `mean` (weighted-mean formula; infinite before two impressions)."""
        if self.n <= 1.0:
            return math.inf
        var = max(self.s2 / self.n - self.mean**2, 0.0)
        return var * self.n2 / (self.n * self.n)


@value_type
class ArmEstimate:
    """What the evidence says about one message at one trigger."""

    trigger: str
    action: str
    shown: int
    helpful: int
    not_helpful: int
    ignored: int
    value: float  # IPS estimate of the mean reward of always showing it
    value_se: float
    lift: float | None  # value minus the send-nothing action's value, if that is offered
    lift_se: float | None
    gap: float | None  # value minus the best other message's value
    gap_se: float | None
    last_ts: float
    # (other message, value minus its value, se) for every other message: `gap_vs_best`
    # pruning uses all of them with a multiple-comparison correction, not the selected best.
    pairwise: tuple[tuple[str, float, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _difference_se(
    a: ArmSums, a_mean: float, a_var: float, b: ArmSums, b_mean: float, b_var: float
) -> float:
    """se of mean_a - mean_b over the impressions offering both (taken as the same ones): the
    x's of two actions are never both non-zero in one impression, so per impression
    Var(x_a - x_b) = Var(x_a) + Var(x_b) + 2 E[x_a] E[x_b]. `*_mean` and `*_var` are the arms'
    `mean` and `variance_of_mean`, computed once per arm by the caller."""
    if a.n <= 1.0 or b.n <= 1.0:
        return math.inf
    covariance = 2.0 * a_mean * b_mean * a.n2 / (a.n * a.n)
    total = a_var + b_var + covariance
    return math.sqrt(0.0 if total < 0.0 else total)  # max(total, 0.0) without the call


_MEAN = itemgetter(2)  # of a rival: (action, sums, mean, variance of the mean)


@dataclass(slots=True)
class ArmStats:
    """Evidence for every (trigger, message) the learner has seen."""

    half_life_impressions: float = 20_000.0
    none_action: str = "none"
    triggers: dict[str, dict[str, ArmSums]] = field(default_factory=dict)
    # (half-life, keep) of the last `_keep`: a power per event costs as much as the update
    _keep_of: tuple[float, float] = field(
        default=(math.nan, 1.0), init=False, repr=False, compare=False
    )

    @property
    def _keep(self) -> float:
        half_life, keep = self._keep_of
        if half_life != self.half_life_impressions:
            keep = float(0.5 ** (1.0 / self.half_life_impressions))
            self._keep_of = (self.half_life_impressions, keep)
        return keep

    def observe(
        self,
        trigger: str,
        action_ids: tuple[str, ...],
        chosen_index: int,
        probability: float,
        reward: float,
        label: OutcomeLabel,
        ts: float,
        pmf: tuple[float, ...] | None = None,
    ) -> None:
        """Add one learned impression (its reward under the join, at its logged probability).

        With the logged `pmf`, an action that had probability 0 (held back, or a version the
        policy collapsed) was not really offered: it gets no term, since x = 0 there would
        drag its estimate towards 0 whatever its value.
        """
        arms = self.triggers.get(trigger)
        if arms is None:
            arms = self.triggers[trigger] = {}
        half_life, keep = self._keep_of
        if half_life != self.half_life_impressions:
            keep = self._keep
        keep2 = keep * keep
        get = arms.get
        # Each offered action: n <- keep n + 1, n2 <- keep^2 n2 + 1, s1 <- keep s1 + x,
        # s2 <- keep s2 + x^2 (x = 0 unless chosen), inline: a method call per candidate per
        # event would cost more than the arithmetic.
        i = -1
        for action in action_ids:
            i += 1
            if pmf is not None and pmf[i] <= 0.0:
                continue
            sums = get(action)
            if sums is None:
                sums = arms[action] = ArmSums()
            if i != chosen_index:
                sums.candidate += 1
                sums.n = keep * sums.n + 1.0
                sums.n2 = keep2 * sums.n2 + 1.0
                sums.s1 = keep * sums.s1 + 0.0
                sums.s2 = keep * sums.s2 + 0.0
                continue
            x = reward / probability
            sums.candidate += 1
            sums.n = keep * sums.n + 1.0
            sums.n2 = keep2 * sums.n2 + 1.0
            sums.s1 = keep * sums.s1 + x
            sums.s2 = keep * sums.s2 + x * x
            sums.shown += 1
            sums.last_ts = ts
            if label == OutcomeLabel.HELPFUL:
                sums.helpful += 1
            elif label == OutcomeLabel.NOT_HELPFUL:
                sums.not_helpful += 1
            else:
                sums.ignored += 1

    def estimates(self, trigger: str, pairwise: bool = True) -> list[ArmEstimate]:
        """The estimate of every message at `trigger` (the send-nothing action included).
        `pairwise=False` leaves out each message's comparison with every other one (its gap to
        the best other is still there): O(messages), where the whole table is O(messages²)."""
        arms = self.triggers.get(trigger, {})
        moments = {a: (s.mean, s.variance_of_mean) for a, s in arms.items()}
        none = arms.get(self.none_action)
        none_mean, none_var = moments.get(self.none_action, (0.0, math.inf))
        # (action, sums, mean, variance) of the messages a gap can be measured against
        rivals = [(a, s, *moments[a]) for a, s in arms.items() if a != self.none_action and s.n > 0]
        out = []
        for action, sums in arms.items():
            mean, var = moments[action]
            lift = lift_se = gap = gap_se = None
            if none is not None and action != self.none_action:
                lift = mean - none_mean
                lift_se = _difference_se(sums, mean, var, none, none_mean, none_var)
            pairs: tuple[tuple[str, float, float], ...] = ()
            others = [r for r in rivals if r[0] != action] if action != self.none_action else []
            if others and pairwise:
                pairs = tuple(
                    (a, mean - m, _difference_se(sums, mean, var, s, m, v)) for a, s, m, v in others
                )
                # the best other message's comparison is among them (its first, on a tie)
                _, gap, gap_se = pairs[others.index(max(others, key=_MEAN))]
            elif others:
                _, s, m, v = max(others, key=_MEAN)
                gap, gap_se = mean - m, _difference_se(sums, mean, var, s, m, v)
            estimate = ArmEstimate(
                trigger, action, sums.shown, sums.helpful, sums.not_helpful, sums.ignored,
                mean, math.sqrt(var), lift, lift_se, gap, gap_se, sums.last_ts, pairs,
            )  # fmt: skip
            out.append(estimate)
        return out

    def all_estimates(self) -> Iterator[ArmEstimate]:
        for trigger in sorted(self.triggers):
            yield from self.estimates(trigger)

    def to_json(self) -> dict[str, Any]:
        return {
            "half_life_impressions": self.half_life_impressions,
            "none_action": self.none_action,
            "triggers": {
                t: {a: asdict(s) for a, s in arms.items()} for t, arms in self.triggers.items()
            },
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], half_life_impressions: float, none_action: str
    ) -> ArmStats:
        triggers = {
            t: {a: ArmSums(**s) for a, s in arms.items()}
            for t, arms in (data.get("triggers") or {}).items()
        }
        return cls(half_life_impressions, none_action, triggers)
