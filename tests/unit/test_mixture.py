"""Unit tests of the decision pmf's pieces (`bandit.mixture`): plain lists, no Vowpal Wabbit."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.mixture import (
    collapse_versions,
    message_mask,
    mix,
    send_rule_choice,
    send_rule_pmf,
    uniform_over,
    version_group,
)

NONE = "none"


# ---- messages and uniform -----------------------------------------------------------------------


def test_message_mask_marks_every_candidate_but_send_nothing() -> None:
    mask = message_mask(("hint", NONE, "review.v1", "review.v2"), NONE)

    assert mask == [True, False, True, True]


def test_message_mask_uses_the_configured_none_action() -> None:
    assert message_mask(("hint", "none", "skip"), "skip") == [True, True, False]


def test_message_mask_of_no_candidates_is_empty() -> None:
    assert message_mask((), NONE) == []


def test_uniform_over_messages_gives_send_nothing_zero() -> None:
    uniform = uniform_over(message_mask(("a", NONE, "b", "c"), NONE))

    np.testing.assert_allclose(uniform, [1 / 3, 0.0, 1 / 3, 1 / 3], rtol=0, atol=1e-15)
    assert sum(uniform) == pytest.approx(1.0, abs=1e-15)


def test_uniform_over_no_messages_is_uniform_over_every_candidate() -> None:
    # Only "send nothing" is offered: it must still be a pmf, so it gets everything.
    np.testing.assert_array_equal(uniform_over(message_mask((NONE,), NONE)), [1.0])
    np.testing.assert_array_equal(uniform_over(np.zeros(4, dtype=bool)), [0.25] * 4)


# ---- versions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action_id", "group"),
    [
        ("review.v2", "review"),
        ("review_notes.v1", "review_notes"),
        ("hint", "hint"),
        (NONE, NONE),
        ("a.b.c", "a.b"),
    ],
)
def test_version_group_is_the_id_up_to_its_last_dot(action_id: str, group: str) -> None:
    assert version_group(action_id) == group


def test_collapse_moves_each_messages_mass_to_its_best_ranked_version() -> None:
    ids = ("hint", "review.v1", "review.v2", "review.v3", NONE)
    pmf = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    ranking = np.array([0.0, 0.5, 0.2, 0.9, 0.0])  # v3 ranks best of the review versions

    out = collapse_versions(pmf, ids, ranking)

    np.testing.assert_allclose(out, [0.1, 0.0, 0.0, 0.2 + 0.3 + 0.15, 0.25], rtol=0, atol=1e-15)


def test_collapse_gives_a_tie_to_the_first_listed_version() -> None:
    ids = ("review.v2", "review.v1", NONE)
    pmf = np.array([0.3, 0.3, 0.4])

    out = collapse_versions(pmf, ids, np.array([0.5, 0.5, 0.1]))

    np.testing.assert_allclose(out, [0.6, 0.0, 0.4], rtol=0, atol=1e-15)


def test_collapse_leaves_ids_without_versions_untouched() -> None:
    ids = ("hint", "peer", NONE)
    pmf = np.array([0.5, 0.3, 0.2])

    np.testing.assert_array_equal(collapse_versions(pmf, ids, np.array([0.1, 0.9, 0.5])), pmf)


def test_collapse_keeps_groups_apart_and_does_not_mutate_its_input() -> None:
    ids = ("a.v1", "b.v1", "a.v2", "b.v2", "c")
    pmf = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    before = pmf.copy()

    out = collapse_versions(pmf, ids, np.array([1.0, 0.0, 0.0, 1.0, 0.5]))

    np.testing.assert_allclose(out, [0.4, 0.0, 0.0, 0.35, 0.25], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(pmf, before)


def test_collapse_preserves_total_mass_on_random_inputs() -> None:
    rng = np.random.default_rng(11)
    groups = ["hint", "review", "peer", "next"]
    for _ in range(200):
        k = int(rng.integers(1, 9))
        ids = tuple(
            dict.fromkeys(f"{groups[rng.integers(4)]}.v{rng.integers(3)}" for _ in range(k))
        )
        pmf = rng.dirichlet(np.ones(len(ids)))
        ranking = rng.random(len(ids))

        out = collapse_versions(pmf, ids, ranking)

        assert sum(out) == pytest.approx(pmf.sum(), abs=1e-12)
        assert all(p >= 0.0 for p in out)
        # exactly one non-zero entry per message group, at its best-ranked version
        for group in {version_group(a) for a in ids}:
            members = [i for i, a in enumerate(ids) if version_group(a) == group]
            best = max(members, key=lambda i: (ranking[i], -i))
            assert out[best] == pytest.approx(pmf[members].sum(), abs=1e-12)
            assert all(out[i] == 0.0 for i in members if i != best)


# ---- the send rule ------------------------------------------------------------------------------

# rows: P(helpful), P(not helpful), P(ignored)
OUTCOMES = np.array(
    [
        [0.50, 0.20, 0.30],  # hint: helpful beats the others by 0.20
        [0.40, 0.10, 0.50],  # review: helpful is not its most likely outcome
        [0.00, 0.00, 1.00],  # none (ignored by the rule)
    ]
)
MESSAGES = np.array([True, True, False])


@pytest.mark.parametrize(
    ("margin", "expected"),
    [
        (0.0, 0),  # 0.50 - max(0.20, 0.30) = 0.20 > 0
        (0.19, 0),
        (0.20, 2),  # not *more* than the margin: hold back
        (0.5, 2),
        (-0.1, 0),
    ],
)
def test_send_rule_sends_the_most_helpful_message_only_if_it_beats_both_others_by_the_margin(
    margin: float, expected: int
) -> None:
    assert send_rule_choice(OUTCOMES, MESSAGES, none_index=2, margin=margin) == expected


def test_send_rule_holds_back_when_ignored_is_more_likely_than_helpful() -> None:
    outcomes = np.array([[0.40, 0.10, 0.50], [0.0, 0.0, 1.0]])

    assert send_rule_choice(outcomes, np.array([True, False]), none_index=1, margin=0.0) == 1


def test_send_rule_holds_back_when_not_helpful_is_more_likely_than_helpful() -> None:
    outcomes = np.array([[0.45, 0.50, 0.05], [0.0, 0.0, 1.0]])

    assert send_rule_choice(outcomes, np.array([True, False]), none_index=1, margin=0.0) == 1


def test_send_rule_ranks_messages_by_helpful_only() -> None:
    # review has the larger margin over the others, but hint the higher P(helpful)
    outcomes = np.array([[0.60, 0.35, 0.05], [0.55, 0.00, 0.45], [0.0, 0.0, 1.0]])

    assert send_rule_choice(outcomes, MESSAGES, none_index=2, margin=0.1) == 0


def test_send_rule_ignores_the_rows_of_non_messages() -> None:
    # the none row claims P(helpful) = 1; it must not be chosen as "the best message"
    outcomes = np.array([[0.6, 0.2, 0.2], [1.0, 0.0, 0.0]])

    assert send_rule_choice(outcomes, np.array([True, False]), none_index=1, margin=0.0) == 0


@pytest.mark.parametrize("margin", [0.0, 0.5, 0.99])
def test_send_rule_without_a_none_action_sends_the_best_message(margin: float) -> None:
    outcomes = np.array([[0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.2, 0.7, 0.1]])

    assert send_rule_choice(outcomes, np.ones(3, dtype=bool), none_index=None, margin=margin) == 1


def test_send_rule_with_no_messages_sends_nothing() -> None:
    outcomes = np.array([[0.0, 0.0, 1.0]])

    assert send_rule_choice(outcomes, np.array([False]), none_index=0, margin=0.0) == 0


@pytest.mark.parametrize(("choice", "n", "epsilon"), [(0, 3, 0.05), (2, 3, 0.0), (1, 6, 1.0)])
def test_send_rule_pmf_is_one_minus_epsilon_on_the_choice_plus_uniform_epsilon(
    choice: int, n: int, epsilon: float
) -> None:
    pmf = send_rule_pmf(choice, n, epsilon)

    expected = np.full(n, epsilon / n)
    expected[choice] += 1.0 - epsilon
    np.testing.assert_allclose(pmf, expected, rtol=0, atol=1e-15)
    assert sum(pmf) == pytest.approx(1.0, abs=1e-12)


# ---- the mixture ----------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 1.0])
def test_mix_is_the_forced_share_of_forced_plus_the_rest_of_the_policy(share: float) -> None:
    forced = np.array([0.5, 0.5, 0.0])
    policy = np.array([0.1, 0.2, 0.7])

    pmf = mix(forced, policy, share)

    np.testing.assert_allclose(pmf, share * forced + (1 - share) * policy, rtol=0, atol=1e-15)
    assert sum(pmf) == pytest.approx(1.0, abs=1e-15)


def test_mix_renormalises_float32_drift_of_a_vw_pmf() -> None:
    # VW returns float32 probabilities, which need not sum to exactly 1 in float64
    policy = np.array([0.8333333] + [0.0333333] * 5, dtype=np.float32).astype(np.float64)
    assert abs(policy.sum() - 1.0) > 1e-8

    pmf = mix(np.full(6, 1 / 6), policy, 0.1)

    assert sum(pmf) == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(pmf, (0.1 / 6 + 0.9 * policy) / (0.1 + 0.9 * policy.sum()))


def test_mix_keeps_zero_where_both_parts_are_zero() -> None:
    pmf = mix(np.array([0.5, 0.5, 0.0]), np.array([0.0, 1.0, 0.0]), 0.1)

    assert pmf[2] == 0.0
    assert pmf[0] == pytest.approx(0.05, abs=1e-15)
