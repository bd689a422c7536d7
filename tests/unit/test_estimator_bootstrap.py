"""The bootstrap interval is the estimator applied to resamples of whole events.

The reference below resamples by hand (the same seeded draws, one resample at a time), builds
each resample as a `LoggedFeedback` of its own and calls the estimator's point estimate on it;
the interval must be the percentile interval of those values. This pins the fast paths
(resampled per-event terms; the tabular model refitted with event multiplicities) to that
definition on a log small enough to hit the corner cases: resamples without any weighted event,
summed weights below 1, and a paired difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from bandit.errors import InvalidFeedback
from replay.estimators import DM, DR, IPS, SNIPS, DRos, Estimate, LoggedFeedback

SEED = 20260105
N_BOOT = 300

# event  cell  chosen  pscore  reward  target       w      uniform target: w
#   0     0      0      0.5     1.0   [0.25, 0.75]  0.5    1
#   1     0      1      0.5     0.0   [0.25, 0.75]  1.5    1
#   2     1      0      0.8     0.5   [0,    1   ]  0      0.625
#   3     1      1      0.2     1.0   [0,    1   ]  5      2.5
#   4     0      1      0.5     0.3   [1,    0   ]  0      1
REWARD = np.array([1.0, 0.0, 0.5, 1.0, 0.3])
PSCORE = np.array([0.5, 0.5, 0.8, 0.2, 0.5])
CHOSEN = np.array([0, 1, 0, 1, 1])
CELLS = np.array([0, 0, 1, 1, 0])
TARGET = np.array([[0.25, 0.75], [0.25, 0.75], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
UNIFORM = np.full((5, 2), 0.5)


def log(target: np.ndarray = TARGET, *, cells: bool = False) -> LoggedFeedback:
    return LoggedFeedback(REWARD, PSCORE, CHOSEN, target, cells=CELLS if cells else None)


def resample(feedback: LoggedFeedback, idx: np.ndarray) -> LoggedFeedback:
    cells = None if feedback.cells is None else feedback.cells[idx]
    return LoggedFeedback(
        feedback.reward[idx], feedback.pscore[idx], feedback.chosen[idx], feedback.target[idx],
        cells=cells,
    )  # fmt: skip


def by_hand(
    estimator: IPS | SNIPS | DM | DR | DRos,
    feedback: LoggedFeedback,
    minus: LoggedFeedback | None = None,
    confidence: float = 0.95,
) -> Estimate:
    """The percentile interval over the resamples' estimates."""
    rng = np.random.default_rng(SEED)
    values = []
    for _ in range(N_BOOT):
        idx = rng.integers(0, feedback.n, size=feedback.n)
        value = estimator.estimate(resample(feedback, idx)).value
        if minus is not None:
            value -= estimator.estimate(resample(minus, idx)).value
        values.append(value)
    boot = np.array(values)
    alpha = 1 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    point = estimator.estimate(feedback).value
    if minus is not None:
        point -= estimator.estimate(minus).value
    expected = Estimate(estimator.name, point, boot.std(ddof=1), low, high, confidence, "bootstrap")
    return expected


def assert_same(actual: Estimate, expected: Estimate) -> None:
    assert (actual.estimator, actual.confidence, actual.method) == (
        expected.estimator, expected.confidence, expected.method,
    )  # fmt: skip
    got = (actual.value, actual.se, actual.low, actual.high)
    want = (expected.value, expected.se, expected.low, expected.high)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_snips_resamples_without_weight_count_as_zero_and_small_weight_sums_divide() -> None:
    expected = by_hand(SNIPS(), log())
    # The log is small enough that some resamples hold only zero-weight events (events 2
    # and 4: their estimate is 0) and many sum to a weight below 1 (only events 0, 2, 4).
    rng = np.random.default_rng(SEED)
    w = log().weights()
    sums = np.array([w[rng.integers(0, 5, size=5)].sum() for _ in range(N_BOOT)])
    assert (sums == 0).any() and ((sums > 0) & (sums < 1)).any()
    assert_same(SNIPS().bootstrap_interval(log(), seed=SEED, n_boot=N_BOOT), expected)


@pytest.mark.parametrize(
    "estimator", [IPS(), IPS(clip=2.0), SNIPS()], ids=["IPS", "IPS-clip", "SNIPS"]
)
@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_bootstrap_of_ips_and_snips_is_the_estimate_on_each_resample(
    estimator: IPS | SNIPS, confidence: float
) -> None:
    expected = by_hand(estimator, log(), confidence=confidence)
    actual = estimator.bootstrap_interval(log(), seed=SEED, n_boot=N_BOOT, confidence=confidence)
    assert_same(actual, expected)


@pytest.mark.parametrize("estimator", [DM(), DR(), DR(clip=2.0), DRos(lambda_=4.0)], ids=str)
def test_bootstrap_refits_the_tabular_model_on_each_resample(estimator: DM | DR | DRos) -> None:
    expected = by_hand(estimator, log(cells=True))
    assert_same(estimator.bootstrap_interval(log(cells=True), seed=SEED, n_boot=N_BOOT), expected)


@pytest.mark.parametrize("estimator", [IPS(), SNIPS(), DM(), DR()], ids=str)
def test_paired_bootstrap_is_the_difference_on_the_same_resamples(
    estimator: IPS | SNIPS | DM | DR,
) -> None:
    cells = estimator.uses_reward_model
    first, second = log(cells=cells), log(UNIFORM, cells=cells)
    expected = by_hand(estimator, first, minus=second)
    actual = estimator.bootstrap_interval(first, seed=SEED, n_boot=N_BOOT, minus=second)
    assert_same(actual, expected)


@pytest.mark.parametrize(("estimator", "value"), [(IPS(), 0.35), (DM(), 0.7)], ids=["IPS", "DM"])
def test_the_bootstrap_of_a_single_event_is_its_estimate(estimator: IPS | DM, value: float) -> None:
    # One event (reward 0.7, pscore 1, target 0.5 / 0.5): every resample is that event, so
    # IPS gives 0.5 * 0.7 = 0.35 each time and DM its reward 0.7 (the only mean there is).
    one = LoggedFeedback(
        np.array([0.7]), np.array([1.0]), np.array([0]), np.array([[0.5, 0.5]]),
        cells=np.array([0]),
    )  # fmt: skip
    est = estimator.bootstrap_interval(one, seed=0, n_boot=10)
    assert (est.value, est.low, est.high, est.se) == pytest.approx((value, value, value, 0.0))


@pytest.mark.parametrize("estimator", [IPS(), SNIPS()], ids=str)
def test_the_bootstrap_does_not_depend_on_the_chunk_size(
    estimator: IPS | SNIPS, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = estimator.bootstrap_interval(log(), seed=SEED, n_boot=N_BOOT)
    monkeypatch.setattr("replay.estimators._BOOT_CHUNK_ELEMENTS", 7 * 5)  # 7 resamples a chunk
    assert estimator.bootstrap_interval(log(), seed=SEED, n_boot=N_BOOT) == whole


def test_two_resamples_are_enough() -> None:
    est = IPS().bootstrap_interval(log(), seed=SEED, n_boot=2)
    assert est.low <= est.high


@pytest.mark.parametrize("n_boot", [1, 0, True, 200.0, "200"])
def test_n_boot_must_be_an_integer_of_at_least_two(n_boot: object) -> None:
    with pytest.raises(ValueError, match=rf"^n_boot must be an integer >= 2; got {n_boot!r}$"):
        IPS().bootstrap_interval(log(), seed=0, n_boot=n_boot)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "other",
    [
        LoggedFeedback(REWARD[::-1].copy(), PSCORE, CHOSEN, TARGET),
        LoggedFeedback(REWARD, PSCORE[::-1].copy(), CHOSEN, TARGET),
        LoggedFeedback(REWARD, PSCORE, 1 - CHOSEN, TARGET),
        LoggedFeedback(REWARD[:4], PSCORE[:4], CHOSEN[:4], TARGET[:4]),
    ],
    ids=["reward", "pscore", "chosen", "length"],
)
def test_a_difference_needs_the_same_logged_events(other: LoggedFeedback) -> None:
    message = (
        r"^a difference needs both policies evaluated on the same logged events "
        r"\(same chosen, reward and pscore arrays\)$"
    )
    for call in (
        lambda: IPS().estimate_difference(log(), other),
        lambda: IPS().bootstrap_interval(log(), seed=0, minus=other),
    ):
        with pytest.raises(InvalidFeedback, match=message):
            call()
