"""Off-policy estimators on tiny logs whose estimates are computed by hand (in the comments).

Each table is small enough to check with pencil and paper; together they pin the formulas
that the statistical tests in test_estimators.py only bound (kills mutants that survive them,
see scripts/mutate).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from replay.estimators import DM, DR, IPS, SNIPS, Diagnostics, DRos, LoggedFeedback, fit_tabular


def three_events() -> LoggedFeedback:
    """Weights 4, 1, 1 (they do not average 1, so SNIPS differs from IPS).

    event  chosen  pscore  target      reward  w = target[chosen] / pscore
      0      0      0.25   [1,   0  ]    1       4
      1      1      0.5    [0.5, 0.5]    0       1
      2      0      0.5    [0.5, 0.5]    1       1
    """
    return LoggedFeedback(
        reward=np.array([1.0, 0.0, 1.0]),
        pscore=np.array([0.25, 0.5, 0.5]),
        chosen=np.array([0, 1, 0]),
        target=np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]]),
    )


def test_ips_is_the_mean_weighted_reward_with_its_sample_standard_error() -> None:
    # w r = [4, 0, 1]: V = 5/3; deviations [7/3, -5/3, -2/3], squares sum 78/9, / (n-1) = 13/3;
    # se = sqrt(13/3 / 3) = sqrt(13) / 3.
    est = IPS().estimate(three_events())
    assert est.value == pytest.approx(5 / 3, rel=1e-12)
    assert est.se == pytest.approx(math.sqrt(13) / 3, rel=1e-12)
    z = 1.959963984540054
    assert (est.low, est.high) == pytest.approx((5 / 3 - z * est.se, 5 / 3 + z * est.se))


def test_snips_divides_by_the_summed_weights_not_by_n() -> None:
    # V = sum w r / sum w = (4 + 0 + 1) / (4 + 1 + 1) = 5/6 (IPS, dividing by n = 3, gives 5/3).
    # Delta method: phi_i = (w_i r_i - V w_i) / mean(w), mean(w) = 2:
    #   phi = [(4 - 10/3) / 2, (0 - 5/6) / 2, (1 - 5/6) / 2] = [1/3, -5/12, 1/12] (sum 0);
    #   squares sum 42/144, / (n-1) = 7/48; se = sqrt(7/48 / 3) = sqrt(7) / 12.
    est = SNIPS().estimate(three_events())
    assert est.value == pytest.approx(5 / 6, rel=1e-12)
    assert est.se == pytest.approx(math.sqrt(7) / 12, rel=1e-12)


def test_snips_with_no_weighted_event_reports_zero() -> None:
    # The target never picks a logged action: every w = 0, sum w r / sum w is 0/0 -> 0 by
    # convention; the influence values are all 0 (no spread).
    feedback = LoggedFeedback(
        reward=np.array([1.0, 1.0]),
        pscore=np.array([0.5, 0.5]),
        chosen=np.array([0, 0]),
        target=np.array([[0.0, 1.0], [0.0, 1.0]]),
    )
    est = SNIPS().estimate(feedback)
    assert (est.value, est.se) == (0.0, 0.0)


def two_events_with_q_hat() -> LoggedFeedback:
    """
    event  chosen  pscore  target      reward  q_hat       w   direct = sum_a target q_hat
      0      0      0.25   [1,   0  ]    1     [0.5, 0  ]   4   0.5
      1      1      0.5    [0.5, 0.5]    0     [0.5, 0.5]   1   0.5
    """
    return LoggedFeedback(
        reward=np.array([1.0, 0.0]),
        pscore=np.array([0.25, 0.5]),
        chosen=np.array([0, 1]),
        target=np.array([[1.0, 0.0], [0.5, 0.5]]),
        q_hat=np.array([[0.5, 0.0], [0.5, 0.5]]),
    )


def test_dm_is_the_mean_target_weighted_reward_model() -> None:
    # direct = [0.5, 0.5]: V = 0.5, no spread.
    est = DM().estimate(two_events_with_q_hat())
    assert (est.value, est.se) == (pytest.approx(0.5), pytest.approx(0.0))


@pytest.mark.parametrize(
    ("clip", "value"),
    [
        # residuals r - q_hat(chosen) = [0.5, -0.5]; terms = direct + min(w, clip) * residual.
        (None, 1.25),  # [0.5 + 4 * 0.5, 0.5 - 1 * 0.5] = [2.5, 0]: V = 1.25
        (2.0, 0.75),  # [0.5 + 2 * 0.5, 0.5 - 1 * 0.5] = [1.5, 0]: V = 0.75
        (0.5, 0.5),  # [0.5 + 0.5 * 0.5, 0.5 - 0.5 * 0.5] = [0.75, 0.25]: V = 0.5
        (4.0, 1.25),  # clip at the largest weight changes nothing
    ],
)
def test_dr_clips_the_weight_of_the_residual_at_clip(clip: float | None, value: float) -> None:
    assert DR(clip=clip).estimate(two_events_with_q_hat()).value == pytest.approx(value)


@pytest.mark.parametrize(("clip", "value"), [(None, 2.0), (2.0, 1.0), (0.5, 0.25), (4.0, 2.0)])
def test_ips_clips_the_weight_at_clip(clip: float | None, value: float) -> None:
    # w r = [4 * 1, 1 * 0]; min(w, clip) r = [min(4, clip), 0]: V = min(4, clip) / 2.
    assert IPS(clip=clip).estimate(two_events_with_q_hat()).value == pytest.approx(value)


def test_dros_with_a_fixed_lambda_shrinks_each_weight_to_lambda_w_over_w2_plus_lambda() -> None:
    # lambda = 4: w' = 4 w / (w^2 + 4) = [16 / 20, 4 / 5] = [0.8, 0.8];
    # terms = [0.5 + 0.8 * 0.5, 0.5 - 0.8 * 0.5] = [0.9, 0.1]: V = 0.5.
    # lambda = 16: w' = [64 / 32, 16 / 17] = [2, 16/17]; terms = [1.5, 0.5 - 8/17]: V = 13/17.
    assert DRos(lambda_=4.0).estimate(two_events_with_q_hat()).value == pytest.approx(0.5)
    assert DRos(lambda_=16.0).estimate(two_events_with_q_hat()).value == pytest.approx(13 / 17)


def test_tuned_dros_minimises_variance_plus_squared_bias_bound() -> None:
    # Event 0: w = 1 / 0.1 = 10, residual r = 1; event 1: w = 0, residual 0; direct = 0 for both.
    # With x = w' r the terms are [x, 0]: variance / n = (x^2 / 2) / 2 = x^2 / 4, and the bias
    # bound mean(|w - w'| |r|) = (10 - x) / 2.
    #   squared bias: x^2/4 + (10 - x)^2/4 is least at x = 5 = w / 2, i.e. lambda = w^2 = 100
    #     (on the grid), so V = 5 / 2 = 2.5;
    #   unsquared: x^2/4 + (10 - x)/2 is least at x = 1, nearest grid point lambda = 10
    #     (w' = 100/110), which would give V = 0.45.
    feedback = LoggedFeedback(
        reward=np.array([1.0, 0.0]),
        pscore=np.array([0.1, 0.9]),
        chosen=np.array([0, 1]),
        target=np.array([[1.0, 0.0], [1.0, 0.0]]),
        q_hat=np.zeros((2, 2)),
    )
    assert 100.0 in DRos.LAMBDA_GRID
    assert DRos().estimate(feedback).value == pytest.approx(2.5)
    assert DRos(lambda_=100.0).estimate(feedback).value == pytest.approx(2.5)


def four_events_in_three_cells() -> LoggedFeedback:
    """Cells that never logged an action (cell 1 never logged action 1, cell 2 action 0, no
    cell action 2), for the tabular model's fallbacks.

    event  cell  chosen  pscore  reward  1 / pscore
      0     0      0      0.5     1.0     2
      1     0      1      0.25    0.2     4
      2     2      1      0.5     0.8     2
      3     1      0      0.5     0.0     2
    """
    return LoggedFeedback(
        reward=np.array([1.0, 0.2, 0.8, 0.0]),
        pscore=np.array([0.5, 0.25, 0.5, 0.5]),
        chosen=np.array([0, 1, 1, 0]),
        target=np.tile([0.0, 1.0, 0.0], (4, 1)),  # always action 1
        cells=np.array([0, 0, 2, 1]),
    )


def test_tabular_model_falls_back_to_the_actions_weighted_mean_then_the_overall_one() -> None:
    # Logged cells: q(0, 0) = 1, q(0, 1) = 0.2, q(2, 1) = 0.8, q(1, 0) = 0.
    # Action 0 over all cells: (2 * 1 + 2 * 0) / (2 + 2) = 0.5         -> q(2, 0)
    # Action 1 over all cells: (4 * 0.2 + 2 * 0.8) / (4 + 2) = 0.4     -> q(1, 1)
    #   (the plain mean would be 0.5)
    # Action 2, never logged: overall (2 + 0.8 + 1.6 + 0) / (2 + 4 + 2 + 2) = 0.44.
    fit = fit_tabular(four_events_in_three_cells())
    by_cell = {0: [1.0, 0.2, 0.44], 1: [0.0, 0.4, 0.44], 2: [0.5, 0.8, 0.44]}
    expected = np.array([by_cell[c] for c in (0, 0, 2, 1)])
    np.testing.assert_allclose(fit.q_hat, expected, rtol=1e-12)
    np.testing.assert_allclose(fit.logged, [2, 4, 0, 2, 0, 0, 0, 2, 0])  # cell * K + action
    # Target mass (always action 1): cells 0, 1, 2 hold 2, 1, 1 events; (1, 1) was never
    # logged, so 1 of the 4 units of mass is extrapolated.
    np.testing.assert_allclose(fit.mass, [0, 2, 0, 0, 1, 0, 0, 1, 0])
    assert fit.extrapolated_mass == pytest.approx(0.25)


def test_dm_with_cells_uses_the_fallback_for_the_never_logged_cell() -> None:
    # q(c_i, 1) per event = [0.2, 0.2, 0.8, 0.4]: V = 1.6 / 4 = 0.4.
    assert DM().estimate(four_events_in_three_cells()).value == pytest.approx(0.4)


def test_tuned_dros_shrinks_the_residual_term_not_its_negative() -> None:
    # As above but event 0 has q_hat = 6, reward 7 (residual still 1), so direct = [6, 0] and
    # the terms are [6 + x, 0]: variance / n = (6 + x)^2 / 4, bias bound (10 - x) / 2.
    # mse(x) = (6 + x)^2/4 + (10 - x)^2/4 is least at x = 2;
    #   lambda = 10: x = 100/110 = 0.909, mse 32.6; lambda = 10^1.5: x = 10 / (1 + sqrt(10))
    #   = 2.40, mse 32.08; lambda = 100: x = 5, mse 36.5. So lambda = 10^1.5 and
    #   V = (6 + 10 / (1 + sqrt(10))) / 2. (With the sign flipped, (6 - x)^2 would pick x = 8.)
    feedback = LoggedFeedback(
        reward=np.array([7.0, 0.0]),
        pscore=np.array([0.1, 0.9]),
        chosen=np.array([0, 1]),
        target=np.array([[1.0, 0.0], [1.0, 0.0]]),
        q_hat=np.array([[6.0, 0.0], [0.0, 0.0]]),
    )
    assert DRos().estimate(feedback).value == pytest.approx((6 + 10 / (1 + math.sqrt(10))) / 2)


def one_cell_four_events() -> LoggedFeedback:
    """One cell, two actions, pscore 0.5 everywhere; the target is not a function of the cell,
    so DR's model-error term (target mass M minus summed weights S) does not vanish.

    event  chosen  reward  target       w
      0      0       1     [1,   0  ]   2
      1      0       0     [0,   1  ]   0
      2      1       1     [0,   1  ]   2
      3      1       1     [0.5, 0.5]   1
    Fit: N(0) = N(1) = 4 (summed 1 / pscore); q(0) = (2 * 1 + 2 * 0) / 4 = 0.5, q(1) = 1.
    Residuals r - q(a_i) = [0.5, -0.5, 0, 0]; direct = sum_a target q = [0.5, 1, 1, 0.75].
    Target mass M(0) = 1 + 0 + 0 + 0.5 = 1.5, M(1) = 2.5.
    """
    return LoggedFeedback(
        reward=np.array([1.0, 0.0, 1.0, 1.0]),
        pscore=np.full(4, 0.5),
        chosen=np.array([0, 0, 1, 1]),
        target=np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.5, 0.5]]),
        cells=np.zeros(4, dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("estimator", "value", "se"),
    [
        # DM: V = mean(direct) = 3.25 / 4 = 0.8125. Model error M / (p N) * residual
        #   = 1.5 / 2 * [0.5, -0.5] = [0.375, -0.375] (events 2, 3: residual 0);
        #   phi = direct + error - V = [0.0625, -0.1875, 0.1875, -0.0625]; squares sum 5/64;
        #   se^2 = 5/64 / 3 / 4 = 5/768.
        (DM(), 0.8125, math.sqrt(5 / 768)),
        # DR: terms direct + w * residual = [1.5, 1, 1, 0.75]: V = 4.25 / 4 = 1.0625.
        #   S(0) = 2 + 0 = 2: model error (M - S) / (p N) * residual = -0.25 * [0.5, -0.5];
        #   phi = [1.375, 1.125, 1, 0.75] - V = [0.3125, 0.0625, -0.0625, -0.3125];
        #   squares sum 13/64; se^2 = 13/768.
        (DR(), 1.0625, math.sqrt(13 / 768)),
        # DRos, lambda 1: w' = w / (w^2 + 1) = [0.4, 0, 0.4, 0.5]; terms = direct + w' residual
        #   = [0.7, 1, 1, 0.75]: V = 3.45 / 4 = 0.8625. S'(0) = 0.4: error (1.5 - 0.4) / 2 *
        #   [0.5, -0.5] = [0.275, -0.275]; phi = [0.1125, -0.1375, 0.1375, -0.1125];
        #   squares sum 101/1600; se^2 = 101/1600 / 3 / 4 = 101/19200.
        (DRos(lambda_=1.0), 0.8625, math.sqrt(101 / 19200)),
    ],
    ids=["DM", "DR", "DRos"],
)
def test_fitted_model_influence_adds_the_model_error_term(
    estimator: DM | DR | DRos, value: float, se: float
) -> None:
    est = estimator.estimate(one_cell_four_events())
    assert est.value == pytest.approx(value, rel=1e-12)
    assert est.se == pytest.approx(se, rel=1e-12)


def test_an_action_logged_once_with_probability_one_is_a_fitted_cell_of_its_own() -> None:
    # event cell chosen pscore reward: (0, 0, 1.0, 1.0), (1, 0, 0.5, 0.0), (1, 1, 1.0, 0.5).
    # Summed 1 / pscore: N(0, 0) = 1, N(1, 0) = 2, N(1, 1) = 1 (a weight of exactly 1 counts).
    # q(0, 0) = 1; q(1, 0) = 0; q(1, 1) = 0.5; q(0, 1) never logged: action 1's mean 0.5
    # (not the overall (1 + 0 + 0.5) / (1 + 2 + 1) = 0.375).
    feedback = LoggedFeedback(
        reward=np.array([1.0, 0.0, 0.5]),
        pscore=np.array([1.0, 0.5, 1.0]),
        chosen=np.array([0, 0, 1]),
        target=np.full((3, 2), 0.5),
        cells=np.array([0, 1, 1]),
    )
    np.testing.assert_allclose(
        fit_tabular(feedback).q_hat, [[1.0, 0.5], [0.0, 0.5], [0.0, 0.5]], rtol=1e-12
    )


def test_a_single_event_is_its_own_reward_model_and_has_no_standard_error() -> None:
    # Reward 0.7 logged with probability 1; the target splits 0.5 / 0.5, so half its mass is
    # on action 1, never logged: q(0, 1) falls back to the overall mean 0.7. DM = 0.7;
    # IPS = 0.5 / 1 * 0.7 = 0.35. One event has no spread: se is undefined (nan).
    one = LoggedFeedback(
        np.array([0.7]), np.array([1.0]), np.array([0]), np.array([[0.5, 0.5]]),
        cells=np.array([0]),
    )  # fmt: skip
    fit = fit_tabular(one)
    np.testing.assert_allclose(fit.q_hat, [[0.7, 0.7]])
    assert fit.extrapolated_mass == pytest.approx(0.5)
    dm, ips = DM().estimate(one), IPS().estimate(one)
    assert (dm.value, ips.value) == pytest.approx((0.7, 0.35))
    assert math.isnan(dm.se) and math.isnan(ips.se) and math.isnan(ips.low)


def test_snips_divides_by_summed_weights_below_one() -> None:
    # w = target / pscore = [0.25 / 0.5, 0] = [0.5, 0]: V = 0.5 * 0.8 / 0.5 = 0.8.
    feedback = LoggedFeedback(
        reward=np.array([0.8, 1.0]),
        pscore=np.array([0.5, 0.5]),
        chosen=np.array([0, 1]),
        target=np.array([[0.25, 0.75], [1.0, 0.0]]),
    )
    assert SNIPS().estimate(feedback).value == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("target", "ess"),
    [
        ([[0.0, 1.0], [0.0, 1.0]], 0.0),  # no weight at all: 0, not 0/0
        ([[0.25, 0.75], [0.25, 0.75]], 2.0),  # w = [0.5, 0.5]: 1^2 / 0.5 = 2
        ([[1.0, 0.0], [0.5, 0.5]], 1.8),  # w = [2, 1]: 3^2 / 5 = 1.8
    ],
)
def test_effective_sample_size_is_squared_weight_sum_over_sum_of_squares(
    target: list[list[float]], ess: float
) -> None:
    feedback = LoggedFeedback(np.ones(2), np.full(2, 0.5), np.array([0, 0]), np.array(target))
    assert Diagnostics.of(feedback).ess == pytest.approx(ess)


def one_weighted_event(n: int, weight: float) -> LoggedFeedback:
    """Event 0 has importance weight `weight` (target 1, pscore 1 / weight); n - 1 have 0."""
    chosen = np.ones(n, dtype=np.int64)
    chosen[0] = 0
    pscore = np.full(n, 0.5)
    pscore[0] = 1.0 / weight
    return LoggedFeedback(np.ones(n), pscore, chosen, np.tile([1.0, 0.0], (n, 1)))


@pytest.mark.parametrize(
    ("n", "weight", "expected"),
    [
        # n = 20: ess = 1 (> 1% of 20); largest weight exactly 100; zero support 19/20 = 95%:
        # every value at its limit, nothing strictly beyond, so no warning.
        (20, 100.0, []),
        # n = 100: ess exactly 1% of n (no warning); zero support 99% (> 95%).
        (100, 100.0, ["the target gives probability 0 to the logged action in 99.0% of events"]),
        (
            20,
            100.5,
            [
                "largest importance weight is 100.5 (> 100): consider clipping (IPS/DR clip) or "
                "shrinkage (DRos)"
            ],
        ),
    ],
)
def test_diagnostics_warn_only_strictly_beyond_the_default_limits(
    n: int, weight: float, expected: list[str]
) -> None:
    warnings = Diagnostics.of(one_weighted_event(n, weight)).warnings()
    assert [w.split(": little logged")[0] for w in warnings] == expected
