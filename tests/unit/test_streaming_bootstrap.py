"""The Poisson bootstrap over chunks (`replay.poisson_bootstrap`): Poisson(1) weights that depend
only on (seed, resample, event), sums that refit the reward model, intervals that no chunking
changes."""

from __future__ import annotations

import numpy as np
import pytest
from replay_truth import as_logged_data, default_config
from streaming_fixtures import stream

from bandit.simulation.logged import simulate_logged
from bandit.simulation.world import World
from replay.chunked import event_keys
from replay.estimators import DM, DR, IPS, SNIPS, DRos, LoggedFeedback
from replay.poisson_bootstrap import (
    ResampledModel,
    ResampledTerms,
    grouped_sums,
    poisson_weights,
    resample_blocks,
    resampled_values,
)

KEYS = event_keys(np.array([f"e{i}" for i in range(50_000)], dtype=object))


def test_weights_are_poisson_with_mean_and_variance_one():
    w = poisson_weights(KEYS, seed=3, resamples=np.arange(4)).ravel()

    # 200,000 draws: the standard error of the mean is 0.0022, of P(0) 0.0011.
    assert w.mean() == pytest.approx(1.0, abs=0.01)
    assert w.var() == pytest.approx(1.0, abs=0.02)
    assert (w == 0).mean() == pytest.approx(np.exp(-1.0), abs=0.005)
    assert set(np.unique(w)) <= set(range(21))


def test_weights_depend_only_on_seed_resample_and_key():
    whole = poisson_weights(KEYS, seed=3, resamples=np.arange(10))

    part = poisson_weights(KEYS[1000:1500], seed=3, resamples=np.array([4, 7]))

    np.testing.assert_array_equal(part, whole[[4, 7], 1000:1500])
    assert not np.array_equal(poisson_weights(KEYS, seed=4, resamples=np.arange(10)), whole)
    correlations = np.corrcoef(whole)[np.triu_indices(10, k=1)]
    assert np.abs(correlations).max() < 0.03  # independent resamples (0.0045 per pair)


def test_resample_blocks_cover_every_resample_once_within_the_memory_bound():
    blocks = resample_blocks(200, 1 << 20)

    assert np.concatenate(blocks).tolist() == list(range(200))
    assert max(len(b) for b in blocks) * (1 << 20) <= 1 << 22


@pytest.mark.parametrize("estimator", [IPS(), SNIPS(), DM(), DR(clip=3.0), DRos(lambda_=2.0)])
def test_unit_weights_give_back_the_estimate_with_the_model_refitted(estimator):
    rng = np.random.default_rng(9)
    n, k, cells_n = 300, 3, 2
    logging = rng.dirichlet(np.ones(k), size=n) * 0.7 + 0.1
    chosen = np.array([rng.choice(k, p=p) for p in logging])
    feedback = LoggedFeedback(
        rng.normal(size=n), logging[np.arange(n), chosen], chosen,
        rng.dirichlet(np.ones(k), size=n), cells=rng.integers(0, cells_n, n),
    )  # fmt: skip
    groups = feedback.cells * k + feedback.chosen
    ones = np.ones((1, n))
    inverse = 1.0 / feedback.pscore
    model_sums = grouped_sums(
        ones, np.column_stack([inverse, inverse * feedback.reward]), groups, 6
    )
    model = ResampledModel(model_sums[..., 0].reshape(1, 2, 3), model_sums[..., 1].reshape(1, 2, 3))
    linear = estimator.linear_terms(feedback)
    correction = np.zeros(n) if linear.correction is None else linear.correction
    columns = np.column_stack([feedback.target, linear.plain, linear.den, correction])
    sums = grouped_sums(ones, columns, groups, 6)
    mass = sums.reshape(1, 2, 3, -1)[..., :k].sum(axis=2)
    terms = ResampledTerms(
        sums[..., k].sum(axis=1), sums[..., k + 1].sum(axis=1),
        mass if estimator.uses_reward_model else None,
        sums.reshape(1, 2, 3, -1)[..., k + 2] if linear.correction is not None else None,
    )  # fmt: skip

    (value,) = resampled_values(terms, model)

    assert value == pytest.approx(estimator.estimate(feedback).value, rel=1e-12)


@pytest.fixture(scope="module")
def logged():
    log = simulate_logged(World(1007, n_learners=300), default_config(), 3000, 2, logging="skewed")
    return as_logged_data(log)


def test_poisson_intervals_do_not_depend_on_the_chunks(logged):
    options = {"interval": "bootstrap", "n_boot": 60, "seed": 5, "by_trigger": False}

    small, whole = (
        stream(logged, rows_per_chunk=211, **options),
        stream(logged, rows_per_chunk=3000, **options),
    )

    for a, b in zip(
        small.estimates + small.contrasts, whole.estimates + whole.contrasts, strict=True
    ):
        assert a.method == b.method == "poisson-bootstrap"
        assert (a.low, a.high, a.se) == pytest.approx((b.low, b.high, b.se), rel=1e-12, abs=1e-14)
    assert stream(logged, **{**options, "seed": 6}).estimates != small.estimates


def test_poisson_standard_errors_agree_with_the_analytic_ones(logged):
    analytic = stream(logged, by_trigger=False, effects=False)
    poisson = stream(logged, by_trigger=False, effects=False, interval="bootstrap", n_boot=300)

    ratios = [
        p.se / a.se for a, p in zip(analytic.estimates, poisson.estimates, strict=True) if a.se > 0
    ]
    # 300 resamples: a bootstrap se is within ~8% of its limit; the two estimate the same spread.
    assert min(ratios) > 0.8 and max(ratios) < 1.25, ratios
    assert [p.value for p in poisson.estimates] == [a.value for a in analytic.estimates]
