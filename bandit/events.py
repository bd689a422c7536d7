"""The event contract: impressions and outcomes, validated at the edge, plain dataclasses inside.

Wire format is one JSON object per message, discriminated by `type`. Decoding is
`decode_event(raw, rules)`: orjson parses, pydantic validates, and every violation raises
`InvalidEvent` with a stable `Reason` code, so dead letters can be counted and replayed.
A message the fast checks of `bandit.fast_events` accept is built straight from orjson's dict
(no pydantic models: about twice as fast in all); any other goes through pydantic, which
alone words every refusal, so both paths accept, build and refuse alike.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import KeysView, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from bandit.errors import InvalidEvent
from bandit.fast_events import (
    TextRule,
    converted_group,
    epoch_seconds,
    number,
    numbers,
    plain_groups,
    remember,
)
from bandit.value_types import value_type


class Reason(StrEnum):
    """Stable reason codes for rejected or dead-lettered messages."""

    UNDECODABLE = "undecodable"
    TOO_LARGE = "too_large"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    BAD_TIMESTAMP = "bad_timestamp"
    EMPTY_ACTIONS = "empty_actions"
    TOO_MANY_ACTIONS = "too_many_actions"
    TOO_MANY_FEATURES = "too_many_features"
    DUPLICATE_ACTION_ID = "duplicate_action_id"
    CHOSEN_NOT_IN_ACTIONS = "chosen_not_in_actions"
    PROBABILITY_OUT_OF_RANGE = "probability_out_of_range"
    PMF_INVALID = "pmf_invalid"
    UNKNOWN_NAMESPACE = "unknown_namespace"
    DUPLICATE_KEY = "duplicate_key"
    # Raised by the event-time guard and the reward join rather than by decoding:
    IMPLAUSIBLE_EVENT_TIME = "implausible_event_time"
    DUPLICATE_IMPRESSION = "duplicate_impression"
    DUPLICATE_OUTCOME = "duplicate_outcome"
    LATE_OUTCOME = "late_outcome"
    UNMATCHED_OUTCOME = "unmatched_outcome"
    TRIGGER_MISMATCH = "trigger_mismatch"
    JOIN_STATE_FULL = "join_state_full"


class OutcomeLabel(StrEnum):
    """The learner's reaction to a nudge; `ignored` is also the default when none arrives."""

    HELPFUL = "helpful"
    NOT_HELPFUL = "not_helpful"
    IGNORED = "ignored"


# ---- wire models (pydantic, strict about shape) -------------------------------------------

_ID_LENGTH = 128
_NAME_LENGTH = 64
_POLICY_VERSION_LENGTH = 128
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=_ID_LENGTH, pattern=r"^[^\s|:]+$")
]
FeatureName = Annotated[
    str, StringConstraints(min_length=1, max_length=_NAME_LENGTH, pattern=r"^[^\s|:=]+$")
]
FeatureValue = (
    Annotated[float, Field(allow_inf_nan=False, strict=False)]
    | Annotated[str, StringConstraints(max_length=256)]
)
Features = dict[FeatureName, FeatureValue]

_PMF_TOLERANCE = 1e-6


def _rfc3339_text(value: object) -> object:
    if not isinstance(value, str):
        raise PydanticCustomError(
            Reason.BAD_TIMESTAMP, "timestamp must be RFC 3339 text with a timezone"
        )
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
Probability = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Why = Literal["exploit", "explore", "forced", "cold_start", "retest"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionIn(_Wire):
    """One candidate message: an id and its features (the id is always a feature too)."""

    id: Identifier
    features: Features = Field(default_factory=dict)


class ImpressionIn(_Wire):
    """A logged decision: context, candidates, the chosen action and its probability."""

    type: Literal["impression"]
    event_id: Identifier
    timestamp: Timestamp
    trigger: Identifier
    learner_id: Identifier
    context: dict[FeatureName, Features] = Field(default_factory=dict)
    actions: list[ActionIn]
    chosen: Identifier
    probability: Probability
    pmf: list[Probability] | None = None
    policy_version: Annotated[str, StringConstraints(max_length=_POLICY_VERSION_LENGTH)] = "unknown"
    why: Why | None = None

    @model_validator(mode="after")
    def _check_decision(self) -> ImpressionIn:
        ids = [a.id for a in self.actions]
        if not ids:
            raise PydanticCustomError(Reason.EMPTY_ACTIONS, "actions must not be empty")
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise PydanticCustomError(Reason.DUPLICATE_ACTION_ID, f"repeated action ids {dupes}")
        if self.chosen not in ids:
            raise PydanticCustomError(
                Reason.CHOSEN_NOT_IN_ACTIONS, f"chosen {self.chosen!r} is not one of {ids}"
            )
        if not 0.0 < self.probability <= 1.0:
            raise PydanticCustomError(
                Reason.PROBABILITY_OUT_OF_RANGE,
                f"probability must be in (0, 1], got {self.probability}",
            )
        if self.pmf is not None:
            problem = _pmf_problem(self.pmf, len(ids), ids.index(self.chosen), self.probability)
            if problem is not None:
                raise PydanticCustomError(Reason.PMF_INVALID, problem)
        return self


def _pmf_problem(
    pmf: Sequence[float], n_actions: int, chosen_index: int, probability: float
) -> str | None:
    """What is wrong with a logged pmf of finite floats (shared by both decoding paths), or None."""
    if len(pmf) != n_actions:
        return f"pmf has {len(pmf)} entries for {n_actions} actions"
    if min(pmf) < 0.0 or max(pmf) > 1.0 or not math.isclose(sum(pmf), 1.0, abs_tol=_PMF_TOLERANCE):
        return f"pmf must be probabilities summing to 1, sums to {sum(pmf)}"
    if not math.isclose(pmf[chosen_index], probability, abs_tol=_PMF_TOLERANCE):
        return f"pmf gives the chosen action {pmf[chosen_index]}, probability says {probability}"
    return None


class OutcomeIn(_Wire):
    """The learner's reaction (and optionally a downstream value) for one impression."""

    type: Literal["outcome"]
    event_id: Identifier
    timestamp: Timestamp
    trigger: Identifier
    outcome: OutcomeLabel
    value: Annotated[float, Field(allow_inf_nan=False)] | None = None


_EVENT_ADAPTER: TypeAdapter[ImpressionIn | OutcomeIn] = TypeAdapter(
    Annotated[ImpressionIn | OutcomeIn, Field(discriminator="type")]
)

# ---- internal events (plain, frozen) --------------------------------------------------------


@value_type
class Impression:
    """A validated impression; `ts` is event time in epoch seconds."""

    event_id: str
    ts: float
    trigger: str
    learner_id: str
    context: dict[str, dict[str, float | str]]
    action_ids: tuple[str, ...]
    action_features: tuple[dict[str, float | str], ...]
    chosen_index: int
    probability: float
    policy_version: str
    pmf: tuple[float, ...] | None = None  # the logged distribution over action_ids, if sent

    @property
    def chosen(self) -> str:
        return self.action_ids[self.chosen_index]


@value_type
class Outcome:
    """A validated outcome; `value` is the optional downstream measure."""

    event_id: str
    ts: float
    trigger: str
    label: OutcomeLabel
    value: float | None


Event = Impression | Outcome


@dataclass(frozen=True, slots=True)
class EventRules:
    """Limits and namespace rules an event must meet beyond its shape."""

    namespaces: frozenset[str]
    max_message_bytes: int = 65_536
    max_actions: int = 64
    max_features: int = 256


def _to_impression(m: ImpressionIn) -> Impression:
    ids = tuple(a.id for a in m.actions)
    return Impression(
        event_id=m.event_id,
        ts=m.timestamp.timestamp(),
        trigger=m.trigger,
        learner_id=m.learner_id,
        context={ns: dict(f) for ns, f in m.context.items()},
        action_ids=ids,
        action_features=tuple(dict(a.features) for a in m.actions),
        chosen_index=ids.index(m.chosen),
        probability=m.probability,
        policy_version=m.policy_version,
        pmf=tuple(m.pmf) if m.pmf is not None else None,
    )


def _to_outcome(m: OutcomeIn) -> Outcome:
    return Outcome(m.event_id, m.timestamp.timestamp(), m.trigger, m.outcome, m.value)


def _check_rules(m: ImpressionIn, rules: EventRules) -> None:
    if len(m.actions) > rules.max_actions:
        raise InvalidEvent(
            Reason.TOO_MANY_ACTIONS, f"{len(m.actions)} actions, limit is {rules.max_actions}"
        )
    unknown = sorted(set(m.context) - rules.namespaces)
    if unknown:
        raise InvalidEvent(
            Reason.UNKNOWN_NAMESPACE,
            f"context namespaces {unknown} are not configured (known: {sorted(rules.namespaces)})",
        )
    widest = max(
        [len(f) for f in m.context.values()] + [len(a.features) for a in m.actions], default=0
    )
    if widest > rules.max_features:
        raise InvalidEvent(
            Reason.TOO_MANY_FEATURES,
            f"{widest} features in one group, limit is {rules.max_features}",
        )


_PYDANTIC_REASONS = {
    "missing": Reason.MISSING_FIELD,
    "extra_forbidden": Reason.UNKNOWN_FIELD,
    "union_tag_invalid": Reason.UNKNOWN_EVENT_TYPE,
    "union_tag_not_found": Reason.MISSING_FIELD,
    "model_attributes_type": Reason.NOT_AN_OBJECT,
    "model_type": Reason.NOT_AN_OBJECT,
    "enum": Reason.INVALID_VALUE,
    "literal_error": Reason.INVALID_VALUE,
    "string_pattern_mismatch": Reason.INVALID_VALUE,
    "string_too_short": Reason.INVALID_VALUE,
    "string_too_long": Reason.INVALID_VALUE,
    "finite_number": Reason.INVALID_VALUE,
    "timezone_aware": Reason.BAD_TIMESTAMP,
}

_REASON_CODES = frozenset(r.value for r in Reason)


def _reason_of(error: ErrorDetails) -> str:
    kind = str(error["type"])
    if kind in _REASON_CODES:
        return kind
    if kind in _PYDANTIC_REASONS:
        return _PYDANTIC_REASONS[kind]
    loc = error.get("loc", ())
    if kind.startswith("datetime") or (loc and loc[-1] == "timestamp"):
        return Reason.BAD_TIMESTAMP
    return Reason.WRONG_TYPE


def reason_of(error: ErrorDetails) -> str:
    """The `Reason` code of one pydantic error, as `decode_event` would report it (for
    refusals made outside it, e.g. by `nudge serve` of a request body)."""
    return _reason_of(error)


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(p) for p in error.get("loc", ())) or "event"
    return f"{where}: {error['msg']}"


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise InvalidEvent(Reason.DUPLICATE_KEY, f"key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _check_unique_keys(raw: bytes, data: dict[str, Any]) -> None:
    """Refuse a JSON object with a repeated key (orjson silently keeps the last value).

    Fast path (~1 µs for an 850-byte impression): orjson's own serialization of what it parsed
    never repeats a key, so when it equals `raw` byte for byte (compact JSON, as orjson and
    most producers write it) there was no repeat. Otherwise (whitespace, other float or escape
    spellings) the stdlib parser checks every object's pairs (~18 µs for that impression).
    """
    with contextlib.suppress(TypeError):  # nesting orjson parses but will not write back
        if orjson.dumps(data) == raw:
            return
    try:
        json.loads(raw, object_pairs_hook=_refuse_repeats)
    except (ValueError, RecursionError) as exc:  # parsed by orjson, so hardly ever
        raise InvalidEvent(Reason.UNDECODABLE, f"not parseable by the key check: {exc}") from exc


def _parsed(raw: bytes, rules: EventRules) -> dict[str, Any]:
    """The message as orjson's dict, once its size, syntax, shape and keys are sound."""
    if len(raw) > rules.max_message_bytes:
        raise InvalidEvent(
            Reason.TOO_LARGE, f"{len(raw)} bytes, limit is {rules.max_message_bytes}"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(Reason.UNDECODABLE, f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidEvent(
            Reason.NOT_AN_OBJECT, f"expected a JSON object, got {type(data).__name__}"
        )
    _check_unique_keys(raw, data)
    return data


def _validated(data: dict[str, Any], rules: EventRules) -> Event:
    """The event pydantic makes of `data`, or its first objection as `InvalidEvent`."""
    try:
        model = _EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise InvalidEvent(_reason_of(first), _describe(first)) from None
    if isinstance(model, ImpressionIn):
        _check_rules(model, rules)
        return _to_impression(model)
    return _to_outcome(model)


def decode_event(raw: bytes, rules: EventRules) -> Event:
    """Parse and validate one message; raise `InvalidEvent` with a `Reason` code if it is bad."""
    data = _parsed(raw, rules)
    kind = data.get("type")
    if kind == "impression":
        event: Event | None = _fast_impression(data, rules)
    elif kind == "outcome":
        event = _fast_outcome(data)
    else:
        event = None
    return event if event is not None else _validated(data, rules)


def decode_event_reference(raw: bytes, rules: EventRules) -> Event:
    """`decode_event` through pydantic alone: the reference the fast path must agree with."""
    return _validated(_parsed(raw, rules), rules)


# ---- the fast path: built from orjson's dict without pydantic, or None to ask pydantic -----

_IDS = TextRule(_ID_LENGTH, "|:")  # Identifier
_NAMES = TextRule(_NAME_LENGTH, "|:=")  # FeatureName
_IMPRESSION_FIELDS = frozenset(ImpressionIn.model_fields)
_OUTCOME_FIELDS = frozenset(OutcomeIn.model_fields)
_WHYS = frozenset(get_args(Why))
_LABELS = {label.value: label for label in OutcomeLabel}
_ABSENT = object()
_ACTION_LISTS: dict[bytes, _ActionsShape] = {}  # JSON of action lists that passed
_ACTION_LISTS_REMEMBERED = 1024  # a few per trigger; bounds the memory if every list is new
_FEATURES = itemgetter("features")
_NO_LIMIT = sys.maxsize  # limits depend on the rules, so remembered lists are held to them later


def _fast_impression(data: dict[str, Any], rules: EventRules) -> Impression | None:
    """The impression `data` holds if the fast checks all pass, else None."""
    if not data.keys() <= _IMPRESSION_FIELDS:
        return None
    event_id, trigger, learner_id = (
        data.get("event_id"),
        data.get("trigger"),
        data.get("learner_id"),
    )
    ts = epoch_seconds(data.get("timestamp"))
    probability = number(data.get("probability"))
    policy_version = data.get("policy_version", "unknown")
    why = data.get("why")
    if (
        ts is None
        or probability is None
        or not 0.0 < probability <= 1.0
        or not _IDS.fits_once(event_id)
        or not _IDS.fits(trigger)
        or not _IDS.fits(learner_id)
        or type(policy_version) is not str
        or len(policy_version) > _POLICY_VERSION_LENGTH
        or (why is not None and (type(why) is not str or why not in _WHYS))
    ):
        return None
    context = data.get("context", _ABSENT)
    if context is _ABSENT:
        context = {}
    elif type(context) is not dict or not _fits_namespaces(context.keys(), rules):
        return None
    elif not plain_groups(list(context.values()), _NAMES, rules.max_features):
        context = _converted_context(context, rules.max_features)
        if context is None:
            return None
    actions = _fast_actions(data.get("actions"), rules)
    if actions is None:
        return None
    ids, features = actions
    chosen = data.get("chosen")
    if chosen not in ids:
        return None
    chosen_index = ids.index(chosen)
    pmf = data.get("pmf")
    if pmf is not None:
        pmf = _fast_pmf(pmf, len(ids), chosen_index, probability)
        if pmf is None:
            return None
    return Impression(
        event_id, ts, trigger, learner_id, context, ids, features, chosen_index,
        probability, policy_version, pmf,
    )  # fmt: skip


def _fits_namespaces(namespaces: KeysView[str], rules: EventRules) -> bool:
    """Whether the context's namespaces are configured ones and fit `FeatureName`."""
    return namespaces <= rules.namespaces and (
        namespaces <= _NAMES.passed or all(map(_NAMES.fits, namespaces))
    )


def _fast_actions(
    actions: object, rules: EventRules
) -> tuple[tuple[str, ...], tuple[dict[str, Any], ...]] | None:
    """The ids and features of the actions if all fit, else None. An action list is the
    same from message to message (a trigger's candidates), so one seen before (the same
    JSON) is not checked again, only held to `rules`."""
    if type(actions) is not list or not actions:
        return None
    try:
        key = orjson.dumps(actions)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return None
    shape = _ACTION_LISTS.get(key)
    if shape is None:
        checked = _checked_actions(actions)
        if checked is None:
            return None
        shape, features = checked
        if shape.plain:
            remember(_ACTION_LISTS, key, shape, _ACTION_LISTS_REMEMBERED)
    elif shape.every_has_features:
        features = tuple(map(_FEATURES, actions))
    else:
        features = tuple([action.get("features", {}) for action in actions])
    if len(shape.ids) > rules.max_actions or shape.widest > rules.max_features:
        return None
    return shape.ids, features


@dataclass(frozen=True, slots=True)
class _ActionsShape:
    """What checking an action list found: its ids, its widest features group, whether every
    action sent features, whether the features needed no converting (`plain`)."""

    ids: tuple[str, ...]
    widest: int
    every_has_features: bool
    plain: bool


def _checked_actions(
    actions: list[Any],
) -> tuple[_ActionsShape, tuple[dict[str, Any], ...]] | None:
    """Every check of an action list but the rules' limits, and its features as built."""
    ids: list[str] = []
    groups: list[Any] = []
    for action in actions:
        if type(action) is not dict:
            return None
        action_id = action.get("id")
        features = action.get("features", _ABSENT)
        if not _IDS.fits(action_id) or len(action) != (1 if features is _ABSENT else 2):
            return None
        ids.append(action_id)
        groups.append({} if features is _ABSENT else features)
    if len(set(ids)) != len(ids):
        return None
    plain = plain_groups(groups, _NAMES, _NO_LIMIT)
    if not plain:
        groups = [converted_group(g, _NAMES, _NO_LIMIT) for g in groups]
        if None in groups:
            return None
    every_has_features = all("features" in action for action in actions)
    widest = max(map(len, groups))
    return _ActionsShape(tuple(ids), widest, every_has_features, plain), tuple(groups)


def _converted_context(context: dict[str, Any], limit: int) -> dict[str, Any] | None:
    """The context with ints and bools as floats, or None if a group is bad."""
    converted = {ns: converted_group(g, _NAMES, limit) for ns, g in context.items()}
    return None if None in converted.values() else converted


def _fast_pmf(
    pmf: object, n_actions: int, chosen_index: int, probability: float
) -> tuple[float, ...] | None:
    """The logged pmf as floats if it is a sound one, else None."""
    entries = numbers(pmf)
    if entries is None or _pmf_problem(entries, n_actions, chosen_index, probability):
        return None
    return tuple(entries)


def _fast_outcome(data: dict[str, Any]) -> Outcome | None:
    """The outcome `data` holds if the fast checks all pass, else None."""
    if not data.keys() <= _OUTCOME_FIELDS:
        return None
    event_id, trigger, label = data.get("event_id"), data.get("trigger"), data.get("outcome")
    ts = epoch_seconds(data.get("timestamp"))
    value = data.get("value")
    if value is not None:
        value = number(value)
        if value is None:
            return None
    if (
        ts is None
        or type(label) is not str
        or label not in _LABELS
        or not _IDS.fits_once(event_id)
        or not _IDS.fits(trigger)
    ):
        return None
    return Outcome(event_id, ts, trigger, _LABELS[label], value)


def timestamp_text(ts: float) -> str:
    """RFC 3339 text (UTC, milliseconds) for an epoch-seconds event time."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")
