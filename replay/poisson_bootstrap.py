"""Poisson bootstrap over chunks: resample weights that no chunking changes, sums that merge.

Each event gets, in each resample b, a Poisson(1) weight W_b drawn from a counter-based
generator keyed by (seed, b, the event's key): the weights, hence the interval, are the same
however the log is split into chunks or partitions, and each resample's weighted sums merge by
addition (Hanley & MacGibbon, 2006; Chamandy, Muralidharan, Najmi & Naidu, 2012, "Estimating
uncertainty for massive data streams"). As in the multinomial bootstrap of
`replay.estimators`, the tabular reward model is refitted on every resample: a resample's value
is a ratio of weighted sums, and the reward-model part of DM, DR and DRos is linear in the
model's table q_b, so (see `replay.estimators.Linear`)

    sum_i W_i num_i = sum W plain + sum_(c,a) q_b(c, a) (mass_b(c, a) - correction_b(c, a))

with ``mass_b`` the weighted target mass and ``correction_b`` the weighted corrections by
(trigger, logged action); the model-error term sums to exactly 0 under the refit. Every sum is
kept per resample; values follow only when all chunks are in (`resampled_values`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.estimators import tabular_q

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# P(Poisson(1) <= k) for k = 0..19; the rest (< 1e-19) counts as 20.
POISSON1_CDF = np.cumsum([np.exp(-1.0) / float(np.prod(np.arange(1, k + 1))) for k in range(20)])
# Resample rows of weights held at once: bounds a chunk's weight matrix (8 bytes each).
WEIGHT_ELEMENTS = 1 << 22


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood, 2014): a bijection of uint64 that mixes
    every input bit into every output bit (arrays wrap modulo 2^64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def poisson_weights(keys: np.ndarray, seed: int, resamples: np.ndarray) -> np.ndarray:
    """(len(resamples), n) float64 Poisson(1) weight of each event (key) in each resample:
    a pure function of (seed, resample, key)."""
    keys = np.asarray(keys, dtype=np.uint64)
    stream = _splitmix64(
        _splitmix64(np.full(len(resamples), seed, dtype=np.uint64))
        + np.asarray(resamples, dtype=np.uint64)
    )
    bits = _splitmix64(_splitmix64(keys[None, :] ^ stream[:, None]) + stream[:, None])
    uniform = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.searchsorted(POISSON1_CDF, uniform, side="right").astype(np.float64)


def resample_blocks(n_boot: int, n_events: int) -> list[np.ndarray]:
    """The resamples in blocks small enough that one block's weights for ``n_events`` events
    stay within `WEIGHT_ELEMENTS`."""
    size = max(1, WEIGHT_ELEMENTS // max(n_events, 1))
    return [np.arange(s, min(s + size, n_boot)) for s in range(0, n_boot, size)]


def grouped_sums(
    weights: np.ndarray, values: np.ndarray, groups: np.ndarray, n_groups: int
) -> np.ndarray:
    """(B, n_groups, m) ``sum_{i in g} weights[b, i] values[i, :]`` for each group g of the
    events (one matrix product per group present)."""
    out = np.zeros((weights.shape[0], n_groups, values.shape[1]))
    if groups.shape[0] == 0:
        return out
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    ends = np.r_[starts[1:], sorted_groups.shape[0]]
    w, v = weights[:, order], values[order]
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        out[:, sorted_groups[lo], :] = w[:, lo:hi] @ v[lo:hi]
    return out


@dataclass(frozen=True)
class ResampledModel:
    """Per-resample sums of the tabular model over one slice of the log: ``sum W / p`` and
    ``sum W r / p`` by (cell, logged action), shape (B, cells, K)."""

    logged: np.ndarray
    total: np.ndarray

    def merge(self, other: ResampledModel) -> ResampledModel:
        return ResampledModel(self.logged + other.logged, self.total + other.total)

    def placed(self, rows: np.ndarray, n_boot: int) -> ResampledModel:
        """These sums, of resamples ``rows``, within zero sums of all ``n_boot`` resamples."""
        return ResampledModel(_placed(self.logged, rows, n_boot), _placed(self.total, rows, n_boot))

    def q(self) -> np.ndarray:
        """(B, cells, K) each resample's refitted table."""
        return tabular_q(self.logged, self.total)


@dataclass(frozen=True)
class ResampledTerms:
    """Per-resample sums of one estimator's terms over one slice: ``plain`` and ``den`` (B,),
    and for reward-model estimators ``mass`` and ``correction`` (B, cells, K)."""

    plain: np.ndarray
    den: np.ndarray
    mass: np.ndarray | None = None
    correction: np.ndarray | None = None

    def merge(self, other: ResampledTerms) -> ResampledTerms:
        def add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else a + b

        return ResampledTerms(
            self.plain + other.plain,
            self.den + other.den,
            add(self.mass, other.mass),
            add(self.correction, other.correction),
        )

    def placed(self, rows: np.ndarray, n_boot: int) -> ResampledTerms:
        """These sums, of resamples ``rows``, within zero sums of all ``n_boot`` resamples."""
        return ResampledTerms(
            _placed(self.plain, rows, n_boot),
            _placed(self.den, rows, n_boot),
            None if self.mass is None else _placed(self.mass, rows, n_boot),
            None if self.correction is None else _placed(self.correction, rows, n_boot),
        )


def _placed(values: np.ndarray, rows: np.ndarray, n_boot: int) -> np.ndarray:
    out = np.zeros((n_boot, *values.shape[1:]))
    out[rows] = values
    return out


def resampled_values(terms: ResampledTerms, model: ResampledModel | None) -> np.ndarray:
    """(B,) each resample's estimate: the weighted ratio with the model refitted (0 where the
    weighted denominator is 0, as `replay.estimators` does)."""
    num = terms.plain.copy()
    if terms.mass is not None:
        if model is None:
            raise ValueError("a reward-model estimator's resamples need the resampled model")
        q = model.q()
        num += (q * terms.mass).sum(axis=(1, 2))
        if terms.correction is not None:
            num -= (q * terms.correction).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(terms.den > 0, num / np.where(terms.den > 0, terms.den, 1.0), 0.0)
