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
        ):
            if value is not None:
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n(self) -> int:
        """Number of logged events."""
        return int(self.reward.shape[0])

    def weights(self) -> np.ndarray:
        """Importance weights ``w_i = pi(a_i | x_i) / mu(a_i | x_i)``, shape (n,)."""
        return self.target[np.arange(self.n), self.chosen] / self.pscore

    def require_q_hat(self, who: str) -> np.ndarray:
        """Return ``q_hat`` or fail naming the estimator that needs it."""
        if self.q_hat is None:
            raise InvalidFeedback(f"{who} needs q_hat (n, K) reward-model predictions; got None")
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


def _first_bad(name: str, bad: np.ndarray, values: np.ndarray | None, problem: str) -> None:
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
class _Terms:
    """Per-event numerator (n,) and, for self-normalised estimators, denominator (n,) terms."""

    num: np.ndarray
    den: np.ndarray | None = None


class _Estimator:
    """Shared estimate / bootstrap machinery; subclasses write only `_per_sample`."""

    name: ClassVar[str] = "estimator"

    def _per_sample(self, feedback: LoggedFeedback) -> _Terms:
        raise NotImplementedError

    def estimate(self, feedback: LoggedFeedback, *, confidence: float = 0.95) -> Estimate:
        """Point estimate with an analytic normal interval from the per-event influence values.

        ``se = std(phi) / sqrt(n)`` with ``phi_i = (num_i - V den_i) / mean(den)`` (the plain
        sample standard error when ``den = 1``; the delta method when self-normalised).
        """
        z = _z(confidence)
        terms = self._per_sample(feedback)
        value = _ratio(terms.num.sum(), _den_sum(terms, feedback.n))
        den = np.ones(feedback.n) if terms.den is None else terms.den
        influence = (
            (terms.num - value * den) / den.mean() if den.mean() > 0 else np.zeros(feedback.n)
        )
        se = float(influence.std(ddof=1) / np.sqrt(feedback.n)) if feedback.n > 1 else float("nan")
        return Estimate(self.name, value, se, value - z * se, value + z * se, confidence, "normal")

    def bootstrap_interval(
        self,
        feedback: LoggedFeedback,
        *,
        seed: int | np.random.Generator,
        n_boot: int = 200,
        confidence: float = 0.95,
    ) -> Estimate:
        """Percentile interval from ``n_boot`` resamples of whole events (with replacement).

        A resample's estimate is the ratio of resampled per-event sums; resamples are drawn
        in chunks of at most ``_BOOT_CHUNK_ELEMENTS`` indices so memory stays bounded for
        large n; the draws, hence the result, do not depend on the chunk size. ``se`` is the
        standard deviation of the bootstrap estimates. The reward model is held fixed:
        model-fitting error is not resampled.
        """
        _z(confidence)
        if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
            raise ValueError(f"n_boot must be an integer >= 2; got {n_boot!r}")
        rng = np.random.default_rng(seed)
        terms = self._per_sample(feedback)
        value = _ratio(terms.num.sum(), _den_sum(terms, feedback.n))
        n = feedback.n
        chunk = max(1, _BOOT_CHUNK_ELEMENTS // n)
        boot = np.empty(n_boot)
        for start in range(0, n_boot, chunk):
            stop = min(start + chunk, n_boot)
            idx = rng.integers(0, n, size=(stop - start, n))
            num = terms.num[idx].sum(axis=1)
            den = (
                np.full(stop - start, float(n)) if terms.den is None else terms.den[idx].sum(axis=1)
            )
            with np.errstate(invalid="ignore", divide="ignore"):
                boot[start:stop] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        alpha = 1.0 - confidence
        low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
        return Estimate(
            self.name,
            value,
            float(boot.std(ddof=1)),
            float(low),
            float(high),
            confidence,
            "bootstrap",
        )


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


def _dm_terms(feedback: LoggedFeedback, who: str) -> tuple[np.ndarray, np.ndarray]:
    q_hat = feedback.require_q_hat(who)
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

    def _per_sample(self, feedback: LoggedFeedback) -> _Terms:
        w = feedback.weights()
        if self.clip is not None:
            w = np.minimum(w, self.clip)
        return _Terms(w * feedback.reward)


@dataclass(frozen=True)
class SNIPS(_Estimator):
    """Self-normalised IPS (Swaminathan & Joachims, 2015, "The self-normalized estimator...").

    ``V = sum_i w_i r_i / sum_i w_i``; interval by the delta method with influence values
    ``w_i (r_i - V) / mean(w)``. Consistent but biased at finite n; equals IPS when every
    weight is 1.
    """

    name: ClassVar[str] = "SNIPS"

    def _per_sample(self, feedback: LoggedFeedback) -> _Terms:
        w = feedback.weights()
        return _Terms(w * feedback.reward, w)


@dataclass(frozen=True)
class DM(_Estimator):
    """Direct method: ``V = (1/n) sum_i sum_a pi(a|x_i) q_hat(x_i, a)``.

    Its bias is the reward model's bias, whatever n is. The analytic interval ignores
    reward-model error: it reflects only the spread of contexts, so it is too narrow
    whenever ``q_hat`` is wrong (the replay layer refits the model inside the bootstrap
    to account for it). Reference: Dudik, Langford & Li (2011), section 2.
    """

    name: ClassVar[str] = "DM"

    def _per_sample(self, feedback: LoggedFeedback) -> _Terms:
        direct, _ = _dm_terms(feedback, self.name)
        return _Terms(direct)


@dataclass(frozen=True)
class DR(_Estimator):
    """Doubly robust estimator (Dudik, Langford & Li, 2011), optionally with clipped weights.

    ``V = (1/n) sum_i [ sum_a pi(a|x_i) q_hat(x_i, a) + min(w_i, clip) (r_i - q_hat(x_i, a_i)) ]``.
    Unbiased (without clipping) if either the propensities are exact or ``q_hat`` is;
    with ``q_hat = 0`` it reduces to IPS.
    """

    clip: float | None = None
    name: ClassVar[str] = "DR"

    def __post_init__(self) -> None:
        _check_positive("DR", "clip", self.clip, allow_none=True)

    def _per_sample(self, feedback: LoggedFeedback) -> _Terms:
        direct, q_chosen = _dm_terms(feedback, self.name)
        w = feedback.weights()
        if self.clip is not None:
            w = np.minimum(w, self.clip)
        return _Terms(direct + w * (feedback.reward - q_chosen))


@dataclass(frozen=True)
class DRos(_Estimator):
    """Doubly robust with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy & Dudik, 2020).

    DR with each weight shrunk to ``w'_i = lambda w_i / (w_i^2 + lambda)``:
    ``V = (1/n) sum_i [ sum_a pi(a|x_i) q_hat(x_i, a) + w'_i (r_i - q_hat(x_i, a_i)) ]``.
    Tends to DR as ``lambda -> inf`` and to DM as ``lambda -> 0``. Biased for finite lambda
    unless ``q_hat`` is exact, and the analytic interval, like DM's, treats ``q_hat`` as
    fixed: it omits that bias, so it under-covers when shrinkage is strong (lambda small
    against the squared weights) and ``q_hat`` is off.
    """

    lambda_: float
    name: ClassVar[str] = "DRos"

    def __post_init__(self) -> None:
        _check_positive("DRos", "lambda_", self.lambda_, allow_none=False)

    def _per_sample(self, feedback: LoggedFeedback) -> _Terms:
        direct, q_chosen = _dm_terms(feedback, self.name)
        w = feedback.weights()
        shrunk = self.lambda_ * w / (w**2 + self.lambda_)
        return _Terms(direct + shrunk * (feedback.reward - q_chosen))


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
