"""Azure Personalizer v1.0 requests mapped onto our event contract: pure functions, no I/O.

- `map_context`: `contextFeatures` (a list of JSON objects) -> trigger, learner id and context
  namespaces. A top-level key whose value is an object is a namespace (it must be configured
  in `learner.namespaces`); nested objects flatten with `.`, arrays with the index
  (`{"user": {"tags": ["a", "b"]}}` -> namespace `user`, features `tags.0`, `tags.1`);
  booleans become "true"/"false"; nulls are dropped. Any other top-level value is a feature of
  `serve.personalizer.default_namespace`, except `trigger_feature` (the trigger) and
  `learner_feature` (the learner id), whose defaults are `default_trigger`, `default_learner`.
- `map_action_features`: one action's `features` (a list of objects) -> one flat mapping.
- `rank_candidates` / `ranking`: `excludedActions` are not candidates; the ranking is the
  chosen action, the other candidates by probability, then the excluded ones with 0.
- `reward_outcome`: a reward value -> the outcome label whose configured reward is nearest
  (a tie: `ignored`), the value itself kept as the outcome's `value`.

A feature named twice (in two objects, or `a.b` next to `{"a": {"b": …}}`) is refused rather
than silently overwritten: the logged context must be what the caller sent. Every refusal is
an `InvalidRequest` naming the field as the request spells it (`contextFeatures[1].user`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from bandit.config import PersonalizerConfig, RewardConfig
from bandit.errors import InvalidRequest
from bandit.events import EventRules, Identifier, OutcomeLabel, Reason

FeatureMap = dict[str, float | str]

_FEATURE_NAME = re.compile(r"^[^\s|:=]{1,64}$")  # bandit.events.FeatureName
_MAX_TEXT = 256  # bandit.events.FeatureValue
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


@dataclass(frozen=True, slots=True)
class RankContext:
    """What a Rank request's contextFeatures say: where, who, and the context namespaces."""

    trigger: str
    learner_id: str
    context: dict[str, FeatureMap]


def map_context(
    features: Sequence[Any] | None, config: PersonalizerConfig, rules: EventRules
) -> RankContext:
    """Map `contextFeatures` onto (trigger, learner id, context namespaces); see the module."""
    trigger: str | None = None
    learner: str | None = None
    context: dict[str, FeatureMap] = {}
    for i, item in enumerate(features or ()):
        where = f"contextFeatures[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(
                where, Reason.NOT_AN_OBJECT, f"expected a JSON object, got {_kind(item)}"
            )
        for key, value in item.items():
            path = f"{where}.{key}"
            if value is None:
                continue
            # A scalar under the trigger/learner name says where and who; an object under
            # the same name is a namespace like any other (e.g. the `trigger` namespace).
            if key == config.trigger_feature and not isinstance(value, Mapping):
                trigger = _identifier(path, value, trigger, "the trigger")
            elif key == config.learner_feature and not isinstance(value, Mapping):
                learner = _identifier(path, value, learner, "the learner id")
            elif isinstance(value, Mapping):
                _check_namespace(path, key, rules, f"namespace {key!r}")
                group = context.setdefault(key, {})
                _flatten(value, "", path, group, rules.max_features)
            else:
                ns = config.default_namespace
                _check_namespace(
                    path, ns, rules,
                    f"top-level features go to serve.personalizer.default_namespace {ns!r}, "
                    "which",
                )  # fmt: skip
                _flatten(value, key, path, context.setdefault(ns, {}), rules.max_features)
    return RankContext(
        trigger=config.default_trigger if trigger is None else trigger,
        learner_id=config.default_learner if learner is None else learner,
        context=context,
    )


def map_action_features(
    index: int, features: Sequence[Any] | None, max_features: int
) -> FeatureMap:
    """One action's `features` (a list of JSON objects) flattened into one mapping."""
    out: FeatureMap = {}
    for j, item in enumerate(features or ()):
        where = f"actions[{index}].features[{j}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(
                where, Reason.NOT_AN_OBJECT, f"expected a JSON object, got {_kind(item)}"
            )
        _flatten(item, "", where, out, max_features)
    return out


def rank_candidates(
    action_ids: Sequence[str], excluded: Sequence[str] | None, max_actions: int
) -> tuple[list[str], list[str]]:
    """(candidates, excluded) in request order: every action but the excluded ones. Refuses
    repeated ids, an excluded id that is not an action, and excluding every action."""
    if not action_ids:
        raise InvalidRequest("actions", Reason.EMPTY_ACTIONS, "no actions to rank")
    seen: set[str] = set()
    for i, action in enumerate(action_ids):
        if action in seen:
            raise InvalidRequest(
                f"actions[{i}].id", Reason.DUPLICATE_ACTION_ID, f"action id {action!r} repeats"
            )
        seen.add(action)
    dropped: set[str] = set()
    for i, action in enumerate(excluded or ()):
        if action not in seen:
            raise InvalidRequest(
                f"excludedActions[{i}]", Reason.INVALID_VALUE,
                f"{action!r} is not the id of one of the actions",
            )  # fmt: skip
        dropped.add(action)
    candidates = [a for a in action_ids if a not in dropped]
    if not candidates:
        raise InvalidRequest(
            "excludedActions", Reason.EMPTY_ACTIONS, "every action is excluded: nothing to rank"
        )
    if len(candidates) > max_actions:
        raise InvalidRequest(
            "actions", Reason.TOO_MANY_ACTIONS,
            f"{len(candidates)} candidate actions, limit is {max_actions} (limits.max_actions)",
        )  # fmt: skip
    return candidates, [a for a in action_ids if a in dropped]


def ranking(
    actions: Sequence[str], pmf: Sequence[float], chosen: int, excluded: Sequence[str]
) -> list[tuple[str, float]]:
    """Personalizer's ranking: the chosen action first, then the other candidates by
    probability (highest first; equal ones in request order), then excluded ones with 0."""
    others = sorted((i for i in range(len(actions)) if i != chosen), key=lambda i: -pmf[i])
    ranked = [(actions[i], pmf[i]) for i in (chosen, *others)]
    return ranked + [(a, 0.0) for a in excluded]


def reward_outcome(value: float, rewards: RewardConfig) -> tuple[OutcomeLabel, float]:
    """The outcome whose configured reward is nearest `value` (a tie: ignored), and the value."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequest("value", Reason.INVALID_VALUE, f"a finite number, got {value!r}")
    distance = {
        OutcomeLabel.HELPFUL: abs(value - rewards.helpful),
        OutcomeLabel.NOT_HELPFUL: abs(value - rewards.not_helpful),
        OutcomeLabel.IGNORED: abs(value - rewards.ignored),
    }
    nearest = min(distance.values())
    labels = [label for label, d in distance.items() if d == nearest]
    return (labels[0] if len(labels) == 1 else OutcomeLabel.IGNORED), float(value)


# ---- flattening ----------------------------------------------------------------------------


def _flatten(value: Any, name: str, path: str, out: FeatureMap, max_features: int) -> None:
    """Add `value`'s features to `out`: objects join names with `.`, arrays with the index."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(
                inner, f"{name}.{key}" if name else str(key), f"{path}.{key}", out, max_features
            )
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            _flatten(inner, f"{name}.{i}" if name else str(i), f"{path}[{i}]", out, max_features)
    else:
        _put(out, name, _scalar(path, value), path, max_features)


def _scalar(path: str, value: Any) -> float | str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidRequest(
                path, Reason.INVALID_VALUE, f"a feature must be finite, got {value}"
            )
        return value
    if isinstance(value, str):
        if len(value) > _MAX_TEXT:
            raise InvalidRequest(
                path, Reason.INVALID_VALUE, f"text of {len(value)} characters, limit is {_MAX_TEXT}"
            )
        return value
    raise InvalidRequest(
        path, Reason.WRONG_TYPE, f"a feature is a number or text, got {_kind(value)}"
    )


def _put(out: FeatureMap, name: str, value: float | str, path: str, max_features: int) -> None:
    if not _FEATURE_NAME.match(name):
        raise InvalidRequest(
            path, Reason.INVALID_VALUE,
            f"feature name {name!r}: 1-64 characters, no whitespace, '|', ':' or '='",
        )  # fmt: skip
    if name in out:
        raise InvalidRequest(path, Reason.DUPLICATE_KEY, f"feature {name!r} is given twice")
    if len(out) >= max_features:
        raise InvalidRequest(
            path, Reason.TOO_MANY_FEATURES,
            f"more than {max_features} features in one group (limits.max_features)",
        )  # fmt: skip
    out[name] = value


def _identifier(path: str, value: Any, before: str | None, what: str) -> str:
    if before is not None:
        raise InvalidRequest(path, Reason.DUPLICATE_KEY, f"{what} is given twice")
    if not isinstance(value, str):
        raise InvalidRequest(path, Reason.WRONG_TYPE, f"{what} must be text, got {_kind(value)}")
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]["msg"]
        raise InvalidRequest(
            path, Reason.INVALID_VALUE, f"{what} {value!r} breaks the event contract: {problem}"
        ) from None


def _check_namespace(path: str, namespace: str, rules: EventRules, what: str) -> None:
    if namespace not in rules.namespaces:
        raise InvalidRequest(
            path, Reason.UNKNOWN_NAMESPACE,
            f"{what} is not in learner.namespaces (known: {sorted(rules.namespaces)})",
        )  # fmt: skip


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "text", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
