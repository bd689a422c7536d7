"""`LoggedFeedback` and the estimators at their boundary: exact messages, canonical copies."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bandit.errors import InvalidFeedback
from replay.estimators import DM, IPS, LoggedFeedback, fit_tabular


def arrays(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "reward": np.array([1.0, 0.0, 1.0]),
        "pscore": np.array([0.5, 0.5, 0.5]),
        "chosen": np.array([0, 1, 1]),
        "target": np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]),
    }
    return base | changes


BAD_INPUTS = [
    (arrays(reward=np.array([])), r"reward is empty; need at least one logged event"),
    (arrays(reward=np.ones((3, 1))), r"reward has shape \(3, 1\); expected \(n,\)"),
    (
        arrays(target=np.full((2, 2), 0.5)),
        r"target has shape \(2, 2\); expected \(n, K\) with n = 3 from reward",
    ),
    (
        arrays(q_hat=np.zeros((2, 2))),
        r"q_hat has shape \(2, 2\); expected \(n, K\) with n = 3 from reward",
    ),
    (
        arrays(cells=np.array([0.0, 1.0, 1.0])),
        r"cells has shape \(3,\) and dtype float64; expected \(3,\) integers like reward",
    ),
    (
        arrays(cells=np.array([0, 1])),
        r"cells has shape \(2,\) and dtype int64; expected \(3,\) integers like reward",
    ),
    (arrays(cells=np.array([0, -1, 1])), r"cells\[1\] = -1 is negative \(first bad row of 1\)"),
    (
        arrays(target=np.array([[0.5, 0.5], [1.5, 0.0], [0.5, 0.5]])),
        r"target\[1\] has a probability outside \[0, 1\] \(first bad row of 1\)",
    ),
]


@pytest.mark.parametrize(("given", "message"), BAD_INPUTS)
def test_bad_feedback_is_rejected_with_the_exact_message(
    given: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidFeedback, match=rf"^{message}$"):
        LoggedFeedback(**given)  # type: ignore[arg-type]


BAD_CALLS: list[tuple[Callable[[], object], str]] = [
    (
        lambda: DM().estimate(LoggedFeedback(**arrays())),  # type: ignore[arg-type]
        r"DM needs q_hat \(n, K\) reward-model predictions or cells for the tabular model; "
        r"got neither",
    ),
    (
        lambda: fit_tabular(LoggedFeedback(**arrays())),  # type: ignore[arg-type]
        r"the tabular reward model needs cells \(n,\); got None",
    ),
    (lambda: IPS(clip=True), r"IPS\.clip must be a finite number > 0; got True"),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS)
def test_bad_calls_are_refused_with_the_exact_message(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{message}$"):
        call()


def test_a_logging_probability_of_exactly_one_is_valid() -> None:
    feedback = LoggedFeedback(**arrays(pscore=np.array([1.0, 0.5, 1.0])))  # type: ignore[arg-type]
    np.testing.assert_array_equal(feedback.weights(), [0.5, 1.0, 0.5])


def test_construction_stores_read_only_canonical_copies_and_leaves_the_input_alone() -> None:
    given = {
        "reward": [1, 0],  # integers and lists become float64 / int64 / bool arrays
        "pscore": np.array([0.5, 0.5]),
        "chosen": [0, 1],
        "target": np.array([[1.0, 0.3], [0.5, 0.5]]),  # 0.3: padding, masked out
        "q_hat": np.array([[0.1, 9.0], [0.3, 0.4]]),
        "mask": [[True, False], [True, True]],
        "cells": [0, 0],
    }
    originals = {k: np.array(v, copy=True) for k, v in given.items()}
    feedback = LoggedFeedback(**given)  # type: ignore[arg-type]
    dtypes = {"chosen": np.int64, "mask": np.bool_, "cells": np.int64}
    for name in given:
        stored = getattr(feedback, name)
        assert isinstance(stored, np.ndarray), name
        assert stored.dtype == dtypes.get(name, np.float64), name
        assert not stored.flags.writeable, name
    for name, value in given.items():
        np.testing.assert_array_equal(value, originals[name])
        if isinstance(value, np.ndarray):
            assert value.flags.writeable, name
    # Masked-out actions carry no target mass and no model prediction.
    np.testing.assert_array_equal(feedback.target, [[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_array_equal(feedback.q_hat, [[0.1, 0.0], [0.3, 0.4]])
