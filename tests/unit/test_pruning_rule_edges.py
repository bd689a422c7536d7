"""The pruning rule at its edges: exact thresholds, the comparison `gap_vs_best` reports, the
logged evidence, and the state a restored learner carries. (Main tests: test_pruning.py.)"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from statistics import NormalDist

import pytest

from bandit.arms import ArmEstimate, ArmStats
from bandit.config import PruningConfig
from bandit.events import OutcomeLabel
from bandit.pruning import PruningState, metric_interval

NONE = "none"
T = "A/quiz/failed"
T0 = 1_767_600_000.0
NO_DECAY = math.inf  # every impression weighs the same


def rule(**fields: object) -> PruningConfig:
    defaults: dict[str, object] = {
        "metric": "reward", "threshold": 0.0, "min_impressions": 20,
        "half_life_impressions": NO_DECAY,
    }  # fmt: skip
    return PruningConfig.model_validate(defaults | fields)


def alternate(
    arms: ArmStats, actions: tuple[str, ...], rewards: dict[str, float], cycles: int
) -> None:
    """Each action in turn, at probability 1 / K, with a fixed reward."""
    for c in range(cycles):
        for k, action in enumerate(actions):
            reward = rewards[action]
            label = OutcomeLabel.HELPFUL if reward > 0 else OutcomeLabel.IGNORED
            arms.observe(T, actions, k, 1 / len(actions), reward, label, T0 + c)


def statuses(state: PruningState) -> dict[str, str]:
    return {a: s.status for a, s in state.statuses[T].items()}


def test_an_interval_that_only_touches_the_threshold_does_not_prune() -> None:
    # "flat" always earns 0: estimate 0, se 0, so its interval is [0, 0], not below 0.
    arms = ArmStats(NO_DECAY, NONE)
    alternate(arms, ("flat", "bad", NONE), {"flat": 0.0, "bad": -1.0, NONE: 0.0}, cycles=20)
    state = PruningState()
    state.evaluate(arms, rule(), T0)
    assert state.statuses[T]["flat"].evidence.high == 0.0
    assert statuses(state) == {"flat": "active", "bad": "pruned"}


def test_a_pruned_message_whose_estimate_is_back_exactly_at_the_threshold_is_restored() -> None:
    # At probability 1/2 each impression of "m" weighs 2: 20 cycles at -1 give the estimate
    # -1 (pruned); 20 more at +1 give (20 * -2 + 20 * 2) / 80 = 0, the threshold exactly.
    arms = ArmStats(NO_DECAY, NONE)
    state = PruningState()
    alternate(arms, ("m", NONE), {"m": -1.0, NONE: 0.0}, cycles=20)
    state.evaluate(arms, rule(), T0)
    assert statuses(state) == {"m": "pruned"}
    alternate(arms, ("m", NONE), {"m": 1.0, NONE: 0.0}, cycles=20)
    state.evaluate(arms, rule(), T0 + 100)
    assert state.statuses[T]["m"].evidence.estimate == 0.0
    assert statuses(state) == {"m": "active"}


def test_send_nothing_listed_first_does_not_stop_the_evaluation() -> None:
    arms = ArmStats(NO_DECAY, NONE)
    alternate(arms, (NONE, "bad"), {"bad": -1.0, NONE: 0.0}, cycles=20)
    state = PruningState()
    state.evaluate(arms, rule(), T0)
    assert statuses(state) == {"bad": "pruned"}


def test_a_change_is_stamped_with_event_time_and_an_unchanged_status_keeps_its_since() -> None:
    arms = ArmStats(NO_DECAY, NONE)
    alternate(arms, ("bad", NONE), {"bad": -1.0, NONE: 0.0}, cycles=20)
    state = PruningState(events_since_evaluation=7)
    (change,) = state.evaluate(arms, rule(), T0)
    assert (change.ts, change.action, change.after) == (T0, "bad", "pruned")
    assert state.events_since_evaluation == 0
    alternate(arms, ("bad", NONE), {"bad": -1.0, NONE: 0.0}, cycles=5)
    assert state.evaluate(arms, rule(), T0 + 60) == []
    status = state.statuses[T]["bad"]
    assert (status.status, status.since, status.evidence.shown) == ("pruned", T0, 25)


def test_the_events_since_the_last_evaluation_survive_a_restore() -> None:
    state = PruningState(events_since_evaluation=7)
    assert PruningState.from_json(state.to_json()).events_since_evaluation == 7
    assert PruningState.from_json({}) == PruningState()  # a state saved before it existed


def pairwise_estimate(pairwise: Sequence[tuple[str, float, float]]) -> ArmEstimate:
    d, se = pairwise[0][1], pairwise[0][2]
    return ArmEstimate(
        T, "m", 100, 0, 0, 100, 0.0, 0.1, None, None, d, se, T0, tuple(pairwise)
    )  # fmt: skip


def test_gap_vs_best_reports_the_comparison_with_the_lowest_upper_bound() -> None:
    # Two comparisons at 95%, Bonferroni: z = inv_cdf(1 - 0.05 / 4) = 2.2414.
    #   vs x: -0.5 + 2.2414 * 0.4 = +0.397   (lowest difference, but a wide interval)
    #   vs y: -0.3 + 2.2414 * 0.01 = -0.278  (lowest upper bound: reported)
    z = NormalDist().inv_cdf(1 - 0.05 / 4)
    estimate = pairwise_estimate([("x", -0.5, 0.4), ("y", -0.3, 0.01)])
    value, low, high = metric_interval(estimate, rule(metric="gap_vs_best"))
    assert (value, low, high) == pytest.approx((-0.3, -0.3 - z * 0.01, -0.3 + z * 0.01))


def test_every_change_is_logged_with_its_evidence(caplog: pytest.LogCaptureFixture) -> None:
    # "bad": x = -2 on its 20 impressions, 0 on the 20 others: mean -1, var E[x^2] - 1 = 1,
    # se = sqrt(1 / 40) = 0.1581; 1.96 * se = 0.3099: interval [-1.310, -0.690].
    arms = ArmStats(NO_DECAY, NONE)
    alternate(arms, ("bad", NONE), {"bad": -1.0, NONE: 0.0}, cycles=20)
    # Without a send-nothing action lift_vs_none does not apply: "hint" has no evidence.
    no_none = ArmStats(NO_DECAY, NONE)
    alternate(no_none, ("hint", "other"), {"hint": 1.0, "other": 0.0}, cycles=1)
    held = rule(metric="lift_vs_none", overrides={"*": {"hint": "hold"}})
    with caplog.at_level(logging.INFO, logger="nudge.pruning"):
        PruningState().evaluate(arms, rule(), T0)
        PruningState().evaluate(no_none, held, T0)
    assert [r.getMessage() for r in caplog.records] == [
        f"bad at {T}: active -> pruned (reward -1.000, interval [-1.310, -0.690], shown 20)",
        f"hint at {T}: active -> forced_hold (lift_vs_none n/a, interval [n/a, n/a], shown 1)",
    ]
