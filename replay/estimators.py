"""Off-policy estimators of a target policy's value from logged bandit feedback.

Every estimator writes its value as a ratio of sums of per-event terms,
``V = sum_i num_i / sum_i den_i`` (``den_i = 1`` unless the estimator self-normalises), so
one private per-sample function serves the point estimate, the analytic normal interval
(through the influence values ``(num_i - V den_i) / mean(den)``) and the event bootstrap
(a resample's estimate is the same ratio over resampled terms).

Arrays (n events, K actions; ragged action sets padded and flagged by ``mask``):

- ``reward`` (n,): observed reward of the logged action.
- ``pscore`` (n,): probability with which the logging policy chose the logged action.
- ``chosen`` (n,): integer index of the logged action.
- ``target`` (n, K): target-policy probabilities; each row sums to 1 over unmasked actions.
- ``q_hat`` (n, K), optional: reward-model predictions, needed by DM, DR and DRos.
- ``mask`` (n, K) bool, optional: True where the action was available to the event.
- ``cells`` (n,) int, optional: the stratum of each event (e.g. its trigger). When ``q_hat``
  is not given but ``cells`` is, DM, DR and DRos fit the tabular reward model
  ``q_hat(cell, a) = mean logged reward of a in the cell`` themselves, and refit it inside
  every bootstrap resample, so the interval carries the model's estimation error.

Streaming (`replay.streaming_eval`) evaluates the same estimators over chunks of a log too big
for memory: `CoMoments`, `MeanVar` and `WeightSums` are sufficient statistics of per-event
terms that merge associatively across chunks, and `ratio_estimate` / `ratio_difference` give
the same analytic intervals from them as `estimate` / `estimate_difference` from the arrays.

References are given on each estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar

import numpy as np

from bandit.errors import InvalidFeedback

ROW_SUM_TOLERANCE = 1e-6
# Elements of one bootstrap chunk (resamples x events); bounds memory at about 3 x 8 bytes
# per element (index array plus gathered terms), e.g. ~100 MB, for any n.
_BOOT_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class LoggedFeedback:
    """Validated logged bandit feedback (see the module docstring for shapes).

    Construction copies the arrays to canonical dtypes and zeroes ``target`` and ``q_hat``
    at masked actions, so estimators never see padding.
    """

    reward: np.ndarray
    pscore: np.ndarray
    chosen: np.ndarray
    target: np.ndarray
    q_hat: np.ndarray | None = None
    mask: np.ndarray | None = None
    cells: np.ndarray | None = None

    def __post_init__(self) -> None:
        reward = _as_float("reward", self.reward, ndim=1)
        n = reward.shape[0]
        if n == 0:
            raise InvalidFeedback("reward is empty; need at least one logged event")
        pscore = _as_float("pscore", self.pscore, ndim=1, n=n)
        target = _as_float("target", self.target, ndim=2, n=n)
        k = target.shape[1]
        chosen = np.asarray(self.chosen)
        if chosen.ndim != 1 or chosen.shape[0] != n:
            raise InvalidFeedback(f"chosen has shape {chosen.shape}; expected ({n},) like reward")
        if not np.issubdtype(chosen.dtype, np.integer):
            raise InvalidFeedback(
                f"chosen has dtype {chosen.dtype}; expected integer action indices"
            )
        chosen = chosen.astype(np.int64)
        mask = None
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.shape != target.shape:
                raise InvalidFeedback(
                    f"mask has shape {mask.shape}; expected {target.shape} like target"
                )
            if mask.dtype != np.bool_:
                raise InvalidFeedback(f"mask has dtype {mask.dtype}; expected bool")
        q_hat = None
        if self.q_hat is not None:
            q_hat = _as_float("q_hat", self.q_hat, ndim=2, n=n)
            if q_hat.shape != target.shape:
                raise InvalidFeedback(
                    f"q_hat has shape {q_hat.shape}; expected {target.shape} like target"
                )

        cells = None
        if self.cells is not None:
            cells = np.asarray(self.cells)
            if cells.shape != (n,) or not np.issubdtype(cells.dtype, np.integer):
                raise InvalidFeedback(
                    f"cells has shape {cells.shape} and dtype {cells.dtype}; "
                    f"expected ({n},) integers like reward"
                )
            cells = cells.astype(np.int64)
            _first_bad("cells", cells < 0, cells, "is negative")
        _first_bad("pscore", ~((pscore > 0) & (pscore <= 1)), pscore, "is outside (0, 1]")
        _first_bad("chosen", (chosen < 0) | (chosen >= k), chosen, f"is outside [0, {k})")
        if mask is not None:
            masked_out = ~mask[np.arange(n), chosen]
            _first_bad("chosen", masked_out, chosen, "is a masked (unavailable) action")
            target = np.where(mask, target, 0.0)
            if q_hat is not None:
                q_hat = np.where(mask, q_hat, 0.0)
        bad_prob = ((target < 0) | (target > 1)).any(axis=1)
        _first_bad("target", bad_prob, None, "has a probability outside [0, 1]")
        row_sum = target.sum(axis=1)
        bad_sum = np.abs(row_sum - 1.0) > ROW_SUM_TOLERANCE
        _first_bad(
            "target",
            bad_sum,
            row_sum,
            f"is the sum over unmasked actions, not 1 (±{ROW_SUM_TOLERANCE:g})",
        )

        for name, value in (
            ("reward", reward),
            ("pscore", pscore),
            ("chosen", chosen),
            ("target", target),
            ("q_hat", q_hat),
            ("mask", mask),
            ("cells", cells),
        ):
            if value is not None:
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    @classmethod
    def trusted(
        cls,
        reward: np.ndarray,
        pscore: np.ndarray,
        chosen: np.ndarray,
        target: np.ndarray,
        mask: np.ndarray,
        cells: np.ndarray,
    ) -> LoggedFeedback:
        """Feedback from arrays already validated (a chunk of a checked log, a target that
        `replay.candidates.check_probabilities` passed: zero where masked): no checks, no
        copies. What streaming builds once per slice and chunk, where the checks would cost
        as much as the estimates."""
        feedback = object.__new__(cls)
        for name, value in (
            ("reward", reward), ("pscore", pscore), ("chosen", chosen), ("target", target),
            ("q_hat", None), ("mask", mask), ("cells", cells),
        ):  # fmt: skip
            object.__setattr__(feedback, name, value)
        return feedback

    @property
    def n(self) -> int:
        """Number of logged events."""
        return int(self.reward.shape[0])

    def weights(self) -> np.ndarray:
        """Importance weights ``w_i = pi(a_i | x_i) / mu(a_i | x_i)``, shape (n,)."""
        return self.target[np.arange(self.n), self.chosen] / self.pscore

    @property
    def k(self) -> int:
        """Number of actions (columns)."""
        return int(self.target.shape[1])

    def fits_reward_model(self) -> bool:
        """True when DM / DR / DRos fit the tabular model from ``cells`` (no ``q_hat`` given)."""
        return self.q_hat is None and self.cells is not None

    def require_q_hat(self, who: str) -> np.ndarray:
        """Return ``q_hat`` or fail naming the estimator that needs it."""
        if self.q_hat is None:
            raise InvalidFeedback(
                f"{who} needs q_hat (n, K) reward-model predictions or cells for the tabular "
                "model; got neither"
            )
        return self.q_hat


def _as_float(name: str, value: object, *, ndim: int, n: int | None = None) -> np.ndarray:
    array = np.array(value, dtype=np.float64, copy=True)
    if array.ndim != ndim or (n is not None and array.shape[0] != n):
        expected = "(n,)" if ndim == 1 else "(n, K)"
        detail = f" with n = {n} from reward" if n is not None else ""
        raise InvalidFeedback(f"{name} has shape {array.shape}; expected {expected}{detail}")
    finite = np.isfinite(array) if ndim == 1 else np.isfinite(array).all(axis=1)
    _first_bad(name, ~finite, None, "is not finite")
    return array


def _first_bad(
    name: str, bad: np.ndarray | np.bool_, values: np.ndarray | None, problem: str
) -> None:
    if bad.any():
        row = int(np.argmax(bad))
        shown = f" = {values[row].item()!r}" if values is not None else ""
        raise InvalidFeedback(f"{name}[{row}]{shown} {problem} (first bad row of {int(bad.sum())})")


@dataclass(frozen=True)
class Estimate:
    """A policy-value estimate with its interval at ``confidence``; ``method`` names the interval."""

    estimator: str
    value: float
    se: float
    low: float
    high: float
    confidence: float
    method: str


@dataclass(frozen=True)
class Linear:
    """An estimator's per-event terms as linear functions of the reward model's table q:
    ``num_i = plain_i + sum_a pi(a|x_i) q(c_i, a) - correction_i q(c_i, a_i)`` (the q part only
    for DM, DR and DRos; DM has no correction), plus the model-error term, which sums to 0 when
    q is fitted on the same weighted events. What `replay.poisson_bootstrap` refits per resample."""

    plain: np.ndarray  # (n,)
    den: np.ndarray  # (n,) ones unless self-normalised
    correction: np.ndarray | None = None  # (n,)


@dataclass(frozen=True)
class _Terms:
    """Per-event numerator (n,) and, for self-normalised estimators, denominator (n,) terms."""

    num: np.ndarray
    den: np.ndarray | None = None


class _Estimator:
    """Shared estimate / bootstrap machinery; subclasses write only `_terms`."""

    name: ClassVar[str] = "estimator"
    uses_reward_model: ClassVar[bool] = False

    def _terms(self, feedback: LoggedFeedback, fit: TabularFit | None) -> _Terms:
        raise NotImplementedError

    def event_terms(
        self, feedback: LoggedFeedback, fit: TabularFit | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-event numerator and denominator (ones unless self-normalised), (n,) each, with
        ``fit`` as the reward model of DM / DR / DRos (their ``q_hat`` otherwise): the terms
        whose `CoMoments` `ratio_estimate` turns into the estimate, one chunk at a time."""
        terms = self._terms(feedback, fit if self.uses_reward_model else None)
        den = np.ones(feedback.n) if terms.den is None else terms.den
        return terms.num, den

    def linear_terms(self, feedback: LoggedFeedback) -> Linear:
        """The terms as `Linear` in the reward model (see there)."""
        raise NotImplementedError

    def _per_sample(self, feedback: LoggedFeedback) -> _Terms:
        fit = None
        if self.uses_reward_model and feedback.fits_reward_model():
            fit = fit_tabular(feedback)
        return self._terms(feedback, fit)

    def estimate(self, feedback: LoggedFeedback, *, confidence: float = 0.95) -> Estimate:
        """Point estimate with an analytic normal interval from the per-event influence values.

        ``se = std(phi) / sqrt(n)`` with ``phi_i = (num_i - V den_i) / mean(den)`` (the plain
        sample standard error when ``den = 1``; the delta method when self-normalised).
        """
        value, influence = self._value_and_influence(feedback)
        return _normal_estimate(self.name, value, influence, confidence)

    def estimate_difference(
        self, first: LoggedFeedback, second: LoggedFeedback, *, confidence: float = 0.95
    ) -> Estimate:
        """``V(first) - V(second)`` on the same logged events (two target policies), with the
        paired analytic interval: influence values subtract, so shared noise cancels."""
        _check_paired(first, second)
        v1, phi1 = self._value_and_influence(first)
        v2, phi2 = self._value_and_influence(second)
        return _normal_estimate(self.name, v1 - v2, phi1 - phi2, confidence)

    def _value_and_influence(self, feedback: LoggedFeedback) -> tuple[float, np.ndarray]:
        terms = self._per_sample(feedback)
        value = _ratio(terms.num.sum(), _den_sum(terms, feedback.n))
        den = np.ones(feedback.n) if terms.den is None else terms.den
        influence = (
            (terms.num - value * den) / den.mean() if den.mean() > 0 else np.zeros(feedback.n)
        )
        return value, influence

    def bootstrap_interval(
        self,
        feedback: LoggedFeedback,
        *,
        seed: int | np.random.Generator,
        n_boot: int = 200,
        confidence: float = 0.95,
        minus: LoggedFeedback | None = None,
    ) -> Estimate:
        """Percentile interval from ``n_boot`` resamples of whole events (with replacement).

        A resample's estimate is the ratio of resampled per-event sums; resamples are drawn
        in chunks of at most ``_BOOT_CHUNK_ELEMENTS`` indices so memory stays bounded for
        large n; the draws, hence the result, do not depend on the chunk size. ``se`` is the
        standard deviation of the bootstrap estimates. With ``cells`` and no ``q_hat`` the
        tabular reward model is refitted on every resample. With ``minus`` the interval is of
        ``V(feedback) - V(minus)``, both computed on the same resamples.
        """
        _z(confidence)
        if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
            raise ValueError(f"n_boot must be an integer >= 2; got {n_boot!r}")
        parts = [feedback] if minus is None else [feedback, minus]
        if minus is not None:
            _check_paired(feedback, minus)
        rng = np.random.default_rng(seed)
        terms = [self._per_sample(f) for f in parts]
        values = [_ratio(t.num.sum(), _den_sum(t, feedback.n)) for t in terms]
        if self.uses_reward_model and feedback.fits_reward_model():
            boot = self._refit_bootstrap(parts, rng, n_boot)
        else:
            boot = _resampled_ratios(terms, feedback.n, rng, n_boot)
        value = values[0] - values[1] if minus is not None else values[0]
        return _percentile_estimate(self.name, value, boot, confidence)

    def _refit_bootstrap(
        self, parts: list[LoggedFeedback], rng: np.random.Generator, n_boot: int
    ) -> np.ndarray:
        """Bootstrap estimates with the tabular reward model refitted on every resample
        (as event multiplicities), so DM's interval includes the model's estimation error."""
        n = parts[0].n
        boot = np.empty(n_boot)
        for b in range(n_boot):
            counts = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
            values = []
            for feedback in parts:
                terms = self._terms(feedback, fit_tabular(feedback, counts))
                den = counts.sum() if terms.den is None else float(counts @ terms.den)
                values.append(float(counts @ terms.num) / den if den > 0 else 0.0)
            boot[b] = values[0] - values[1] if len(values) == 2 else values[0]
        return boot


def _resampled_ratios(
    terms: list[_Terms], n: int, rng: np.random.Generator, n_boot: int
) -> np.ndarray:
    """Each resample's ratio of summed terms (first minus second when two are given)."""
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // (n * len(terms)))
    boot = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        ratios = []
        for t in terms:
            num = t.num[idx].sum(axis=1)
            den = np.full(stop - start, float(n)) if t.den is None else t.den[idx].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0))
        boot[start:stop] = ratios[0] - ratios[1] if len(ratios) == 2 else ratios[0]
    return boot


def _check_paired(first: LoggedFeedback, second: LoggedFeedback) -> None:
    same = (
        first.n == second.n
        and np.array_equal(first.chosen, second.chosen)
        and np.array_equal(first.reward, second.reward)
        and np.array_equal(first.pscore, second.pscore)
    )
    if not same:
        raise InvalidFeedback(
            "a difference needs both policies evaluated on the same logged events "
            "(same chosen, reward and pscore arrays)"
        )


def _normal_estimate(name: str, value: float, influence: np.ndarray, confidence: float) -> Estimate:
    n = influence.shape[0]
    se = float(influence.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return _normal_interval(name, value, se, confidence)


def _normal_interval(name: str, value: float, se: float, confidence: float) -> Estimate:
    z = _z(confidence)
    return Estimate(name, value, se, value - z * se, value + z * se, confidence, "normal")


# ---- mergeable sufficient statistics (streaming over chunks) ---------------------------------


@dataclass(frozen=True)
class CoMoments:
    """Count, column means and centred co-moment matrix ``sum_i (z_i - mean)(z_i - mean)^T``
    of per-event columns z (n, m); `merge` is Chan, Golub & LeVeque's (1979) pairwise update,
    associative and numerically stable, so chunks can be summarised apart and combined."""

    n: int
    mean: np.ndarray  # (m,)
    comoment: np.ndarray  # (m, m)

    @classmethod
    def of(cls, columns: np.ndarray) -> CoMoments:
        """The statistics of the rows of ``columns`` (n, m)."""
        z = np.asarray(columns, dtype=np.float64)
        if z.shape[0] == 0:
            return cls.empty(z.shape[1])
        mean = z.mean(axis=0)
        centred = z - mean
        return cls(int(z.shape[0]), mean, centred.T @ centred)

    @classmethod
    def empty(cls, m: int) -> CoMoments:
        return cls(0, np.zeros(m), np.zeros((m, m)))

    def merge(self, other: CoMoments) -> CoMoments:
        """The statistics of both sets of events together."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        comoment = self.comoment + other.comoment + np.outer(delta, delta) * (self.n * other.n / n)
        return CoMoments(n, mean, comoment)


def _ratio_value_and_weights(mean_num: float, mean_den: float) -> tuple[float, np.ndarray]:
    """``V = mean(num) / mean(den)`` (0 when ``mean(den) <= 0``, as `_ratio`) and the weights
    of (num, den) in the influence value ``(num - V den) / mean(den)`` (zero likewise)."""
    if mean_den > 0:
        value = float(mean_num / mean_den)
        return value, np.array([1.0 / mean_den, -value / mean_den])
    return 0.0, np.zeros(2)


def _influence_se(moments: CoMoments, weights: np.ndarray) -> float:
    """``std(phi, ddof=1) / sqrt(n)`` for ``phi = z @ weights`` from the co-moments of z."""
    if moments.n < 2:
        return float("nan")
    spread = max(float(weights @ moments.comoment @ weights), 0.0)
    return float(np.sqrt(spread / (moments.n - 1)) / np.sqrt(moments.n))


def ratio_estimate(name: str, moments: CoMoments, *, confidence: float = 0.95) -> Estimate:
    """`_Estimator.estimate` from the `CoMoments` of its (num, den) `event_terms`."""
    value, weights = _ratio_value_and_weights(moments.mean[0], moments.mean[1])
    return _normal_interval(name, value, _influence_se(moments, weights), confidence)


def ratio_difference(name: str, moments: CoMoments, *, confidence: float = 0.95) -> Estimate:
    """`_Estimator.estimate_difference` from the `CoMoments` of (num1, den1, num2, den2), the
    `event_terms` of two target policies on the same events (the paired interval)."""
    v1, w1 = _ratio_value_and_weights(moments.mean[0], moments.mean[1])
    v2, w2 = _ratio_value_and_weights(moments.mean[2], moments.mean[3])
    se = _influence_se(moments, np.concatenate([w1, -w2]))
    return _normal_interval(name, v1 - v2, se, confidence)


@dataclass(frozen=True)
class MeanVar:
    """Count, means and centred sums of squares of m columns (the diagonal of `CoMoments`,
    for when only variances are needed), merged the same way."""

    n: int
    mean: np.ndarray  # (m,)
    m2: np.ndarray  # (m,)

    @classmethod
    def of(cls, columns: np.ndarray) -> MeanVar:
        z = np.asarray(columns, dtype=np.float64)
        if z.shape[0] == 0:
            return cls(0, np.zeros(z.shape[1]), np.zeros(z.shape[1]))
        mean = z.mean(axis=0)
        return cls(int(z.shape[0]), mean, ((z - mean) ** 2).sum(axis=0))

    def merge(self, other: MeanVar) -> MeanVar:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return MeanVar(
            n,
            self.mean + delta * (other.n / n),
            self.m2 + other.m2 + delta**2 * (self.n * other.n / n),
        )

    def variance(self) -> np.ndarray:
        """Sample variances (ddof=1); 0 for fewer than two events (as DRos's tuning takes it)."""
        return self.m2 / (self.n - 1) if self.n > 1 else np.zeros_like(self.m2)


@dataclass(frozen=True)
class WeightSums:
    """Mergeable sums of importance weights from which `Diagnostics` follow."""

    n: int
    total: float
    squares: float
    low: float
    high: float
    zeros: int

    @classmethod
    def of(cls, w: np.ndarray) -> WeightSums:
        if w.shape[0] == 0:
            return cls(0, 0.0, 0.0, float("inf"), float("-inf"), 0)
        return cls(
            int(w.shape[0]), float(w.sum()), float((w**2).sum()), float(w.min()),
            float(w.max()), int((w == 0).sum()),
        )  # fmt: skip

    def merge(self, other: WeightSums) -> WeightSums:
        return WeightSums(
            self.n + other.n, self.total + other.total, self.squares + other.squares,
            min(self.low, other.low), max(self.high, other.high), self.zeros + other.zeros,
        )  # fmt: skip

    def diagnostics(self) -> Diagnostics:
        """`Diagnostics.of` for the events summed."""
        ess = self.total**2 / self.squares if self.squares > 0 else 0.0
        return Diagnostics(self.n, ess, self.low, self.high, self.zeros / self.n if self.n else 0.0)


def _percentile_estimate(
    name: str, value: float, boot: np.ndarray, confidence: float, method: str = "bootstrap"
) -> Estimate:
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Estimate(
        name, value, float(boot.std(ddof=1)), float(low), float(high), confidence, method
    )


def percentile_interval(
    name: str, value: float, boot: np.ndarray, *, confidence: float = 0.95, method: str
) -> Estimate:
    """The percentile interval of resampled estimates ``boot`` around the point ``value``
    (``se``: their standard deviation), as `_Estimator.bootstrap_interval` gives it."""
    _z(confidence)
    return _percentile_estimate(name, value, boot, confidence, method)


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _den_sum(terms: _Terms, n: int) -> float:
    return float(n) if terms.den is None else float(terms.den.sum())


def _ratio(num: float, den: float) -> float:
    # No event with positive weight: the self-normalised estimate is undefined; report 0.
    return float(num / den) if den > 0 else 0.0


def _check_positive(owner: str, name: str, value: float | None, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if value is None or isinstance(value, bool) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a finite number > 0; got {value!r}")


@dataclass(frozen=True)
class TabularFit:
    """The tabular reward model fitted on (possibly resampled) events.

    ``q_hat[i, a]`` is the propensity-weighted mean logged reward of ``a`` in event i's cell,
    ``sum r_j / mu_j / sum 1 / mu_j`` over the cell's events that logged ``a`` (the plain mean
    would be confounded when the logging policy favours ``a`` for some contexts of the cell);
    it falls back to ``a``'s weighted mean over all cells, then the overall one, where the cell
    never logged ``a``. ``extrapolated_mass`` is the share of target mass on (cell, action)
    pairs never logged. See `model_error` for how the fit's own error enters intervals.
    """

    q_hat: np.ndarray  # (n, K)
    flat: np.ndarray  # (n,) index of (cell, logged action)
    mass: np.ndarray  # (cells * K,) target mass M(c, a), events counted with multiplicity
    logged: np.ndarray  # (cells * K,) summed inverse propensities N(c, a) of logged events
    multiplicity: np.ndarray  # (n,)
    extrapolated_mass: float
    # (cells * K,) summed corrections S of the whole log when these events are one chunk of it
    # (streaming); None: summed over these events.
    summed: np.ndarray | None = None

    def model_error(self, feedback: LoggedFeedback, correction: np.ndarray) -> np.ndarray:
        """Per-event influence of the model's estimation error on an estimator
        ``mean_i [sum_a pi q_hat + correction_i (r_i - q_hat(x_i, a_i))]``:
        ``(M - S)(c_i, a_i) / (mu_i N(c_i, a_i)) * (r_i - q_hat(x_i, a_i))`` with ``S`` the
        summed corrections of the (cell, action). It sums to exactly 0 (``q_hat`` is the
        weighted cell mean), so adding it leaves the point estimate and fixes the variance:
        for DM (no correction) it is the whole model error, for DR it nearly vanishes."""
        summed = self.summed
        if summed is None:
            summed = np.bincount(
                self.flat, weights=self.multiplicity * correction, minlength=self.mass.shape[0]
            )
        safe = np.where(self.logged > 0, self.logged, 1.0)
        factor = np.where(self.logged > 0, (self.mass - summed) / safe, 0.0)
        q_chosen = self.q_hat[np.arange(feedback.n), feedback.chosen]
        return factor[self.flat] / feedback.pscore * (feedback.reward - q_chosen)


def fit_tabular(feedback: LoggedFeedback, counts: np.ndarray | None = None) -> TabularFit:
    """Fit the tabular model by ``feedback.cells``; ``counts`` are event multiplicities."""
    if feedback.cells is None:
        raise InvalidFeedback("the tabular reward model needs cells (n,); got None")
    cells, k, n = feedback.cells, feedback.k, feedback.n
    n_cells = int(cells.max()) + 1
    multiplicity = np.ones(n) if counts is None else counts
    w = multiplicity / feedback.pscore
    flat = cells * k + feedback.chosen
    size = n_cells * k
    logged = np.bincount(flat, weights=w, minlength=size)
    total = np.bincount(flat, weights=w * feedback.reward, minlength=size)
    q_cell = tabular_q(logged.reshape(n_cells, k), total.reshape(n_cells, k))
    mass = np.stack(
        [
            np.bincount(cells, weights=multiplicity * feedback.target[:, a], minlength=n_cells)
            for a in range(k)
        ],
        axis=1,
    ).reshape(size)
    all_mass = mass.sum()
    extrapolated = float(mass[logged == 0].sum() / all_mass) if all_mass > 0 else 0.0
    return TabularFit(q_cell[cells], flat, mass, logged, multiplicity, extrapolated)


def tabular_q(logged: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The tabular model's table ``q(cell, a) = total / logged`` (see `TabularFit`) from the
    summed inverse propensities ``logged`` and inverse-propensity-weighted rewards ``total``
    of each (cell, action), shape (..., cells, K); leading axes (e.g. bootstrap resamples) are
    fitted independently. Never-logged pairs fall back to the action's mean over the cells,
    then to the overall mean (0 when nothing was logged)."""
    by_action_n = logged.sum(axis=-2)
    by_action_sum = total.sum(axis=-2)
    all_n = logged.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = np.where(all_n > 0, total.sum(axis=(-2, -1)) / np.where(all_n > 0, all_n, 1), 0)
        action_mean = np.where(
            by_action_n > 0,
            by_action_sum / np.where(by_action_n > 0, by_action_n, 1.0),
            np.asarray(overall)[..., None],
        )
        return np.where(
            logged > 0, total / np.where(logged > 0, logged, 1.0), action_mean[..., None, :]
        )


def _dm_terms(
    feedback: LoggedFeedback, who: str, fit: TabularFit | None
) -> tuple[np.ndarray, np.ndarray]:
    q_hat = fit.q_hat if fit is not None else feedback.require_q_hat(who)
    direct = (feedback.target * q_hat).sum(axis=1)
    q_chosen = q_hat[np.arange(feedback.n), feedback.chosen]
    return direct, q_chosen


@dataclass(frozen=True)
class IPS(_Estimator):
    """Inverse propensity scoring (Horvitz & Thompson, 1952), optionally with clipped weights.

    ``V = (1/n) sum_i min(w_i, clip) r_i`` with ``w_i = pi(a_i|x_i) / mu(a_i|x_i)``.
    Unbiased when ``clip`` is None and the logging policy covers the target's support;
    clipping trades bias (downward for non-negative rewards) for variance.
    """

    clip: float | None = None
    name: ClassVar[str] = "IPS"

    def __post_init__(self) -> None:
        _check_positive("IPS", "clip", self.clip, allow_none=True)

    def _terms(self, feedback: LoggedFeedback, fit: TabularFit | None) -> _Terms:
        w = feedback.weights()
        if self.clip is not None:
            w = np.minimum(w, self.clip)
        return _Terms(w * feedback.reward)

    def linear_terms(self, feedback: LoggedFeedback) -> Linear:
        return Linear(self._terms(feedback, None).num, np.ones(feedback.n))


@dataclass(frozen=True)
class SNIPS(_Estimator):
    """Self-normalised IPS (Swaminathan & Joachims, 2015, "The self-normalized estimator...").

    ``V = sum_i w_i r_i / sum_i w_i``; interval by the delta method with influence values
    ``w_i (r_i - V) / mean(w)``. Consistent but biased at finite n; equals IPS when every
    weight is 1.
    """

    name: ClassVar[str] = "SNIPS"

    def _terms(self, feedback: LoggedFeedback, fit: TabularFit | None) -> _Terms:
        w = feedback.weights()
        return _Terms(w * feedback.reward, w)

    def linear_terms(self, feedback: LoggedFeedback) -> Linear:
        w = feedback.weights()
        return Linear(w * feedback.reward, w)


@dataclass(frozen=True)
class DM(_Estimator):
    """Direct method: ``V = (1/n) sum_i sum_a pi(a|x_i) q_hat(x_i, a)``.

    Its bias is the reward model's bias, whatever n is. With a given ``q_hat`` the analytic
    interval ignores reward-model error: it reflects only the spread of contexts, so it is too
    narrow whenever ``q_hat`` is wrong. With ``cells`` instead, DM fits the tabular model
    itself; its influence values then include the model's error (see `TabularFit`) and the
    bootstrap refits the model per resample. Unbiased when the target depends on the context
    only through the cell. Reference: Dudik, Langford & Li (2011), section 2.
    """

    name: ClassVar[str] = "DM"
    uses_reward_model: ClassVar[bool] = True

    def _terms(self, feedback: LoggedFeedback, fit: TabularFit | None) -> _Terms:
        direct, _ = _dm_terms(feedback, self.name, fit)
        if fit is None:
            return _Terms(direct)
        return _Terms(direct + fit.model_error(feedback, np.zeros(feedback.n)))

    def linear_terms(self, feedback: LoggedFeedback) -> Linear:
        return Linear(np.zeros(feedback.n), np.ones(feedback.n))


@dataclass(frozen=True)
class DR(_Estimator):
    """Doubly robust estimator (Dudik, Langford & Li, 2011), optionally with clipped weights.

    ``V = (1/n) sum_i [ sum_a pi(a|x_i) q_hat(x_i, a) + min(w_i, clip) (r_i - q_hat(x_i, a_i)) ]``.
    Unbiased (without clipping) if either the propensities are exact or ``q_hat`` is;
    with ``q_hat = 0`` it reduces to IPS.
    """

    clip: float | None = None
    name: ClassVar[str] = "DR"
    uses_reward_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_positive("DR", "clip", self.clip, allow_none=True)

    def _terms(self, feedback: LoggedFeedback, fit: TabularFit | None) -> _Terms:
        direct, q_chosen = _dm_terms(feedback, self.name, fit)
        w = feedback.weights()
        if self.clip is not None:
            w = np.minimum(w, self.clip)
        num = direct + w * (feedback.reward - q_chosen)
        return _Terms(num if fit is None else num + fit.model_error(feedback, w))

    def linear_terms(self, feedback: LoggedFeedback) -> Linear:
        w = feedback.weights()
        if self.clip is not None:
            w = np.minimum(w, self.clip)
        return Linear(w * feedback.reward, np.ones(feedback.n), w)


@dataclass(frozen=True)
class DRos(_Estimator):
    """Doubly robust with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy & Dudik, 2020).

    DR with each weight shrunk to ``w'_i = lambda w_i / (w_i^2 + lambda)``:
    ``V = (1/n) sum_i [ sum_a pi(a|x_i) q_hat(x_i, a) + w'_i (r_i - q_hat(x_i, a_i)) ]``.
    Tends to DR as ``lambda -> inf`` and to DM as ``lambda -> 0``; biased for finite lambda
    unless ``q_hat`` is exact. ``lambda_=None`` tunes lambda per evaluation as the paper
    does: the value on ``LAMBDA_GRID`` minimising the estimated MSE, sample variance / n plus
    the squared bias bound ``mean(|w - w'| |r - q_hat|)``; with more data the variance term
    shrinks, so lambda grows and the estimate moves towards DR. A fixed lambda's analytic
    interval omits the shrinkage bias.
    """

    lambda_: float | None = None
    name: ClassVar[str] = "DRos"
    uses_reward_model: ClassVar[bool] = True
    LAMBDA_GRID: ClassVar[tuple[float, ...]] = tuple(
        float(10.0**e) for e in np.arange(-1, 7.5, 0.5)
    )

    def __post_init__(self) -> None:
        _check_positive("DRos", "lambda_", self.lambda_, allow_none=True)

    def _terms(self, feedback: LoggedFeedback, fit: TabularFit | None) -> _Terms:
        direct, q_chosen = _dm_terms(feedback, self.name, fit)
        w = feedback.weights()
        residual = feedback.reward - q_chosen
        lam = self.lambda_ if self.lambda_ is not None else _tuned_lambda(direct, w, residual)
        shrunk = lam * w / (w**2 + lam)
        num = direct + shrunk * residual
        return _Terms(num if fit is None else num + fit.model_error(feedback, shrunk))

    def linear_terms(self, feedback: LoggedFeedback) -> Linear:
        """Needs a fixed ``lambda_`` (tuning is not linear in the model)."""
        if self.lambda_ is None:
            raise ValueError("DRos.linear_terms needs a fixed lambda_; tune it first")
        w = feedback.weights()
        shrunk = self.lambda_ * w / (w**2 + self.lambda_)
        return Linear(shrunk * feedback.reward, np.ones(feedback.n), shrunk)


def _tuned_lambda(direct: np.ndarray, w: np.ndarray, residual: np.ndarray) -> float:
    """Lambda minimising estimated variance / n + bias bound squared (Su et al., 2020, sec. 4)."""
    n = direct.shape[0]
    variances, biases = [], []
    for lam in DRos.LAMBDA_GRID:
        shrunk = lam * w / (w**2 + lam)
        terms = direct + shrunk * residual
        variances.append(float(terms.var(ddof=1)) / n if n > 1 else 0.0)
        biases.append(float(np.mean(np.abs(w - shrunk) * np.abs(residual))))
    return pick_lambda(np.array(variances), np.array(biases))


def pick_lambda(variance_over_n: np.ndarray, bias: np.ndarray) -> float:
    """The lambda of ``DRos.LAMBDA_GRID`` with the least ``variance / n + bias^2`` (the first
    on ties; the largest when none is a number): DRos's tuning rule, on arrays over the grid."""
    best, best_mse = DRos.LAMBDA_GRID[-1], np.inf
    for lam, variance, b in zip(DRos.LAMBDA_GRID, variance_over_n, bias, strict=True):
        mse = float(variance) + float(b) ** 2
        if mse < best_mse:
            best, best_mse = lam, mse
    return best


@dataclass(frozen=True)
class Diagnostics:
    """Overlap diagnostics of logged feedback against a target policy (unclipped weights).

    ``ess = (sum w)^2 / sum w^2`` (Kish's effective sample size); ``zero_support_share`` is
    the share of events whose logged action has target probability 0 (they carry no IPS
    weight).
    """

    n: int
    ess: float
    min_weight: float
    max_weight: float
    zero_support_share: float

    @classmethod
    def of(cls, feedback: LoggedFeedback) -> Diagnostics:
        """Compute the diagnostics of ``feedback``."""
        w = feedback.weights()
        sum_sq = float((w**2).sum())
        ess = float(w.sum() ** 2 / sum_sq) if sum_sq > 0 else 0.0
        return cls(
            n=feedback.n,
            ess=ess,
            min_weight=float(w.min()),
            max_weight=float(w.max()),
            zero_support_share=float((w == 0).mean()),
        )

    def warnings(
        self,
        *,
        min_ess_share: float = 0.01,
        max_weight: float = 100.0,
        max_zero_support_share: float = 0.95,
    ) -> list[str]:
        """Human-readable warnings; empty when nothing looks wrong."""
        found = []
        if self.ess < min_ess_share * self.n:
            found.append(
                f"effective sample size {self.ess:.1f} is below {min_ess_share:.0%} of the "
                f"{self.n} events: estimates rest on a few heavily weighted events"
            )
        if self.max_weight > max_weight:
            found.append(
                f"largest importance weight is {self.max_weight:.1f} (> {max_weight:g}): "
                "consider clipping (IPS/DR clip) or shrinkage (DRos)"
            )
        if self.zero_support_share > max_zero_support_share:
            found.append(
                f"the target gives probability 0 to the logged action in "
                f"{self.zero_support_share:.1%} of events: little logged data matches the target"
            )
        return found
