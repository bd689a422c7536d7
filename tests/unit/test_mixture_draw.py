"""The sampler's primitives on hand-checkable pmfs: inverse-CDF draw, argmax, strict mixing."""

from __future__ import annotations

import pytest

from bandit.mixture import argmax, draw, mix, send_rule_choice

# Cumulative sums of [0.2, 0, 0.5, 0.3]: 0.2, (0.2), 0.7, 1.0.
PMF = [0.2, 0.0, 0.5, 0.3]


@pytest.mark.parametrize(
    ("u", "index"),
    [
        (0.0, 0),
        (0.1999, 0),
        (0.2, 2),  # exactly at a cumulative boundary: the next action (intervals are [a, b))
        (0.6999, 2),
        (0.7, 3),
        (0.9999, 3),
    ],
)
def test_draw_is_the_inverse_cdf_with_half_open_intervals(u: float, index: int) -> None:
    assert draw(PMF, u) == index


def test_draw_scales_u_by_the_total_of_an_unnormalised_pmf() -> None:
    # [1, 3] sums to 4: u = 0.5 is at 2, inside action 1's [1, 4).
    assert draw([1.0, 3.0], 0.5) == 1
    assert draw([1.0, 3.0], 0.2) == 0  # 0.8 < 1


def test_draw_accumulates_the_pmf() -> None:
    # [0.5, 0.2, 0.3]: u = 0.6 lies in [0.5, 0.7), action 1 (not in any single p).
    assert draw([0.5, 0.2, 0.3], 0.6) == 1


def test_draw_never_returns_a_zero_probability_action() -> None:
    assert draw([0.0, 1.0], 0.0) == 1  # a leading zero is skipped, not a stop
    # At the very top of the range (u * total == total, what float rounding can produce) the
    # last positive action is drawn, not the trailing zero.
    assert draw([0.3, 0.7, 0.0], 1.0) == 1


@pytest.mark.parametrize(
    ("values", "index"),
    [([5.0, 1.0], 0), ([1.0, 3.0, 3.0, 2.0], 1), ([1.0, 3.0, 2.0], 1), ([0.0, -1.0, 4.0], 2)],
)
def test_argmax_is_the_first_index_of_the_largest_value(values: list[float], index: int) -> None:
    assert argmax(values) == index


def test_mix_refuses_parts_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="zip"):
        mix([0.5, 0.5], [1.0], 0.1)


@pytest.mark.parametrize(("none_index", "choice"), [(2, 2), (None, 0)])
def test_send_rule_without_any_message_picks_send_nothing_or_the_first_candidate(
    none_index: int | None, choice: int
) -> None:
    outcomes = [[0.9, 0.0, 0.1]] * 3
    assert send_rule_choice(outcomes, [False] * 3, none_index, margin=0.0) == choice
