"""The event contract: valid messages decode to dataclasses, bad ones fail with a stable reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from bandit.errors import InvalidEvent
from bandit.events import (
    EventRules,
    Impression,
    Outcome,
    OutcomeLabel,
    Reason,
    decode_event,
)

RULES = EventRules(namespaces=frozenset({"learner", "course"}))
TS_TEXT = "2026-01-05T08:00:00+00:00"
TS_EPOCH = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC).timestamp()


def impression(**changes: Any) -> dict[str, Any]:
    """A valid impression (two actions, the first chosen at 0.5); keyword arguments override."""
    event: dict[str, Any] = {
        "type": "impression",
        "event_id": "imp-0001",
        "timestamp": TS_TEXT,
        "trigger": "quiz_failed",
        "learner_id": "learner-42",
        "context": {"learner": {"level": 3, "track": "algebra"}},
        "actions": [
            {"id": "hint", "features": {"length": 2, "tone": "warm"}},
            {"id": "none"},
        ],
        "chosen": "hint",
        "probability": 0.5,
        "pmf": [0.5, 0.5],
    }
    event.update(changes)
    return event


def outcome(**changes: Any) -> dict[str, Any]:
    """A valid outcome for `impression()`, a minute later; keyword arguments override."""
    event: dict[str, Any] = {
        "type": "outcome",
        "event_id": "imp-0001",
        "timestamp": "2026-01-05T08:01:00Z",
        "trigger": "quiz_failed",
        "outcome": "helpful",
        "value": 2,
    }
    event.update(changes)
    return event


def without(event: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != key}


def encode(event: Any) -> bytes:
    return orjson.dumps(event)


def reason_of(raw: bytes, rules: EventRules = RULES) -> str:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw, rules)
    return caught.value.reason


# ---- valid events -----------------------------------------------------------------------------


def test_valid_impression_decodes_to_impression_dataclass() -> None:
    event = decode_event(encode(impression()), RULES)

    assert isinstance(event, Impression)
    assert event.event_id == "imp-0001"
    assert event.ts == TS_EPOCH
    assert event.trigger == "quiz_failed"
    assert event.learner_id == "learner-42"
    assert event.context == {"learner": {"level": 3.0, "track": "algebra"}}
    assert event.action_ids == ("hint", "none")
    assert event.action_features == ({"length": 2.0, "tone": "warm"}, {})
    assert event.chosen_index == 0
    assert event.chosen == "hint"
    assert event.probability == 0.5
    assert event.policy_version == "unknown"


def test_impression_chosen_index_points_at_the_chosen_action() -> None:
    event = decode_event(encode(impression(chosen="none")), RULES)

    assert isinstance(event, Impression)
    assert event.chosen_index == 1
    assert event.chosen == "none"


def test_impression_without_pmf_and_with_policy_version_decodes() -> None:
    raw = encode(without(impression(policy_version="vw-2026-01-05"), "pmf"))

    event = decode_event(raw, RULES)

    assert isinstance(event, Impression)
    assert event.policy_version == "vw-2026-01-05"


def test_timestamp_offset_is_converted_to_utc_epoch_seconds() -> None:
    event = decode_event(encode(impression(timestamp="2026-01-05T10:00:00.250+02:00")), RULES)

    assert event.ts == TS_EPOCH + 0.25


def test_valid_outcome_decodes_to_outcome_dataclass() -> None:
    event = decode_event(encode(outcome()), RULES)

    assert isinstance(event, Outcome)
    assert event.event_id == "imp-0001"
    assert event.ts == TS_EPOCH + 60
    assert event.trigger == "quiz_failed"
    assert event.label is OutcomeLabel.HELPFUL
    assert event.value == 2.0


def test_outcome_value_is_optional() -> None:
    event = decode_event(encode(without(outcome(outcome="ignored"), "value")), RULES)

    assert isinstance(event, Outcome)
    assert event.label is OutcomeLabel.IGNORED
    assert event.value is None


def test_message_exactly_at_the_size_limit_is_accepted() -> None:
    raw = encode(impression())
    rules = EventRules(namespaces=RULES.namespaces, max_message_bytes=len(raw))

    assert isinstance(decode_event(raw, rules), Impression)


def test_action_count_equal_to_the_limit_is_accepted() -> None:
    rules = EventRules(namespaces=RULES.namespaces, max_actions=2)

    assert isinstance(decode_event(encode(impression()), rules), Impression)


# ---- bad events -------------------------------------------------------------------------------

THREE_ACTIONS = {
    "actions": [{"id": "hint"}, {"id": "none"}, {"id": "peer"}],
    "pmf": [0.5, 0.25, 0.25],
}
# Python's json module writes NaN/Infinity literals; orjson (and RFC 8259) reject them.
NAN_FEATURE = json.dumps(impression(context={"learner": {"score": float("nan")}})).encode()
INFINITE_PROBABILITY = encode(impression()).replace(b'"probability":0.5', b'"probability":1e999')
assert b"1e999" in INFINITE_PROBABILITY

BAD_EVENTS = [
    # bytes that are not a JSON object
    pytest.param(b"\xff\xfe{}", RULES, Reason.UNDECODABLE, id="not-utf8"),
    pytest.param(b'{"type": "impression",', RULES, Reason.UNDECODABLE, id="truncated-json"),
    pytest.param(b"", RULES, Reason.UNDECODABLE, id="empty-message"),
    pytest.param(NAN_FEATURE, RULES, Reason.UNDECODABLE, id="nan-literal"),
    pytest.param(INFINITE_PROBABILITY, RULES, Reason.UNDECODABLE, id="infinite-number"),
    pytest.param(encode([impression()]), RULES, Reason.NOT_AN_OBJECT, id="json-list"),
    pytest.param(b'"impression"', RULES, Reason.NOT_AN_OBJECT, id="json-string"),
    pytest.param(b"null", RULES, Reason.NOT_AN_OBJECT, id="json-null"),
    # shape
    pytest.param(encode(impression(type="click")), RULES, Reason.UNKNOWN_EVENT_TYPE,
                 id="unknown-event-type"),
    pytest.param(encode(without(impression(), "type")), RULES, Reason.MISSING_FIELD,
                 id="missing-type"),
    pytest.param(encode(without(impression(), "chosen")), RULES, Reason.MISSING_FIELD,
                 id="missing-chosen"),
    pytest.param(encode(without(outcome(), "outcome")), RULES, Reason.MISSING_FIELD,
                 id="missing-outcome-label"),
    pytest.param(encode(impression(campaign="spring")), RULES, Reason.UNKNOWN_FIELD,
                 id="unknown-field"),
    pytest.param(encode(impression(actions=[{"id": "hint", "weight": 1}, {"id": "none"}])),
                 RULES, Reason.UNKNOWN_FIELD, id="unknown-action-field"),
    pytest.param(encode(impression(probability="high")), RULES, Reason.WRONG_TYPE,
                 id="probability-not-a-number"),
    pytest.param(encode(impression(actions="hint")), RULES, Reason.WRONG_TYPE,
                 id="actions-not-a-list"),
    pytest.param(encode(impression(event_id=1001)), RULES, Reason.WRONG_TYPE,
                 id="event-id-not-a-string"),
    pytest.param(encode(impression(context={"learner": {"level": [1, 2]}})), RULES,
                 Reason.WRONG_TYPE, id="feature-value-a-list"),
    pytest.param(encode(outcome(value="lots")), RULES, Reason.WRONG_TYPE,
                 id="outcome-value-not-a-number"),
    # decision semantics
    pytest.param(encode(impression(probability=0, pmf=None)), RULES,
                 Reason.PROBABILITY_OUT_OF_RANGE, id="probability-zero"),
    pytest.param(encode(impression(probability=1.5, pmf=None)), RULES,
                 Reason.PROBABILITY_OUT_OF_RANGE, id="probability-above-one"),
    pytest.param(encode(impression(probability=-0.5, pmf=None)), RULES,
                 Reason.PROBABILITY_OUT_OF_RANGE, id="probability-negative"),
    pytest.param(encode(impression(chosen="peer")), RULES, Reason.CHOSEN_NOT_IN_ACTIONS,
                 id="chosen-not-in-actions"),
    pytest.param(encode(impression(actions=[], pmf=None)), RULES, Reason.EMPTY_ACTIONS,
                 id="empty-actions"),
    pytest.param(encode(impression(actions=[{"id": "hint"}, {"id": "hint"}])), RULES,
                 Reason.DUPLICATE_ACTION_ID, id="duplicate-action-ids"),
    pytest.param(encode(impression(pmf=[0.5, 0.25, 0.25])), RULES, Reason.PMF_INVALID,
                 id="pmf-wrong-length"),
    pytest.param(encode(impression(pmf=[0.5, 0.4])), RULES, Reason.PMF_INVALID,
                 id="pmf-not-summing-to-one"),
    pytest.param(encode(impression(pmf=[1.5, -0.5], probability=1.0)), RULES, Reason.PMF_INVALID,
                 id="pmf-entry-out-of-range"),
    pytest.param(encode(impression(pmf=[0.3, 0.7])), RULES, Reason.PMF_INVALID,
                 id="pmf-disagrees-with-probability"),
    # timestamps
    pytest.param(encode(impression(timestamp="2026-01-05T08:00:00")), RULES, Reason.BAD_TIMESTAMP,
                 id="naive-timestamp"),
    pytest.param(encode(impression(timestamp=1767600000)), RULES, Reason.BAD_TIMESTAMP,
                 id="impression-epoch-number-timestamp"),
    pytest.param(encode(impression(probability="0.5", pmf=None)), RULES, Reason.WRONG_TYPE,
                 id="impression-probability-as-text"),
    pytest.param(encode(impression(timestamp="last tuesday")), RULES, Reason.BAD_TIMESTAMP,
                 id="unparseable-timestamp"),
    pytest.param(encode(outcome(timestamp="2026-13-05T08:00:00Z")), RULES, Reason.BAD_TIMESTAMP,
                 id="impossible-date"),
    # identifiers and names
    pytest.param(encode(impression(event_id="imp 0001")), RULES, Reason.INVALID_VALUE,
                 id="id-with-space"),
    pytest.param(encode(impression(learner_id="learner|42")), RULES, Reason.INVALID_VALUE,
                 id="id-with-pipe"),
    pytest.param(encode(impression(actions=[{"id": "hint:v2"}, {"id": "none"}], chosen="none")),
                 RULES, Reason.INVALID_VALUE, id="action-id-with-colon"),
    pytest.param(encode(outcome(trigger="")), RULES, Reason.INVALID_VALUE, id="empty-id"),
    pytest.param(encode(impression(context={"learner": {"prior score": 1}})), RULES,
                 Reason.INVALID_VALUE, id="feature-name-with-space"),
    pytest.param(encode(outcome(outcome="loved_it")), RULES, Reason.INVALID_VALUE,
                 id="outcome-label-not-in-enum"),
    # rules
    pytest.param(encode(impression(context={"planet": {"mass": 1}})), RULES,
                 Reason.UNKNOWN_NAMESPACE, id="unknown-namespace"),
    pytest.param(encode(impression(**THREE_ACTIONS)),
                 EventRules(namespaces=RULES.namespaces, max_actions=2),
                 Reason.TOO_MANY_ACTIONS, id="too-many-actions"),
    pytest.param(encode(impression()), EventRules(namespaces=RULES.namespaces, max_features=1),
                 Reason.TOO_MANY_FEATURES, id="too-many-features"),
    pytest.param(encode(impression()), EventRules(namespaces=RULES.namespaces,
                                                  max_message_bytes=len(encode(impression())) - 1),
                 Reason.TOO_LARGE, id="message-too-large"),
    pytest.param(b"\xff" * 300, EventRules(namespaces=RULES.namespaces, max_message_bytes=256),
                 Reason.TOO_LARGE, id="size-checked-before-parsing"),
    # a repeated key: orjson would keep the last value silently
    pytest.param(encode(outcome())[:-1] + b',"type":"impression"}', RULES, Reason.DUPLICATE_KEY,
                 id="repeated-top-level-key"),
    pytest.param(encode(impression()).replace(b'"level":3', b'"level":3,"level":4'), RULES,
                 Reason.DUPLICATE_KEY, id="repeated-nested-key"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "rules", "reason"), BAD_EVENTS)
def test_bad_event_is_rejected_with_its_reason_code(
    raw: bytes, rules: EventRules, reason: Reason
) -> None:
    assert reason_of(raw, rules) == reason.value


def test_every_decoding_reason_code_is_covered_by_the_table() -> None:
    join_only = {
        Reason.IMPLAUSIBLE_EVENT_TIME,
        Reason.JOIN_STATE_FULL,
        Reason.DUPLICATE_IMPRESSION,
        Reason.DUPLICATE_OUTCOME,
        Reason.LATE_OUTCOME,
        Reason.UNMATCHED_OUTCOME,
        Reason.TRIGGER_MISMATCH,
    }
    covered = {p.values[2] for p in BAD_EVENTS}

    assert covered == set(Reason) - join_only


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(encode(impression(probability="high")), "impression.probability",
                     id="wrong-type"),
        pytest.param(encode(without(impression(), "chosen")), "impression.chosen", id="missing"),
        pytest.param(encode(impression(event_id="imp 0001")), "impression.event_id",
                     id="bad-identifier"),
        pytest.param(encode(outcome(outcome="loved_it")), "outcome.outcome", id="bad-enum"),
        pytest.param(encode(impression(timestamp="2026-01-05T08:00:00")), "impression.timestamp",
                     id="naive-timestamp"),
        pytest.param(encode(impression(context={"learner": {"level": [1]}})),
                     "impression.context.learner.level", id="nested-feature"),
    ],
)  # fmt: skip
def test_detail_names_the_offending_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw, RULES)

    assert caught.value.detail.startswith(field)
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        pytest.param(lambda e: e.update(chosen="peer"), ["'peer'", "hint", "none"],
                     id="chosen-not-in-actions"),
        pytest.param(lambda e: e.update(actions=[{"id": "hint"}, {"id": "hint"}]), ["'hint'"],
                     id="duplicate-action-ids"),
        pytest.param(lambda e: e.update(context={"planet": {"mass": 1}}), ["planet"],
                     id="unknown-namespace"),
    ],
)  # fmt: skip
def test_detail_names_the_offending_value(
    change: Callable[[dict[str, Any]], None], mentions: list[str]
) -> None:
    event = impression()
    change(event)

    with pytest.raises(InvalidEvent) as caught:
        decode_event(encode(event), RULES)

    for text in mentions:
        assert text in caught.value.detail


def test_invalid_event_message_starts_with_the_reason_code() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(encode(impression(probability=0, pmf=None)), RULES)

    assert str(caught.value).startswith("probability_out_of_range: ")


@pytest.mark.parametrize("depth", [254, 255, 1000])
def test_nesting_orjson_reads_but_cannot_write_back_is_refused_with_a_reason_not_a_crash(
    depth: int,
) -> None:
    # Found by the fault campaign's fuzzing: the duplicate-key check re-serialises what orjson
    # parsed, and orjson.dumps raised TypeError (recursion limit) on 255 levels that
    # orjson.loads accepted: the consumer crashed on that message at every restart.
    raw = b'{"type":"impression","x":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw, RULES)
    assert caught.value.reason in {"undecodable", "missing_field", "unknown_field"}
