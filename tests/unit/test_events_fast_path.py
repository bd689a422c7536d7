"""The fast decoding path agrees with pydantic: same event, or the same reason and detail.

`decode_event` builds events without pydantic when its fast checks pass and asks pydantic
otherwise; `decode_event_reference` always asks pydantic. Hypothesis generates valid events
and mutations of them (wrong types, missing and extra fields, odd timestamps and unicode,
ints for floats, bools, huge numbers, repeated ids, pmfs off) and both must give the same
answer. Events are compared by `repr`, which tells 1 from 1.0 from True and 0.0 from -0.0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit import events
from bandit.config import Config
from bandit.errors import InvalidEvent
from bandit.events import (
    EventRules,
    Impression,
    ImpressionIn,
    OutcomeIn,
    decode_event,
    decode_event_reference,
)
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from tests.unit.property_settings import PROPERTY

RULES = EventRules(namespaces=frozenset({"learner", "course"}))
TIGHT = EventRules(namespaces=frozenset({"learner"}), max_actions=3, max_features=2)


def answer(decode: Callable[[bytes, EventRules], object], raw: bytes, rules: EventRules) -> str:
    """What a decoder makes of `raw`: the event's repr, or the refusal's reason and detail."""
    try:
        return repr(decode(raw, rules))
    except InvalidEvent as exc:
        return f"refused {exc.reason}: {exc.detail}"


def assert_agree(raw: bytes, rules: EventRules = RULES) -> str:
    fast = answer(decode_event, raw, rules)
    assert fast == answer(decode_event_reference, raw, rules)
    return fast


# ---- strategies -------------------------------------------------------------------------------

# Characters where the readings of the id patterns could part: white space by one definition
# and not the other (U+001C..U+001F, U+180E, U+200B), the forbidden | : =, controls, non-ASCII.
ODD_CHARS = "\t\n\x0b\x1c\x1f \x85\xa0\u1680\u180e\u2000\u200b\u2028\u3000|:=\x00\x7fé漢😀"
SAFE_CHARS = st.sampled_from("abcxyz019-_./")
ids = st.one_of(
    st.text(SAFE_CHARS, min_size=1, max_size=12),
    st.text(SAFE_CHARS, min_size=60, max_size=70),
    st.text(SAFE_CHARS, min_size=125, max_size=131),
    st.text(st.one_of(SAFE_CHARS, st.sampled_from(ODD_CHARS)), max_size=8),
    st.text(max_size=8),
)
names = st.one_of(st.sampled_from(["level", "tone", "kind", "x"]), ids)
huge_ints = st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63), 2**64 - 1])
feature_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-1000, 1000),
    huge_ints,
    st.booleans(),
    st.text(max_size=5),
    st.sampled_from(["1.5", "nan", "inf", "1e999", " 2 ", "1" * 257, "a" * 256, "a" * 257]),
    st.none(),
    st.just([1]),
    st.just({"a": 1}),
)
groups = st.dictionaries(names, feature_values, max_size=4)
plain_groups = st.dictionaries(
    st.sampled_from(["level", "tone", "kind", "x", "y"]),
    st.one_of(st.floats(-1e6, 1e6), st.text(SAFE_CHARS, max_size=6)),
    max_size=3,
)


DATES = ["2026-01-05", "2024-02-29", "2026-02-29", "2026-13-05", "0001-01-01", "9999-12-31",
         "0000-01-01", "1969-12-31", "2026-1-05", "٢٠٢٦-01-05", "2026-01-32"]  # fmt: skip


@st.composite
def timestamps(draw: st.DrawFn) -> Any:
    """RFC 3339 text in the spellings producers write and many they should not."""
    date = draw(st.sampled_from(DATES))
    sep = draw(st.sampled_from(["T", "T", "t", " ", "_"]))
    clock = draw(st.sampled_from(["08:00:00", "23:59:59", "00:00:00", "24:00:00", "08:00:60"]))
    clock = draw(st.sampled_from([clock, clock[:5], "0800", "08:0:00"]))
    fraction = draw(st.sampled_from(["", ".5", ".697", ".123456", ".1234567", ",5", "."]))
    zone = draw(
        st.sampled_from(["Z", "+00:00", "z", "-00:00", "+02:00", "-23:59", "+24:00", "+0100"])
        | st.sampled_from(["+01", "", "+01:00:00", "+1:00", "-05:30"])
    )
    text = date + sep + clock + fraction + zone
    return draw(st.sampled_from([text, text, text, "1767600000", 1767600000, None]))


def valid_impression(draw: st.DrawFn) -> dict[str, Any]:
    """An impression both paths accept (plain ids, floats or short text, a good pmf)."""
    n = draw(st.integers(1, 4))
    action_ids = draw(st.lists(st.text(SAFE_CHARS, min_size=1, max_size=6), min_size=n,
                               max_size=n, unique=True))  # fmt: skip
    actions: list[dict[str, Any]] = []
    for action_id in action_ids:
        action: dict[str, Any] = {"id": action_id}
        if draw(st.booleans()):
            action["features"] = draw(plain_groups)
        actions.append(action)
    chosen = draw(st.integers(0, n - 1))
    event: dict[str, Any] = {
        "type": "impression",
        "event_id": draw(st.text(SAFE_CHARS, min_size=1, max_size=10)),
        "timestamp": draw(st.sampled_from(["2026-01-05T08:00:00.697+00:00", "2026-01-05T08:00:00Z",
                                           "2026-01-05T10:00:00.25-02:00"])),
        "trigger": draw(st.sampled_from(["quiz_failed", "A/final/final-passed"])),
        "learner_id": draw(st.text(SAFE_CHARS, min_size=1, max_size=8)),
        "context": draw(st.dictionaries(st.sampled_from(["learner", "course"]), plain_groups,
                                        max_size=2)),
        "actions": actions,
        "chosen": action_ids[chosen],
        "probability": 1.0 / n,
        "pmf": [1.0 / n] * n,
    }  # fmt: skip
    if draw(st.booleans()):
        event["policy_version"] = draw(st.text(SAFE_CHARS, max_size=10))
    if draw(st.booleans()):
        event["why"] = draw(st.sampled_from(["exploit", "explore", "forced", None]))
    return event


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.just([]),
    st.just({}),
)


@st.composite
def mutated_impressions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid impression with up to three changes, each a way producers get it wrong."""
    event = valid_impression(draw)
    for _ in range(draw(st.integers(0, 3))):
        change = draw(st.sampled_from(IMPRESSION_CHANGES))
        change(draw, event)
    return event


def _set(field: str, values: st.SearchStrategy[Any]) -> Callable[[st.DrawFn, dict[str, Any]], None]:
    def change(draw: st.DrawFn, event: dict[str, Any]) -> None:
        event[field] = draw(values)

    return change


def _drop(draw: st.DrawFn, event: dict[str, Any]) -> None:
    event.pop(draw(st.sampled_from(sorted(event))))


def _extra(draw: st.DrawFn, event: dict[str, Any]) -> None:
    event[draw(st.sampled_from(["campaign", "Type", "value", "outcome"]))] = draw(ANY_VALUE)


def _action_change(draw: st.DrawFn, event: dict[str, Any]) -> None:
    actions = event.get("actions")
    if not isinstance(actions, list) or not actions:
        return
    i = draw(st.integers(0, len(actions) - 1))
    kind = draw(st.sampled_from(["id", "features", "extra", "repeat", "drop", "not-a-dict"]))
    if not isinstance(actions[i], dict) or kind == "not-a-dict":
        actions[i] = draw(ANY_VALUE)
    elif kind == "id":
        actions[i]["id"] = draw(st.one_of(ids, ANY_VALUE))
    elif kind == "features":
        actions[i]["features"] = draw(st.one_of(groups, ANY_VALUE))
    elif kind == "extra":
        actions[i]["weight"] = 1
    elif kind == "repeat":
        actions.append(dict(actions[i]))
    else:
        actions[i].pop("id", None)


def _context_change(draw: st.DrawFn, event: dict[str, Any]) -> None:
    ns = draw(st.sampled_from(["learner", "course", "planet", "bad ns", "a=b", ""]))
    event.setdefault("context", {})
    if isinstance(event["context"], dict):
        event["context"][ns] = draw(st.one_of(groups, ANY_VALUE))


def _pmf_change(draw: st.DrawFn, event: dict[str, Any]) -> None:
    pmf = event.get("pmf")
    if not isinstance(pmf, list) or not pmf:
        return
    i = draw(st.integers(0, len(pmf) - 1))
    pmf[i] = draw(st.sampled_from([pmf[i] + 1e-7, pmf[i] + 1e-5, 1, 0, True, -0.0, "0.5", 2]))


def _chosen_change(draw: st.DrawFn, event: dict[str, Any]) -> None:
    event["chosen"] = draw(st.one_of(ids, ANY_VALUE))


IMPRESSION_CHANGES: list[Callable[[st.DrawFn, dict[str, Any]], None]] = [
    _set("timestamp", timestamps()),
    _set("timestamp", timestamps()),
    _set("event_id", st.one_of(ids, ANY_VALUE)),
    _set("trigger", ids),
    _set("learner_id", ids),
    _set("probability", st.one_of(ANY_VALUE, st.sampled_from([1, 1.0, 0.5, 0, 1.0000001]))),
    _set("pmf", st.one_of(st.none(), st.lists(st.floats(0, 1) | st.integers(0, 1)), ANY_VALUE)),
    _set("policy_version", st.one_of(st.sampled_from(["v" * 128, "v" * 129]), ANY_VALUE)),
    _set("why", st.one_of(st.sampled_from(["exploit", "retest", "Exploit"]), ANY_VALUE)),
    _set("type", st.sampled_from(["impression", "outcome", "click", 1, None])),
    _set("context", st.one_of(st.dictionaries(names, groups, max_size=2), ANY_VALUE)),
    _set("actions", st.one_of(st.just([]), ANY_VALUE)),
    _drop,
    _extra,
    _action_change,
    _action_change,
    _context_change,
    _context_change,
    _pmf_change,
    _chosen_change,
]


@st.composite
def outcomes(draw: st.DrawFn) -> dict[str, Any]:
    """An outcome, valid or with a field changed, dropped or added."""
    event: dict[str, Any] = {
        "type": "outcome",
        "event_id": draw(st.text(SAFE_CHARS, min_size=1, max_size=10)),
        "timestamp": "2026-01-05T08:01:00Z",
        "trigger": "quiz_failed",
        "outcome": draw(st.sampled_from(["helpful", "not_helpful", "ignored"])),
    }
    if draw(st.booleans()):
        event["value"] = draw(st.one_of(st.floats(-1e6, 1e6), st.integers(0, 5), st.none()))
    for _ in range(draw(st.integers(0, 2))):
        field = draw(st.sampled_from([*sorted(event), "value", "extra"]))
        if draw(st.booleans()) and field in event:
            del event[field]
        elif field == "timestamp":
            event[field] = draw(timestamps())
        elif field == "outcome":
            event[field] = draw(st.one_of(st.sampled_from(["HELPFUL", "helpful ", "ignored"]),
                                          ANY_VALUE))  # fmt: skip
        elif field == "value":
            event[field] = draw(st.one_of(ANY_VALUE, st.sampled_from(["2.5", "nan", 10**30])))
        else:
            event[field] = draw(st.one_of(ids, ANY_VALUE))
    return event


def encode(event: dict[str, Any], spaced: bool) -> bytes:
    """The event as JSON; `spaced` writes it as Python's json module does (with blanks), which
    takes the other branch of the duplicate-key check."""
    return json.dumps(event).encode() if spaced else orjson.dumps(event)


# ---- properties -------------------------------------------------------------------------------


@PROPERTY
@given(event=mutated_impressions(), rules=st.sampled_from([RULES, TIGHT]), spaced=st.booleans())
def test_fast_and_pydantic_paths_agree_on_impressions(
    event: dict[str, Any], rules: EventRules, spaced: bool
) -> None:
    assert_agree(encode(event, spaced), rules)


@PROPERTY
@given(event=outcomes(), spaced=st.booleans())
def test_fast_and_pydantic_paths_agree_on_outcomes(event: dict[str, Any], spaced: bool) -> None:
    assert_agree(encode(event, spaced))


@settings(PROPERTY, max_examples=100)
@given(event=st.composite(valid_impression)())
def test_valid_impressions_are_built_by_the_fast_path(event: dict[str, Any]) -> None:
    built = events._fast_impression(orjson.loads(orjson.dumps(event)), RULES)

    assert built is not None
    assert repr(built) == answer(decode_event_reference, orjson.dumps(event), RULES)


# ---- the edges, one by one ----------------------------------------------------------------------


def impression(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "impression",
        "event_id": "imp-0001",
        "timestamp": "2026-01-05T08:00:00+00:00",
        "trigger": "quiz_failed",
        "learner_id": "learner-42",
        "context": {"learner": {"level": 3.0, "track": "algebra"}},
        "actions": [{"id": "hint", "features": {"length": 2.0}}, {"id": "none"}],
        "chosen": "hint",
        "probability": 0.5,
        "pmf": [0.5, 0.5],
    }
    event.update(changes)
    return event


def with_feature(value: Any) -> dict[str, Any]:
    return impression(context={"learner": {"level": value}})


EDGES = [
    pytest.param(impression(), id="plain"),
    pytest.param(with_feature(3), id="int-feature-becomes-float"),
    pytest.param(with_feature(True), id="bool-feature-becomes-float"),
    pytest.param(with_feature(2**53 + 1), id="int-beyond-exact-floats"),
    pytest.param(with_feature(2**64 - 1), id="uint64-feature"),
    pytest.param(with_feature("1.5"), id="numeric-text-stays-text"),
    pytest.param(with_feature("1" * 300), id="long-numeric-text"),
    pytest.param(with_feature("a" * 256), id="text-at-its-limit"),
    pytest.param(with_feature(-0.0), id="negative-zero"),
    pytest.param(with_feature(None), id="null-feature"),
    pytest.param(impression(probability=1, pmf=None, actions=[{"id": "hint"}]), id="int-probability"),
    pytest.param(impression(probability=True), id="bool-probability"),
    pytest.param(impression(pmf=[1, 0], probability=1.0), id="int-pmf"),
    pytest.param(impression(pmf=[True, False], probability=1.0), id="bool-pmf"),
    pytest.param(impression(pmf=[0.5 + 1e-7, 0.5]), id="pmf-within-tolerance"),
    pytest.param(impression(pmf=[]), id="empty-pmf"),
    pytest.param(impression(event_id="a\x1cb"), id="id-with-python-only-white-space"),
    pytest.param(impression(event_id="a\u180eb"), id="id-with-former-white-space"),
    pytest.param(impression(learner_id="a\x85b"), id="id-with-next-line"),
    pytest.param(impression(trigger="x" * 128), id="id-at-its-limit"),
    pytest.param(impression(trigger="x" * 129), id="id-beyond-its-limit"),
    pytest.param(impression(context={"learner": {"n=1": 1.0}}), id="feature-name-with-equals"),
    pytest.param(impression(policy_version="v" * 129), id="long-policy-version"),
    pytest.param(impression(why=None), id="why-null"),
    pytest.param(impression(context=None), id="context-null"),
    pytest.param(impression(actions=[{"id": "hint", "features": None}, {"id": "none"}]),
                 id="features-null"),
    pytest.param(impression(timestamp="2026-01-05T08:00:00.1234567Z"), id="seven-digit-fraction"),
    pytest.param(impression(timestamp="2026-01-05 08:00:00Z"), id="space-separator"),
    pytest.param(impression(timestamp="2026-01-05T08:00:00+0100"), id="offset-without-colon"),
    pytest.param(impression(timestamp="2026-02-29T08:00:00Z"), id="no-such-day"),
    pytest.param(impression(timestamp="1767600000"), id="epoch-as-text"),
    pytest.param(impression(timestamp="0001-01-01T00:00:00+01:00"), id="before-year-one-in-utc"),
    pytest.param(impression(timestamp="2026-01-05T08:00:00-00:00"), id="unknown-local-offset"),
]  # fmt: skip


@pytest.mark.parametrize("event", EDGES)
def test_fast_and_pydantic_paths_agree_on_an_edge(event: dict[str, Any]) -> None:
    assert_agree(orjson.dumps(event))


def test_wire_fields_known_to_the_fast_path_are_the_models_fields() -> None:
    assert set(ImpressionIn.model_fields) == events._IMPRESSION_FIELDS
    assert set(OutcomeIn.model_fields) == events._OUTCOME_FIELDS


def test_a_remembered_action_list_is_still_held_to_the_rules() -> None:
    raw = orjson.dumps(impression())
    assert isinstance(decode_event(raw, RULES), Impression)  # remembered now

    one_action = EventRules(namespaces=RULES.namespaces, max_actions=1)
    no_features = EventRules(namespaces=RULES.namespaces, max_features=0)

    assert assert_agree(raw, one_action).startswith("refused too_many_actions")
    assert assert_agree(raw, no_features).startswith("refused too_many_features")


@pytest.mark.parametrize(
    "context",
    [
        pytest.param({"learner": {"a": 1.0, "b": "x", "c": 2.0}}, id="plain"),
        pytest.param({"learner": {"a": 1, "b": "x", "c": 2}}, id="converted"),
    ],
)
def test_a_context_group_wider_than_the_limit_is_refused_alike(context: dict[str, Any]) -> None:
    raw = orjson.dumps(impression(context=context, actions=[{"id": "hint"}, {"id": "none"}]))

    refusal = assert_agree(raw, EventRules(namespaces=RULES.namespaces, max_features=2))

    assert refusal.startswith("refused too_many_features")


def test_an_action_list_with_converted_features_is_built_alike_each_time() -> None:
    actions = [{"id": "hint", "features": {"n": 2}}]
    raw = orjson.dumps(impression(actions=actions, probability=1.0, pmf=None))

    first, second = assert_agree(raw), assert_agree(raw)

    assert first == second
    assert "'n': 2.0" in first


def test_realistic_messages_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated traffic as the platform logs it: pydantic is never needed for it.
    def pydantic_called(data: dict[str, Any], rules: EventRules) -> Any:
        raise AssertionError(f"asked pydantic for {data}")

    config = Config()
    sim = config.simulator
    run = simulate_traffic(World(3, sim.learners, sim.courses), sim, config.join, 50, 3)
    monkeypatch.setattr(events, "_validated", pydantic_called)

    decoded = [decode_event(m.value, config.event_rules()) for m in run.messages]

    assert len(decoded) == len(run.messages) > 50


def test_refused_messages_still_get_pydantic_wording() -> None:
    raw = orjson.dumps(impression(event_id="imp 0001"))

    refusal = assert_agree(raw)

    assert refusal.startswith("refused invalid_value: impression.event_id: String should match")
