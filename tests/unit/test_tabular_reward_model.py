"""The tabular reward model DM / DR / DRos fit from cells, paired differences, tuned DRos."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.errors import InvalidFeedback
from replay.estimators import DM, DR, IPS, SNIPS, DRos, LoggedFeedback, fit_tabular


def _confounded(n: int, seed: int) -> tuple[LoggedFeedback, float]:
    """Two cells, two actions; the logging policy picks action 1 mostly for "good" contexts,
    whose reward is higher, so the plain per-cell mean of action 1 is biased upwards."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 2, n)
    good = rng.random(n) < 0.5
    p1 = np.where(good, 0.8, 0.2)
    chosen = (rng.random(n) < p1).astype(np.int64)
    pscore = np.where(chosen == 1, p1, 1 - p1)
    mean = np.where(chosen == 1, np.where(good, 0.8, 0.0), 0.3) + 0.1 * cells
    reward = rng.normal(mean, 0.1)
    target = np.tile([0.0, 1.0], (n, 1))  # always action 1
    truth = 0.5 * 0.8 + 0.5 * 0.0 + 0.05  # mean over good/bad contexts and cells
    return LoggedFeedback(reward, pscore, chosen, target, cells=cells), truth


def test_propensity_weighted_cell_means_are_not_confounded_by_the_logging_policy() -> None:
    feedback, truth = _confounded(200_000, 1)
    plain = feedback.reward[feedback.chosen == 1].mean()
    assert plain > truth + 0.2  # the plain mean would be badly confounded
    assert DM().estimate(feedback).value == pytest.approx(truth, abs=0.01)


def test_dm_and_dr_agree_exactly_for_a_policy_that_depends_only_on_the_cell() -> None:
    feedback, _ = _confounded(5_000, 2)
    assert DM().estimate(feedback).value == pytest.approx(DR().estimate(feedback).value, abs=1e-12)


def test_model_error_terms_sum_to_zero_so_point_estimates_are_plain_dm() -> None:
    feedback, _ = _confounded(5_000, 3)
    fit = fit_tabular(feedback)
    for correction in (np.zeros(feedback.n), feedback.weights()):
        assert abs(fit.model_error(feedback, correction).sum()) < 1e-8
    direct = (feedback.target * fit.q_hat).sum(axis=1).mean()
    assert DM().estimate(feedback).value == pytest.approx(direct, abs=1e-12)


def test_dm_interval_includes_the_reward_model_error() -> None:
    feedback, _ = _confounded(5_000, 4)
    fitted_se = DM().estimate(feedback).se
    fixed = LoggedFeedback(
        feedback.reward, feedback.pscore, feedback.chosen, feedback.target,
        q_hat=fit_tabular(feedback).q_hat,
    )  # fmt: skip
    fixed_se = DM().estimate(fixed).se  # contexts only: near 0 for a cell-level policy
    assert fitted_se > 5 * fixed_se
    boot = DM().bootstrap_interval(feedback, seed=0, n_boot=200)
    assert boot.se == pytest.approx(fitted_se, rel=0.3)


def test_paired_difference_is_the_difference_of_values_with_a_narrower_interval() -> None:
    rng = np.random.default_rng(5)
    n = 4_000
    chosen = rng.integers(0, 3, n)
    reward = rng.normal(0.5, 1.0, n) + 0.2 * chosen
    pscore = np.full(n, 1 / 3)
    a = np.tile([0.1, 0.1, 0.8], (n, 1))
    b = np.tile([0.1, 0.2, 0.7], (n, 1))
    fa, fb = (LoggedFeedback(reward, pscore, chosen, t) for t in (a, b))
    for est in (IPS(), SNIPS()):
        diff = est.estimate_difference(fa, fb)
        assert diff.value == pytest.approx(est.estimate(fa).value - est.estimate(fb).value)
        assert diff.se < 0.5 * est.estimate(fa).se  # shared noise cancels
        boot = est.bootstrap_interval(fa, seed=1, n_boot=300, minus=fb)
        assert boot.value == pytest.approx(diff.value)
        assert boot.se == pytest.approx(diff.se, rel=0.3)


def test_a_difference_of_different_logs_is_refused() -> None:
    feedback, _ = _confounded(100, 6)
    other, _ = _confounded(100, 7)
    with pytest.raises(InvalidFeedback, match="same logged events"):
        IPS().estimate_difference(feedback, other)


def test_tuned_dros_moves_to_dr_as_data_grows_and_to_dm_with_little_data() -> None:
    big, _ = _confounded(100_000, 8)
    rng = np.random.default_rng(9)
    # A personalized-looking target that the cell model cannot fit, so DM and DR differ.
    t1 = (rng.random(big.n) < 0.5).astype(float)
    target = np.stack([1 - t1, t1], axis=1)
    fb = LoggedFeedback(big.reward, big.pscore, big.chosen, target, cells=big.cells)
    dr, dm, dros = (e.estimate(fb).value for e in (DR(), DM(), DRos()))
    assert abs(dros - dr) < 0.25 * abs(dm - dr) + 1e-3
    with pytest.raises(ValueError, match=r"DRos\.lambda_"):
        DRos(lambda_=-1.0)
