"""Unit tests of what the learner records besides its models (`bandit.catalogue`)."""

from __future__ import annotations

import random

import orjson
import pytest

from bandit.catalogue import ActionCatalogue, ReactionCounts
from bandit.events import Impression

Features = dict[str, float | str]


def impression(
    trigger: str,
    actions: dict[str, Features],
    event_id: str = "e1",
    learner_id: str = "learner-1",
) -> Impression:
    ids = tuple(actions)
    return Impression(
        event_id=event_id,
        ts=1_767_600_000.0,
        trigger=trigger,
        learner_id=learner_id,
        context={"learner": {"level": "novice"}},
        action_ids=ids,
        action_features=tuple(actions.values()),
        chosen_index=0,
        probability=1 / len(ids),
        policy_version="v1",
    )


# ---- action catalogue ---------------------------------------------------------------------------


def test_observe_records_the_candidates_of_each_trigger_with_their_features() -> None:
    catalogue = ActionCatalogue()

    catalogue.observe(impression("quiz", {"hint": {"kind": "hint", "len": 3.0}, "none": {}}))
    catalogue.observe(impression("idle", {"encourage": {"tone": "friendly"}, "none": {}}))

    assert catalogue.triggers == {"quiz": ["hint", "none"], "idle": ["encourage", "none"]}
    assert catalogue.actions == {
        "hint": {"kind": "hint", "len": 3.0},
        "encourage": {"tone": "friendly"},
        "none": {},
    }


def test_observe_adds_new_candidates_of_a_trigger_in_first_seen_order_without_duplicates() -> None:
    catalogue = ActionCatalogue()

    catalogue.observe(impression("quiz", {"hint": {}, "none": {}}))
    catalogue.observe(impression("quiz", {"review.v2": {}, "hint": {}, "none": {}}))
    catalogue.observe(impression("quiz", {"hint": {}, "none": {}}, event_id="e2"))
    catalogue.observe(impression("quiz", {"none": {}, "peer": {}}))

    assert catalogue.triggers == {"quiz": ["hint", "none", "review.v2", "peer"]}


def test_observe_keeps_the_latest_features_of_an_action() -> None:
    catalogue = ActionCatalogue()

    catalogue.observe(impression("quiz", {"hint": {"tone": "instructive"}, "none": {}}))
    catalogue.observe(impression("quiz", {"hint": {"tone": "friendly"}, "none": {}}))

    assert catalogue.actions["hint"] == {"tone": "friendly"}
    assert catalogue.triggers == {"quiz": ["hint", "none"]}


def test_observe_copies_features_so_later_changes_to_the_event_do_not_leak_in() -> None:
    features: Features = {"tone": "friendly"}
    catalogue = ActionCatalogue()

    catalogue.observe(impression("quiz", {"hint": features}))
    features["tone"] = "changed"

    assert catalogue.actions["hint"] == {"tone": "friendly"}


def test_features_another_trigger_changed_are_restored_when_a_seen_set_comes_back() -> None:
    catalogue = ActionCatalogue()
    quiz = impression("quiz", {"hint": {"tone": "instructive"}, "none": {}})

    catalogue.observe(quiz)
    catalogue.observe(quiz)  # nothing new: the fast path
    catalogue.observe(impression("idle", {"hint": {"tone": "friendly"}}))
    assert catalogue.actions["hint"] == {"tone": "friendly"}
    catalogue.observe(quiz)  # seen before, but the latest features of hint are idle's

    assert catalogue.actions["hint"] == {"tone": "instructive"}
    assert catalogue.triggers == {"quiz": ["hint", "none"], "idle": ["hint"]}


def test_observe_records_the_same_as_checking_every_action_on_random_traffic() -> None:
    """The fast path (nothing written since the set was checked) against the plain rule: the
    catalogue always holds each action's features from the last impression that offered it."""
    rng = random.Random(4)
    catalogue = ActionCatalogue()
    latest: dict[str, Features] = {}
    for k in range(2000):
        ids = rng.sample(["hint", "peer", "video", "none"], rng.randint(1, 3))
        offered: dict[str, Features] = {
            a: {"tone": rng.choice(["warm", "cold"])} if a != "none" else {} for a in ids
        }
        catalogue.observe(impression(rng.choice(["quiz", "idle"]), offered, event_id=f"e{k}"))
        latest.update(offered)
        assert catalogue.actions == latest


def test_catalogue_round_trips_through_json() -> None:
    catalogue = ActionCatalogue()
    catalogue.observe(impression("quiz", {"hint": {"kind": "hint", "len": 3.0}, "none": {}}))
    catalogue.observe(impression("idle", {"encourage": {"tone": "friendly"}, "none": {}}))

    data = orjson.loads(orjson.dumps(catalogue.to_json()))
    restored = ActionCatalogue.from_json(data)

    assert restored.actions == catalogue.actions
    assert restored.triggers == catalogue.triggers
    assert restored.to_json() == catalogue.to_json()


def test_restored_catalogue_keeps_learning() -> None:
    restored = ActionCatalogue.from_json(
        {"actions": {"hint": {"kind": "hint"}}, "triggers": {"quiz": ["hint"]}}
    )

    restored.observe(impression("quiz", {"hint": {"kind": "hint"}, "none": {}}))

    assert restored.triggers == {"quiz": ["hint", "none"]}


def test_from_json_copies_its_input() -> None:
    data = {"actions": {"hint": {"kind": "hint"}}, "triggers": {"quiz": ["hint"]}}
    catalogue = ActionCatalogue.from_json(data)

    data["actions"]["hint"]["kind"] = "changed"
    data["triggers"]["quiz"].append("none")

    assert catalogue.actions == {"hint": {"kind": "hint"}}
    assert catalogue.triggers == {"quiz": ["hint"]}


@pytest.mark.parametrize("data", [{}, {"actions": {}}, {"triggers": {}}])
def test_from_json_of_an_empty_or_partial_document_is_an_empty_catalogue(
    data: dict[str, object],
) -> None:
    catalogue = ActionCatalogue.from_json(data)

    assert catalogue.to_json() == {"actions": {}, "triggers": {}}


# ---- reaction counts ----------------------------------------------------------------------------


def test_reaction_counts_count_each_learner_up_to_the_cap() -> None:
    counts = ReactionCounts(cap=3)

    for _ in range(5):
        counts.record("ann")
    counts.record("bob")

    assert counts.get("ann") == 3
    assert counts.get("bob") == 1
    assert counts.get("never-seen") == 0
    assert counts.to_json() == {"ann": 3, "bob": 1}


def test_cap_zero_turns_counting_off_and_keeps_nothing() -> None:
    counts = ReactionCounts(cap=0, counts={"ann": 4})

    for _ in range(3):
        counts.record("bob")

    assert counts.get("ann") == 0
    assert counts.get("bob") == 0
    assert counts.to_json() == {}


def test_restored_counts_are_capped_and_keep_counting() -> None:
    counts = ReactionCounts(cap=2, counts={"ann": 7, "bob": 1, "cy": 0})

    assert counts.to_json() == {"ann": 2, "bob": 1, "cy": 0}
    counts.record("bob")
    counts.record("bob")
    counts.record("cy")
    assert counts.to_json() == {"ann": 2, "bob": 2, "cy": 1}


def test_reaction_counts_round_trip_through_json_and_to_json_is_a_copy() -> None:
    counts = ReactionCounts(cap=5)
    counts.record("ann")
    counts.record("ann")

    saved = counts.to_json()
    restored = ReactionCounts(5, orjson.loads(orjson.dumps(saved)))
    counts.record("ann")

    assert saved == {"ann": 2}
    assert restored.to_json() == {"ann": 2}
    assert counts.get("ann") == 3
