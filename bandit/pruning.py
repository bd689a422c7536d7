"""The pruning rule: which messages to hold back at which trigger, with the evidence for it.

Evaluated every `evaluate_every_events` learned events on the `ArmStats` evidence: a message
shown at least `min_impressions` times whose metric interval lies wholly below the threshold
is pruned at that trigger (only there); it is restored when its estimate is back at the
threshold.
Manual overrides (keep / hold) win. Every change is logged with its evidence and event time.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from bandit.arms import ArmEstimate, ArmStats
from bandit.config import PruningConfig
from bandit.value_types import value_type

log = logging.getLogger("nudge.pruning")

Status = Literal["active", "pruned", "forced_keep", "forced_hold"]
HELD: frozenset[str] = frozenset({"pruned", "forced_hold"})
LOG_LIMIT = 1000


@value_type
class Evidence:
    """The metric's estimate and interval behind a pruning decision."""

    metric: str
    estimate: float | None
    low: float | None
    high: float | None
    shown: int


@value_type
class ArmStatus:
    """A message's status at a trigger, since when (event time) and on what evidence."""

    status: Status
    since: float
    evidence: Evidence


@value_type
class PruningChange:
    """One logged change of status."""

    ts: float
    trigger: str
    action: str
    before: Status
    after: Status
    evidence: Evidence


@functools.lru_cache(maxsize=64)
def _normal_quantile(p: float) -> float:
    """The standard normal's p-quantile (a handful of distinct p's, asked per arm per
    evaluation)."""
    return NormalDist().inv_cdf(p)


def metric_interval(
    estimate: ArmEstimate, config: PruningConfig
) -> tuple[float | None, float | None, float | None]:
    """(estimate, low, high) of the configured metric; None where it does not apply."""
    alpha = 1.0 - config.confidence
    z = _normal_quantile(1.0 - alpha / 2.0)
    value: float | None
    se: float | None
    match config.metric:
        case "reward":
            value, se = estimate.value, estimate.value_se
        case "lift_vs_none":
            value, se = estimate.lift, estimate.lift_se
        case "gap_vs_best":
            # The estimated best is selected on the same data, so its gap is biased low. Compare
            # with every other message instead, Bonferroni-corrected, and report the comparison
            # with the lowest upper bound: if it is below the threshold, some message beats this
            # one by more than |threshold|, so the best one does too.
            finite = [(d, e) for _, d, e in estimate.pairwise if math.isfinite(e)]
            if not finite:
                return estimate.gap, None, None
            z = _normal_quantile(1.0 - alpha / (2.0 * len(estimate.pairwise)))
            value, se = min(finite, key=lambda pair: pair[0] + z * pair[1])
    if value is None or se is None or not math.isfinite(se):
        return value, None, None  # no interval yet (JSON has no infinity)
    return value, value - z * se, value + z * se


@dataclass(slots=True)
class PruningState:
    """Status of every evaluated (trigger, message) and the recent change log."""

    statuses: dict[str, dict[str, ArmStatus]] = field(default_factory=dict)
    changes: list[PruningChange] = field(default_factory=list)
    events_since_evaluation: int = 0  # saved, so a restored learner evaluates at the same points

    def held(self) -> dict[str, dict[str, Status]]:
        """{trigger: {message: pruned | forced_hold}}: what decision services hold back."""
        out: dict[str, dict[str, Status]] = {}
        for trigger, arms in self.statuses.items():
            held = {a: s.status for a, s in arms.items() if s.status in HELD}
            if held:
                out[trigger] = held
        return out

    def evaluate(self, arms: ArmStats, config: PruningConfig, now: float) -> list[PruningChange]:
        """Re-judge every message on the current evidence; returns (and logs) the changes."""
        changes: list[PruningChange] = []
        for trigger in sorted(arms.triggers):
            current = self.statuses.setdefault(trigger, {})
            for estimate in arms.estimates(trigger, pairwise=config.metric == "gap_vs_best"):
                if estimate.action == arms.none_action:
                    continue
                value, low, high = metric_interval(estimate, config)
                evidence = Evidence(config.metric, value, low, high, estimate.shown)
                before = current.get(estimate.action)
                was_pruned = before is not None and before.status == "pruned"
                status = _decide(estimate, value, high, config, was_pruned)
                if before is None or before.status != status:
                    current[estimate.action] = ArmStatus(status, now, evidence)
                    change = PruningChange(
                        now, trigger, estimate.action,
                        before.status if before else "active", status, evidence,
                    )  # fmt: skip
                    if before is not None or status != "active":
                        changes.append(change)
                else:
                    current[estimate.action] = ArmStatus(before.status, before.since, evidence)
        for change in changes:
            log.info(
                "%s at %s: %s -> %s (%s %s, interval [%s, %s], shown %d)",
                change.action, change.trigger, change.before, change.after,
                change.evidence.metric, _fmt(change.evidence.estimate),
                _fmt(change.evidence.low), _fmt(change.evidence.high), change.evidence.shown,
            )  # fmt: skip
        self.changes = (self.changes + changes)[-LOG_LIMIT:]
        self.events_since_evaluation = 0
        return changes

    def to_json(self) -> dict[str, Any]:
        return {
            "statuses": {
                t: {a: asdict(s) for a, s in arms.items()} for t, arms in self.statuses.items()
            },
            "changes": [asdict(c) for c in self.changes],
            "events_since_evaluation": self.events_since_evaluation,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PruningState:
        statuses = {
            t: {a: _status(s) for a, s in arms.items()}
            for t, arms in (data.get("statuses") or {}).items()
        }
        changes = [
            PruningChange(
                c["ts"],
                c["trigger"],
                c["action"],
                c["before"],
                c["after"],
                Evidence(**c["evidence"]),
            )
            for c in data.get("changes") or []
        ]
        return cls(statuses, changes, int(data.get("events_since_evaluation", 0)))


def _decide(
    estimate: ArmEstimate,
    value: float | None,
    high: float | None,
    config: PruningConfig,
    was_pruned: bool,
) -> Status:
    """Prune when the whole interval is below the threshold; once pruned, stay pruned until
    the estimate itself is back at the threshold (hysteresis: a message whose value sits
    just below the threshold does not flap between pruned and active as its interval
    breathes; one that really improves comes back through the re-test evidence)."""
    override = config.override_for(estimate.trigger, estimate.action)
    if override == "keep":
        return "forced_keep"
    if override == "hold":
        return "forced_hold"
    if not config.enabled or value is None:
        return "active"
    if was_pruned:
        return "pruned" if value < config.threshold else "active"
    if high is not None and estimate.shown >= config.min_impressions and high < config.threshold:
        return "pruned"
    return "active"


def _status(data: Mapping[str, Any]) -> ArmStatus:
    return ArmStatus(data["status"], data["since"], Evidence(**data["evidence"]))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"
