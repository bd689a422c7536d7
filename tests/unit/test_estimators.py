"""Off-policy estimators against a synthetic contextual bandit whose true policy values are known."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest

from bandit.errors import InvalidFeedback
from replay.estimators import (
    DM,
    DR,
    IPS,
    SNIPS,
    Diagnostics,
    DRos,
    Estimate,
    LoggedFeedback,
)

N_CONTEXTS = 20
K = 4
N_EVENTS = 5_000
SEEDS = range(60)
WORLD_SEED = 20260
Q_NOISE_SD = 0.05  # reward-model error of the "close but misspecified" q_hat
MIN_COVERAGE = 0.90  # of 95% intervals over the 60 seeds
# Moderate shrinkage: the largest squared weight here is 1 / 0.05^2 = 400.
DROS_LAMBDA = 200.0
DROS_STRONG_LAMBDA = 10.0


@dataclass(frozen=True)
class World:
    """Contexts with known probabilities, Bernoulli rewards p(x, a), logging and target policies."""

    p_context: np.ndarray  # (X,)
    p_reward: np.ndarray  # (X, K)
    logging: np.ndarray  # (X, K), every entry >= 0.05
    targets: dict[str, np.ndarray]  # name -> (X, K)

    def truth(self, target: str) -> float:
        """sum_x P(x) sum_a pi(a|x) p(x, a)."""
        return float(self.p_context @ (self.targets[target] * self.p_reward).sum(axis=1))

    def sample(
        self, seed: int, target: str, n: int = N_EVENTS
    ) -> tuple[LoggedFeedback, np.ndarray]:
        """n logged events and the context index of each."""
        rng = np.random.default_rng(seed)
        x = rng.choice(N_CONTEXTS, size=n, p=self.p_context)
        cdf = self.logging[x].cumsum(axis=1)
        chosen = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), K - 1)
        reward = (rng.random(n) < self.p_reward[x, chosen]).astype(float)
        feedback = LoggedFeedback(
            reward=reward,
            pscore=self.logging[x, chosen],
            chosen=chosen,
            target=self.targets[target][x],
        )
        return feedback, x


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@functools.cache
def world() -> World:
    rng = np.random.default_rng(WORLD_SEED)
    p_context = rng.dirichlet(np.full(N_CONTEXTS, 2.0))
    p_reward = rng.uniform(0.05, 0.6, size=(N_CONTEXTS, K))
    # 0.8 * softmax + 0.2 / K keeps every logging probability >= 0.05.
    logging = 0.8 * _softmax(rng.normal(0, 1.5, size=(N_CONTEXTS, K))) + 0.2 / K
    noisy_score = p_reward + rng.normal(0, 0.1, size=(N_CONTEXTS, K))
    deterministic = np.eye(K)[noisy_score.argmax(axis=1)]
    stochastic = _softmax(8.0 * noisy_score)
    return World(
        p_context, p_reward, logging, {"deterministic": deterministic, "stochastic": stochastic}
    )


def with_q_hat(feedback: LoggedFeedback, q_hat: np.ndarray) -> LoggedFeedback:
    return LoggedFeedback(
        reward=feedback.reward,
        pscore=feedback.pscore,
        chosen=feedback.chosen,
        target=feedback.target,
        q_hat=q_hat,
    )


def q_hat_for(kind: str, seed: int, x: np.ndarray) -> np.ndarray:
    """Reward model per event: 'noisy' is p(x, a) plus a fresh N(0, 0.05) error per data set."""
    p = world().p_reward
    if kind == "zero":
        return np.zeros((x.shape[0], K))
    if kind == "exact":
        return p[x]
    if kind == "noisy":
        error = np.random.default_rng(10_000 + seed).normal(0, Q_NOISE_SD, size=p.shape)
        return np.clip(p + error, 0, 1)[x]
    if kind == "biased":
        return np.clip(p + 0.1, 0, 1)[x]
    raise AssertionError(kind)


CASES = [
    ("IPS", IPS(), None),
    ("SNIPS", SNIPS(), None),
    ("DR noisy q", DR(), "noisy"),
    ("DR q=0", DR(), "zero"),
    ("DRos noisy q", DRos(lambda_=DROS_LAMBDA), "noisy"),
]


@functools.cache
def replicate(case: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    """(estimates, covered) over SEEDS for one estimator case and target policy."""
    _, estimator, q_kind = next(c for c in CASES if c[0] == case)
    values, covered = [], []
    truth = world().truth(target)
    for seed in SEEDS:
        feedback, x = world().sample(seed, target)
        if q_kind is not None:
            feedback = with_q_hat(feedback, q_hat_for(q_kind, seed, x))
        est = estimator.estimate(feedback)
        values.append(est.value)
        covered.append(est.low <= truth <= est.high)
    return np.array(values), np.array(covered)


@pytest.mark.parametrize("target", ["deterministic", "stochastic"])
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_analytic_interval_covers_truth_in_at_least_90_percent_of_seeds(
    case: str, target: str
) -> None:
    _, covered = replicate(case, target)
    assert covered.mean() >= MIN_COVERAGE, f"{case} / {target}: coverage {covered.mean():.1%}"


@pytest.mark.parametrize("target", ["deterministic", "stochastic"])
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_mean_bias_is_within_three_standard_errors(case: str, target: str) -> None:
    values, _ = replicate(case, target)
    bias = values.mean() - world().truth(target)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(bias) <= 3 * se, f"{case} / {target}: bias {bias:.5f}, se {se:.5f}"


def test_dros_interval_under_covers_with_strong_shrinkage() -> None:
    # Documented: with lambda small against the squared weights DRos leans on q_hat, and the
    # analytic interval omits the model's error (as DM's does). Observed 60% at lambda = 10.
    truth = world().truth("deterministic")
    covered = []
    for seed in SEEDS:
        feedback, x = world().sample(seed, "deterministic")
        feedback = with_q_hat(feedback, q_hat_for("noisy", seed, x))
        est = DRos(lambda_=DROS_STRONG_LAMBDA).estimate(feedback)
        covered.append(est.low <= truth <= est.high)
    assert np.mean(covered) < 0.8


def test_world_logging_policy_explores_every_action() -> None:
    assert world().logging.min() >= 0.05
    np.testing.assert_allclose(world().logging.sum(axis=1), 1.0)


@pytest.mark.parametrize("target", ["deterministic", "stochastic"])
def test_dm_with_the_true_reward_model_is_exact_given_the_contexts(target: str) -> None:
    # With q_hat = p(x, a), DM equals the truth conditional on the sampled contexts exactly.
    feedback, x = world().sample(0, target)
    est = DM().estimate(with_q_hat(feedback, q_hat_for("exact", 0, x)))
    conditional_truth = (world().targets[target][x] * world().p_reward[x]).sum(axis=1).mean()
    assert est.value == pytest.approx(conditional_truth, abs=1e-12)
    assert abs(est.value - world().truth(target)) <= 3 * est.se


def test_dm_with_a_biased_reward_model_is_biased_and_its_interval_misses() -> None:
    # Documented: DM's interval ignores model error, so a +0.1 model bias is not covered.
    truth = world().truth("stochastic")
    values, covered = [], []
    for seed in range(20):
        feedback, x = world().sample(seed, "stochastic")
        est = DM().estimate(with_q_hat(feedback, q_hat_for("biased", seed, x)))
        values.append(est.value)
        covered.append(est.low <= truth <= est.high)
    assert np.mean(values) - truth == pytest.approx(0.1, abs=0.01)
    assert not any(covered)


def test_dr_with_zero_reward_model_equals_ips() -> None:
    feedback, x = world().sample(1, "stochastic")
    dr = DR().estimate(with_q_hat(feedback, q_hat_for("zero", 1, x)))
    ips = IPS().estimate(feedback)
    assert dr.value == pytest.approx(ips.value, rel=1e-12)
    assert dr.se == pytest.approx(ips.se, rel=1e-12)


def test_snips_equals_ips_when_every_weight_is_one() -> None:
    rng = np.random.default_rng(3)
    n = 500
    chosen = rng.integers(0, K, size=n)
    target = np.full((n, K), 0.25)
    feedback = LoggedFeedback(
        reward=rng.random(n), pscore=np.full(n, 0.25), chosen=chosen, target=target
    )
    ips, snips = IPS().estimate(feedback), SNIPS().estimate(feedback)
    assert snips.value == pytest.approx(ips.value, rel=1e-12)
    assert snips.se == pytest.approx(ips.se, rel=1e-12)


def test_snips_delta_method_se_matches_its_bootstrap() -> None:
    feedback, _ = world().sample(2, "deterministic")
    analytic = SNIPS().estimate(feedback)
    boot = SNIPS().bootstrap_interval(feedback, seed=0, n_boot=400)
    assert boot.se == pytest.approx(analytic.se, rel=0.15)


def test_ips_clip_caps_weights_and_lowers_the_estimate() -> None:
    feedback, _ = world().sample(4, "deterministic")
    w = feedback.weights()
    assert w.max() > 5
    clipped = IPS(clip=5.0)
    assert clipped._per_sample(feedback).num.max() <= 5.0 * feedback.reward.max()
    assert np.all(clipped._per_sample(feedback).num <= IPS()._per_sample(feedback).num)
    assert clipped.estimate(feedback).value < IPS().estimate(feedback).value


def test_dros_tends_to_dr_for_large_lambda_and_to_dm_for_small_lambda() -> None:
    feedback, x = world().sample(5, "deterministic")
    feedback = with_q_hat(feedback, q_hat_for("noisy", 5, x))
    dr, dm = DR().estimate(feedback).value, DM().estimate(feedback).value
    assert abs(dr - dm) > 1e-3  # the limits are distinguishable
    assert DRos(lambda_=1e12).estimate(feedback).value == pytest.approx(dr, abs=1e-8)
    assert DRos(lambda_=1e-12).estimate(feedback).value == pytest.approx(dm, abs=1e-8)


def test_bootstrap_is_reproducible_and_agrees_with_the_analytic_interval() -> None:
    feedback, _ = world().sample(6, "stochastic")
    a = IPS().bootstrap_interval(feedback, seed=11)
    b = IPS().bootstrap_interval(feedback, seed=11)
    analytic = IPS().estimate(feedback)
    assert a == b
    assert a.method == "bootstrap" and analytic.method == "normal"
    assert a.value == analytic.value
    assert a.se == pytest.approx(analytic.se, rel=0.15)
    assert a.low == pytest.approx(analytic.low, abs=0.5 * analytic.se)
    assert a.high == pytest.approx(analytic.high, abs=0.5 * analytic.se)


@pytest.mark.parametrize("n", [4_999, 5_000])
def test_bootstrap_does_not_depend_on_the_chunk_size(monkeypatch, n: int) -> None:
    feedback, _ = world().sample(7, "stochastic", n=n)
    whole = SNIPS().bootstrap_interval(feedback, seed=1, n_boot=300)
    monkeypatch.setattr("replay.estimators._BOOT_CHUNK_ELEMENTS", 7 * feedback.n)
    chunked = SNIPS().bootstrap_interval(feedback, seed=1, n_boot=300)
    assert chunked == whole


def test_masked_padding_is_ignored() -> None:
    # Event 0 has three available actions; its padded fourth column carries junk.
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    target = np.array([[0.5, 0.25, 0.25, 9.0], [0.25, 0.25, 0.25, 0.25]])
    q_hat = np.array([[1.0, 0.0, 0.0, 100.0], [0.0, 0.0, 0.0, 0.0]])
    feedback = LoggedFeedback(
        reward=np.array([1.0, 0.0]),
        pscore=np.array([0.5, 0.25]),
        chosen=np.array([0, 3]),
        target=target,
        q_hat=q_hat,
        mask=mask,
    )
    assert DM().estimate(feedback).value == pytest.approx(0.25)
    assert IPS().estimate(feedback).value == pytest.approx(0.5)


def test_estimate_is_a_frozen_record() -> None:
    feedback, _ = world().sample(8, "stochastic")
    est = IPS().estimate(feedback, confidence=0.9)
    assert isinstance(est, Estimate)
    assert est.estimator == "IPS" and est.confidence == 0.9
    assert est.low < est.value < est.high
    with pytest.raises(AttributeError):
        est.value = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        feedback.reward[0] = 5.0


def test_diagnostics_of_a_well_covered_target_raise_no_warning() -> None:
    feedback, _ = world().sample(9, "stochastic")
    diag = Diagnostics.of(feedback)
    w = feedback.weights()
    assert diag.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert 0 < diag.ess <= diag.n
    assert diag.min_weight == w.min() and diag.max_weight == w.max()
    assert diag.zero_support_share == 0.0
    assert diag.warnings() == []


def test_diagnostics_of_a_deterministic_target_count_unsupported_events() -> None:
    feedback, _ = world().sample(9, "deterministic")
    diag = Diagnostics.of(feedback)
    expected = (feedback.target[np.arange(feedback.n), feedback.chosen] == 0).mean()
    assert diag.zero_support_share == pytest.approx(expected)
    assert 0.3 < diag.zero_support_share < 0.95
    assert diag.min_weight == 0.0


def test_diagnostics_warn_on_low_ess_huge_weights_and_missing_support() -> None:
    n = 1_000
    pscore = np.full(n, 0.999)
    pscore[0] = 1e-4  # one event carries nearly all the weight
    target = np.tile([1.0, 0.0], (n, 1))
    chosen = np.ones(n, dtype=int)
    chosen[0] = 0
    feedback = LoggedFeedback(reward=np.ones(n), pscore=pscore, chosen=chosen, target=target)
    messages = Diagnostics.of(feedback).warnings()
    assert len(messages) == 3
    assert "effective sample size 1.0" in messages[0]
    assert "largest importance weight is 10000.0" in messages[1]
    assert "99.9% of events" in messages[2]


def _good() -> dict[str, np.ndarray]:
    return {
        "reward": np.array([1.0, 0.0, 1.0]),
        "pscore": np.array([0.5, 0.5, 0.5]),
        "chosen": np.array([0, 1, 1]),
        "target": np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]),
        "q_hat": np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]),
        "mask": np.array([[True, True], [True, True], [True, True]]),
    }


def _with(name: str, value: object) -> dict[str, object]:
    arrays: dict[str, object] = dict(_good())
    arrays[name] = value
    return arrays


BAD_INPUTS = [
    (_with("reward", np.array([])), r"reward is empty"),
    (_with("reward", np.array([1.0, np.nan, 0.0])), r"reward\[1\] is not finite"),
    (_with("reward", np.ones((3, 1))), r"reward has shape \(3, 1\); expected \(n,\)"),
    (_with("pscore", np.array([0.5, 0.5])), r"pscore has shape \(2,\); expected \(n,\) with n = 3"),
    (_with("pscore", np.array([0.5, 0.0, 0.5])), r"pscore\[1\] = 0\.0 is outside \(0, 1\]"),
    (_with("pscore", np.array([0.5, 0.5, 1.5])), r"pscore\[2\] = 1\.5 is outside \(0, 1\]"),
    (_with("chosen", np.array([0.0, 1.0, 1.0])), r"chosen has dtype float64; expected integer"),
    (_with("chosen", np.array([0, 2, 1])), r"chosen\[1\] = 2 is outside \[0, 2\)"),
    (_with("chosen", np.array([0, -1, 1])), r"chosen\[1\] = -1 is outside \[0, 2\)"),
    (_with("chosen", np.array([0, 1])), r"chosen has shape \(2,\); expected \(3,\)"),
    (_with("target", np.ones(3)), r"target has shape \(3,\); expected \(n, K\)"),
    (
        _with("target", np.array([[0.5, 0.5], [0.5, 0.5], [0.6, 0.6]])),
        r"target\[2\] = 1\.2 is the sum over unmasked actions, not 1",
    ),
    (
        _with("target", np.array([[0.5, 0.5], [1.5, -0.5], [0.5, 0.5]])),
        r"target\[1\] has a probability outside \[0, 1\]",
    ),
    (_with("q_hat", np.ones((3, 3))), r"q_hat has shape \(3, 3\); expected \(3, 2\) like target"),
    (
        _with("q_hat", np.array([[0.1, 0.2], [0.3, np.inf], [0.5, 0.6]])),
        r"q_hat\[1\] is not finite",
    ),
    (_with("mask", np.ones((3, 2), dtype=int)), r"mask has dtype int64; expected bool"),
    (_with("mask", np.ones((2, 2), dtype=bool)), r"mask has shape \(2, 2\); expected \(3, 2\)"),
    (
        _with("mask", np.array([[True, True], [True, True], [True, False]])),
        r"chosen\[2\] = 1 is a masked \(unavailable\) action",
    ),
]


@pytest.mark.parametrize(("arrays", "message"), BAD_INPUTS)
def test_bad_feedback_is_rejected_naming_array_and_row(arrays: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        LoggedFeedback(**arrays)
    assert isinstance(raised.value, InvalidFeedback)


def test_reward_model_estimators_require_q_hat() -> None:
    arrays = _good()
    del arrays["q_hat"]
    feedback = LoggedFeedback(**arrays)
    for estimator in (DM(), DR(), DRos(lambda_=1.0)):
        with pytest.raises(ValueError, match=rf"{estimator.name} needs q_hat"):
            estimator.estimate(feedback)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: IPS(clip=0.0), r"IPS\.clip must be a finite number > 0; got 0\.0"),
        (lambda: IPS(clip=-1.0), r"IPS\.clip must be a finite number > 0"),
        (lambda: DR(clip=float("nan")), r"DR\.clip must be a finite number > 0"),
        (lambda: DRos(lambda_=0.0), r"DRos\.lambda_ must be a finite number > 0"),
        (lambda: DRos(lambda_=float("inf")), r"DRos\.lambda_ must be a finite number > 0"),
    ],
)
def test_bad_hyperparameters_are_rejected(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: IPS().estimate(f, confidence=1.0), r"confidence must be in \(0, 1\); got 1\.0"),
        (
            lambda f: IPS().bootstrap_interval(f, seed=0, n_boot=1),
            r"n_boot must be an integer >= 2",
        ),
        (lambda f: IPS().bootstrap_interval(f, seed=0, confidence=0.0), r"confidence must be in"),
    ],
)
def test_bad_interval_arguments_are_rejected(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(LoggedFeedback(**_good()))
