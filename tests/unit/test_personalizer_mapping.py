"""Personalizer v1.0 requests mapped onto the event contract (`nudge.service.personalizer`).

Tables of requests and what they map to, and of bad requests with the field and reason the
refusal names, for contextFeatures, action features, excludedActions and reward values.
"""

from __future__ import annotations

from typing import Any

import pytest

from bandit.config import PersonalizerConfig, RewardConfig
from bandit.errors import InvalidRequest
from bandit.events import EventRules, OutcomeLabel, Reason
from nudge.service.personalizer import (
    RankContext,
    map_action_features,
    map_context,
    rank_candidates,
    ranking,
    reward_outcome,
)

RULES = EventRules(namespaces=frozenset({"learner", "course", "user", "trigger"}), max_features=4)
CONFIG = PersonalizerConfig()

CONTEXTS = [
    pytest.param(None, RankContext("personalizer", "anonymous", {}), id="none-defaults"),
    pytest.param([], RankContext("personalizer", "anonymous", {}), id="empty-defaults"),
    pytest.param(
        [{"trigger": "A/quiz-3/quiz-failed", "learner_id": "u1"}],
        RankContext("A/quiz-3/quiz-failed", "u1", {}),
        id="trigger-and-learner-from-features",
    ),
    pytest.param(
        [{"user": {"profile": {"age": 3}, "novice": True}}],
        RankContext("personalizer", "anonymous", {"user": {"profile.age": 3, "novice": "true"}}),
        id="nested-objects-flatten-with-dots-booleans-as-text",
    ),
    pytest.param(
        [{"user": {"tags": ["a", "b"], "gone": None}}],
        RankContext("personalizer", "anonymous", {"user": {"tags.0": "a", "tags.1": "b"}}),
        id="arrays-flatten-with-the-index-nulls-dropped",
    ),
    pytest.param(
        [{"level": 2, "mode": "exam", "flags": [1, 0]}],
        RankContext(
            "personalizer",
            "anonymous",
            {"learner": {"level": 2, "mode": "exam", "flags.0": 1, "flags.1": 0}},
        ),
        id="top-level-scalars-go-to-the-default-namespace",
    ),
    pytest.param(
        [{"user": {"a": 1}}, {"user": {"b": 2.5}, "course": {"id": "c1"}}, {"trigger": None}],
        RankContext(
            "personalizer", "anonymous", {"user": {"a": 1, "b": 2.5}, "course": {"id": "c1"}}
        ),
        id="objects-merge-null-trigger-is-absent",
    ),
    pytest.param(
        [{"trigger": "A/quiz-3/quiz-failed"}, {"trigger": {"state": "quiz-failed"}}],
        RankContext("A/quiz-3/quiz-failed", "anonymous", {"trigger": {"state": "quiz-failed"}}),
        id="a-trigger-scalar-names-the-trigger-a-trigger-object-is-its-namespace",
    ),
]


@pytest.mark.parametrize(("features", "expected"), CONTEXTS)
def test_context_features_map_to_trigger_learner_and_namespaces(
    features: list[dict[str, Any]] | None, expected: RankContext
) -> None:
    assert map_context(features, CONFIG, RULES) == expected


def test_trigger_and_learner_features_and_defaults_come_from_the_config() -> None:
    config = PersonalizerConfig(
        trigger_feature="where", default_trigger="T0", learner_feature="who",
        default_learner="nobody", default_namespace="course",
    )  # fmt: skip
    assert map_context([{"where": "T1", "who": "u9", "x": 1}], config, RULES) == RankContext(
        "T1", "u9", {"course": {"x": 1}}
    )
    # The default feature names are now plain features of the default namespace.
    assert map_context([{"trigger": "T1"}], config, RULES) == RankContext(
        "T0", "nobody", {"course": {"trigger": "T1"}}
    )


BAD_CONTEXTS = [
    pytest.param([{"nope": {"a": 1}}], "contextFeatures[0].nope", Reason.UNKNOWN_NAMESPACE,
                 id="unknown-namespace"),
    pytest.param([{"user": {}}, {"other": {"a": 1}}], "contextFeatures[1].other",
                 Reason.UNKNOWN_NAMESPACE, id="unknown-namespace-in-second-object"),
    pytest.param(["text"], "contextFeatures[0]", Reason.NOT_AN_OBJECT, id="not-an-object"),
    pytest.param([{"trigger": 3}], "contextFeatures[0].trigger", Reason.WRONG_TYPE,
                 id="trigger-not-text"),
    pytest.param([{"trigger": "has space"}], "contextFeatures[0].trigger", Reason.INVALID_VALUE,
                 id="trigger-breaks-identifier"),
    pytest.param([{"learner_id": "a|b"}], "contextFeatures[0].learner_id", Reason.INVALID_VALUE,
                 id="learner-breaks-identifier"),
    pytest.param([{"learner_id": "u1"}, {"learner_id": "u2"}], "contextFeatures[1].learner_id",
                 Reason.DUPLICATE_KEY, id="learner-twice"),
    pytest.param([{"user": {"a": 1}}, {"user": {"a": 2}}], "contextFeatures[1].user.a",
                 Reason.DUPLICATE_KEY, id="feature-twice-across-objects"),
    pytest.param([{"user": {"a.b": 1, "a": {"b": 2}}}], "contextFeatures[0].user.a.b",
                 Reason.DUPLICATE_KEY, id="dotted-name-collides-with-nesting"),
    pytest.param([{"user": {"bad name": 1}}], "contextFeatures[0].user.bad name",
                 Reason.INVALID_VALUE, id="feature-name-with-space"),
    pytest.param([{"user": {"k": "x" * 257}}], "contextFeatures[0].user.k",
                 Reason.INVALID_VALUE, id="text-too-long"),
    pytest.param([{"user": {"k": float("nan")}}], "contextFeatures[0].user.k",
                 Reason.INVALID_VALUE, id="not-finite"),
    pytest.param([{"user": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}}], "contextFeatures[0].user.e",
                 Reason.TOO_MANY_FEATURES, id="too-many-features"),
    pytest.param([{"user": {"l": [[1, {"x": "y" * 300}]]}}], "contextFeatures[0].user.l[0][1].x",
                 Reason.INVALID_VALUE, id="deep-path-named"),
]  # fmt: skip


@pytest.mark.parametrize(("features", "field", "reason"), BAD_CONTEXTS)
def test_bad_context_features_are_refused_naming_the_field(
    features: list[Any], field: str, reason: Reason
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        map_context(features, CONFIG, RULES)
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_top_level_scalars_need_the_default_namespace_configured() -> None:
    config = PersonalizerConfig(default_namespace="missing")
    with pytest.raises(InvalidRequest) as caught:
        map_context([{"level": 2}], config, RULES)
    assert caught.value.field == "contextFeatures[0].level"
    assert caught.value.reason == Reason.UNKNOWN_NAMESPACE
    assert "default_namespace 'missing'" in caught.value.detail


ACTION_FEATURES = [
    pytest.param(None, {}, id="none"),
    pytest.param([], {}, id="empty"),
    pytest.param([{"topic": "math"}, {"style": {"tone": "warm"}, "len": 3}],
                 {"topic": "math", "style.tone": "warm", "len": 3}, id="objects-merge-and-flatten"),
    pytest.param([{"tags": ["a", None, True]}], {"tags.0": "a", "tags.2": "true"},
                 id="array-index-null-dropped-boolean-text"),
]  # fmt: skip


@pytest.mark.parametrize(("features", "expected"), ACTION_FEATURES)
def test_action_features_flatten_into_one_mapping(
    features: list[dict[str, Any]] | None, expected: dict[str, Any]
) -> None:
    assert map_action_features(2, features, max_features=4) == expected


BAD_ACTION_FEATURES = [
    pytest.param([{"a": 1}, {"a": 1}], "actions[2].features[1].a", Reason.DUPLICATE_KEY,
                 id="repeat"),
    pytest.param([5], "actions[2].features[0]", Reason.NOT_AN_OBJECT, id="not-an-object"),
    pytest.param([{"a:b": 1}], "actions[2].features[0].a:b", Reason.INVALID_VALUE,
                 id="bad-name"),
    pytest.param([{"a": 1, "b": 2, "c": 3}, {"d": 4, "e": 5}], "actions[2].features[1].e",
                 Reason.TOO_MANY_FEATURES, id="too-many"),
]  # fmt: skip


@pytest.mark.parametrize(("features", "field", "reason"), BAD_ACTION_FEATURES)
def test_bad_action_features_are_refused_naming_the_field(
    features: list[Any], field: str, reason: Reason
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        map_action_features(2, features, max_features=4)
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_excluded_actions_are_not_candidates_and_keep_request_order() -> None:
    assert rank_candidates(["a", "b", "c", "d"], ["d", "b"], 64) == (["a", "c"], ["b", "d"])
    assert rank_candidates(["a", "b"], None, 64) == (["a", "b"], [])


BAD_CANDIDATES = [
    pytest.param([], None, 64, "actions", Reason.EMPTY_ACTIONS, id="no-actions"),
    pytest.param(["a", "b", "a"], None, 64, "actions[2].id", Reason.DUPLICATE_ACTION_ID,
                 id="repeated-id"),
    pytest.param(["a", "b"], ["c"], 64, "excludedActions[0]", Reason.INVALID_VALUE,
                 id="excluded-not-an-action"),
    pytest.param(["a", "b"], ["b", "a"], 64, "excludedActions", Reason.EMPTY_ACTIONS,
                 id="all-excluded"),
    pytest.param(["a", "b", "c"], ["c"], 1, "actions", Reason.TOO_MANY_ACTIONS,
                 id="too-many-candidates"),
]  # fmt: skip


@pytest.mark.parametrize(("ids", "excluded", "limit", "field", "reason"), BAD_CANDIDATES)
def test_bad_candidate_lists_are_refused_naming_the_field(
    ids: list[str], excluded: list[str] | None, limit: int, field: str, reason: Reason
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        rank_candidates(ids, excluded, limit)
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_ranking_is_chosen_then_by_probability_then_excluded_at_zero() -> None:
    ranked = ranking(["a", "b", "c", "d"], [0.1, 0.3, 0.3, 0.3], chosen=2, excluded=["x", "y"])
    assert ranked == [("c", 0.3), ("b", 0.3), ("d", 0.3), ("a", 0.1), ("x", 0.0), ("y", 0.0)]


REWARDS = RewardConfig(helpful=1.0, not_helpful=-1.0, ignored=0.0)
REWARD_VALUES = [
    pytest.param(1.0, OutcomeLabel.HELPFUL, id="exactly-helpful"),
    pytest.param(0.75, OutcomeLabel.HELPFUL, id="nearer-helpful"),
    pytest.param(5.0, OutcomeLabel.HELPFUL, id="beyond-helpful"),
    pytest.param(0.5, OutcomeLabel.IGNORED, id="tie-helpful-ignored"),
    pytest.param(0.25, OutcomeLabel.IGNORED, id="nearer-ignored"),
    pytest.param(0.0, OutcomeLabel.IGNORED, id="exactly-ignored"),
    pytest.param(-0.5, OutcomeLabel.IGNORED, id="tie-not-helpful-ignored"),
    pytest.param(-0.51, OutcomeLabel.NOT_HELPFUL, id="nearer-not-helpful"),
    pytest.param(-3, OutcomeLabel.NOT_HELPFUL, id="integer-beyond-not-helpful"),
]


@pytest.mark.parametrize(("value", "label"), REWARD_VALUES)
def test_reward_value_maps_to_the_nearest_configured_reward(
    value: float, label: OutcomeLabel
) -> None:
    assert reward_outcome(value, REWARDS) == (label, float(value))


def test_a_tie_without_ignored_among_the_nearest_is_still_ignored() -> None:
    rewards = RewardConfig(helpful=1.0, not_helpful=-1.0, ignored=5.0)
    assert reward_outcome(0.0, rewards) == (OutcomeLabel.IGNORED, 0.0)
    assert reward_outcome(0.1, rewards) == (OutcomeLabel.HELPFUL, 0.1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "1"])
def test_a_reward_value_must_be_a_finite_number(value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        reward_outcome(value, REWARDS)
    assert (caught.value.field, caught.value.reason) == ("value", Reason.INVALID_VALUE)
