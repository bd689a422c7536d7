"""Mergeable sufficient statistics of `replay.estimators`: merged over any split they equal the
whole, and they give `estimate` / `estimate_difference`'s numbers."""

from __future__ import annotations

import numpy as np
import pytest

from replay.estimators import (
    DM,
    DR,
    IPS,
    SNIPS,
    CoMoments,
    Diagnostics,
    DRos,
    LoggedFeedback,
    MeanVar,
    WeightSums,
    fit_tabular,
    ratio_difference,
    ratio_estimate,
    tabular_q,
)

ESTIMATORS = (IPS(), IPS(clip=2.0), SNIPS(), DM(), DR(), DR(clip=2.0), DRos(lambda_=3.0))


def _feedback(seed: int, n: int = 400) -> tuple[LoggedFeedback, LoggedFeedback]:
    """Two target policies on the same n logged events over 3 actions in 4 cells."""
    rng = np.random.default_rng(seed)
    logging = rng.dirichlet(np.ones(3), size=n) * 0.8 + 0.2 / 3
    chosen = np.array([rng.choice(3, p=p) for p in logging])
    reward = rng.normal(np.array([0.1, 0.3, 0.2])[chosen], 1.0)
    cells = rng.integers(0, 4, n)
    first, second = rng.dirichlet(np.ones(3), size=n), np.eye(3)[rng.integers(0, 3, n)]
    pscore = logging[np.arange(n), chosen]
    return (
        LoggedFeedback(reward, pscore, chosen, first, cells=cells),
        LoggedFeedback(reward, pscore, chosen, second, cells=cells),
    )


@pytest.mark.parametrize("cuts", [[], [1], [7, 250, 251], [399]])
def test_co_moments_merged_over_any_split_equal_the_whole(cuts):
    z = np.random.default_rng(1).normal(5.0, 2.0, size=(400, 3))

    parts = [CoMoments.of(p) for p in np.split(z, cuts)] + [CoMoments.empty(3)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)

    centred = z - z.mean(axis=0)
    assert merged.n == 400
    np.testing.assert_allclose(merged.mean, z.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(merged.comoment, centred.T @ centred, rtol=1e-11)
    var = MeanVar.of(z[:100]).merge(MeanVar.of(z[100:])).variance()
    np.testing.assert_allclose(var, z.var(axis=0, ddof=1), rtol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: repr(e))
def test_the_moments_of_event_terms_give_the_estimate_and_its_interval(estimator):
    first, _ = _feedback(2)
    fit = fit_tabular(first) if estimator.uses_reward_model else None
    num, den = estimator.event_terms(first, fit)
    halves = [
        CoMoments.of(np.column_stack([num, den])[s]) for s in (slice(0, 150), slice(150, None))
    ]

    found = ratio_estimate(estimator.name, halves[0].merge(halves[1]), confidence=0.9)

    expected = estimator.estimate(first, confidence=0.9)
    for field in ("value", "se", "low", "high"):
        assert getattr(found, field) == pytest.approx(
            getattr(expected, field), rel=1e-12, abs=1e-15
        )


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: repr(e))
def test_paired_moments_give_the_difference_and_its_paired_interval(estimator):
    first, second = _feedback(3)
    columns = []
    for feedback in (first, second):
        fit = fit_tabular(feedback) if estimator.uses_reward_model else None
        columns += list(estimator.event_terms(feedback, fit))

    found = ratio_difference(estimator.name, CoMoments.of(np.column_stack(columns)))

    expected = estimator.estimate_difference(first, second)
    for field in ("value", "se", "low", "high"):
        assert getattr(found, field) == pytest.approx(
            getattr(expected, field), rel=1e-12, abs=1e-15
        )


def test_ratio_estimates_without_positive_denominator_are_zero_with_zero_spread():
    moments = CoMoments.of(np.column_stack([np.zeros(5), np.zeros(5)]))

    found = ratio_estimate("SNIPS", moments)

    assert (found.value, found.se, found.low, found.high) == (0.0, 0.0, 0.0, 0.0)
    assert np.isnan(ratio_estimate("IPS", CoMoments.of(np.ones((1, 2)))).se)


def test_weight_sums_merged_give_the_diagnostics():
    first, _ = _feedback(4)
    w = first.weights()

    merged = WeightSums.of(w[:10]).merge(WeightSums.of(w[10:])).merge(WeightSums.of(w[:0]))

    found, expected = merged.diagnostics(), Diagnostics.of(first)
    assert (found.n, found.min_weight, found.max_weight) == (400, w.min(), w.max())
    assert found.ess == pytest.approx(expected.ess, rel=1e-12)
    assert found.zero_support_share == expected.zero_support_share


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: repr(e))
def test_linear_terms_rebuild_the_terms_from_the_reward_table(estimator):
    first, _ = _feedback(5)
    table = np.random.default_rng(6).normal(size=(4, 3))
    q_hat = table[first.cells]
    given = LoggedFeedback(first.reward, first.pscore, first.chosen, first.target, q_hat=q_hat)
    num, den = estimator.event_terms(given)

    linear = estimator.linear_terms(first)

    rebuilt = linear.plain.copy()
    if estimator.uses_reward_model:
        rebuilt += (first.target * q_hat).sum(axis=1)
    if linear.correction is not None:
        rebuilt -= linear.correction * q_hat[np.arange(first.n), first.chosen]
    np.testing.assert_allclose(rebuilt, num, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(linear.den, den, rtol=1e-12)


def test_tabular_q_fits_each_leading_row_like_fit_tabular():
    first, _ = _feedback(7)
    counts = np.random.default_rng(8).poisson(1.0, size=(3, first.n)).astype(float)
    flat = first.cells * 3 + first.chosen
    logged = np.stack([np.bincount(flat, c / first.pscore, 12) for c in counts]).reshape(3, 4, 3)
    total = np.stack(
        [np.bincount(flat, c / first.pscore * first.reward, 12) for c in counts]
    ).reshape(3, 4, 3)

    batched = tabular_q(logged, total)

    for b in range(3):
        expected = fit_tabular(first, counts[b]).q_hat
        np.testing.assert_allclose(batched[b][first.cells], expected, rtol=1e-12)
