"""Vowpal Wabbit / Azure Personalizer "decision service JSON" (DSJSON) to and from `LoggedData`.

One JSON object per line, as VW reads it with ``--cb_explore_adf --dsjson``:

=======================  =====================================================================
field                    meaning
=======================  =====================================================================
``_label_cost``          cost of the chosen action; reward = -cost
``_label_probability``   logged probability of the chosen action, in (0, 1]
``_label_Action``        1-based index of the chosen action into ``c._multi``
``_labelIndex``          the same, 0-based (VW puts the label on that action)
``a``, ``p``             1-based indices of every action, the chosen first, and their
                         probabilities: the logging pmf (``p`` without ``a`` is not used)
``c``                    the context (below); ``_multi`` the candidate actions
``EventId``              the decision's id (required)
``Timestamp``            RFC 3339 with an offset, any number of fractional digits (the
                         Decision Service writes seven); optional (nan without it)
``_skipLearn``           true: VW does not learn the event and neither does replay
                         (counted as ``skip_learn``)
``pdrop``                share of events dropped before logging: > 0 is refused, because
                         replay does not reweight dropped events
``o``, ``Version``,      outcomes, format version, model id, the joiner's cost before its
``VWState``,             adjustments: written or tolerated, not needed. The reward is
``_original_label_cost`` ``-_label_cost``, the cost VW learned (as VW's own estimators read it)
=======================  =====================================================================

The context ``c`` as VW reads it: a key whose value is an object, an array of objects (their
features merged; a name repeated by a later object gets the prefix ``[i].``) or an array of
numbers (features ``[0]``, ``[1]``...) is a namespace; any other value (number, text, true) is
a feature of the root namespace, kept under the name ``" "`` (`DEFAULT_NAMESPACE`). Keys
starting with ``_`` are not features, as in VW. Inside a namespace, nested objects flatten to
``outer.inner``; true gives 1.0, false and null give nothing; VW's text separators in feature
names (space, ``|``, ``:``) become ``_``.

Action ids, per line: ``c._multi[j]._id``; else ``_tag`` (Personalizer and the Decision Service
put the action id there) when every action of the line has a distinct one (VW's own examples
repeat a placeholder tag, which names nothing); else the position, ``action-<j+1>``. Positions
are what VW itself identifies actions by (``_label_Action``, ``a``), and stay put in a log whose
candidate set is fixed; a hash of the action's features was rejected because features that
vary by event (a price, a freshness score) would give one action a new id per event. Where the
candidate set varies by event, give ``_id`` or ``_tag``: positions would mix actions.

Logs this module cannot evaluate are refused on their first line with what was found:
conditional contextual bandits (``c._slots``, ``_outcomes``), slates (``_slot_id``) and
continuous actions (``_label_ca``); a JSON object with none of the DSJSON fields is an error
of its line (``unknown_structure``, skippable).

VW's JSON parser does not make features of keys that start with ``_`` (except its own
``_multi``, ``_text``, ``_tag``, ``_label*``...), so what nudgebandit adds lives there:
``c._nudge`` holds ``trigger``, ``learner_id``, ``label``, ``policy_version`` (trigger else
from the ``trigger_field`` path of ``c``, default ``trigger.id``, else ``all``). Features are
flattened to ``float | str``: a nested object ``ns`` inside an action gives ``ns.<name>``,
except the action namespace our writer uses.

VW takes a JSON namespace's index from the first character of its key and hashes features with
the whole key, and makes ``{"k": "v"}`` the feature ``kv``. So that VW reads exactly the features
of our text format (`bandit.vw_text`), the writer keys each namespace by its configured letter
(``c._nudge.namespaces`` maps the letters back to the names), writes a text feature as
``{"k=": "v"}`` (VW: ``k=v``, text made safe as the text format does) and the action id as
``{"id=": id}``. The reader takes a key ``k=`` with a text value as the feature ``k``. A log
without ``c._nudge.namespaces`` keeps its own namespace names; the VW candidates give them
letters (`replay.vw_namespaces`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bandit.errors import ReplayInputError
from bandit.events import Impression, OutcomeLabel, Reason
from bandit.join import JoinedEvent
from bandit.vw_text import NamespaceLetters, safe_text
from replay.logged import PMF_TOLERANCE, LoggedData, from_joined
from replay.sources import LINE_HINT, PROGRESS_EVERY, OnError, Progress, check_on_error

Features = dict[str, float | str]

ACTION_NAMESPACE = "action"  # the name of the `_multi` namespace of the action features
NUDGE_KEY = "_nudge"
NAMES_KEY = "namespaces"  # in `c._nudge`: VW namespace key -> our namespace name
TEXT_MARK = "="  # `{"k=": "v"}`: VW hashes key + value, so this is the feature `k=v`
DEFAULT_TRIGGER = "all"
DEFAULT_NAMESPACE = " "  # VW's name for features outside any namespace object
SKIP_LEARN = "skip_learn"
UNSUPPORTED_LOG = "unsupported_log"  # CCB, slates, continuous actions: refused on sight
UNKNOWN_STRUCTURE = "unknown_structure"  # a JSON object with none of the DSJSON fields
# A decision line has at least one of these; an object with none is of some other format.
DSJSON_FIELDS = ("c", "EventId", "_label_cost", "_label_probability", "_label_Action", "_skipLearn")
SHOWN_KEYS = 8  # keys of an unknown line named in its error


class _LineError(Exception):
    """A line replay cannot use: reason code, field, problem; `skippable` False = always raised."""

    def __init__(self, reason: str, field: str, problem: str, *, skippable: bool = True) -> None:
        super().__init__(f"{field}: {problem}")
        self.reason = str(reason)
        self.field = field
        self.problem = problem
        self.skippable = skippable


@dataclass(frozen=True, slots=True)
class _Decision:
    """One DSJSON line as an impression with its reward."""

    impression: Impression
    timestamp: float  # nan when the line has no Timestamp
    reward: float
    label: str


# ---- reading ------------------------------------------------------------------------------


def load_dsjson(
    path: Path | str,
    *,
    none_action: str | None,
    trigger_field: str | None = "trigger.id",
    on_error: OnError = "raise",
    progress: Progress | None = None,
) -> LoggedData:
    """Read a DSJSON file (see the module docstring); contexts come back as `Impression`s so
    VW-based candidate policies can replay it. Repeated EventIds count as duplicates."""
    check_on_error(on_error)
    path = Path(path)
    decisions: list[_Decision] = []
    seen: set[str] = set()
    skipped: Counter[str] = Counter()
    n = 0
    for batch, batch_skipped, lines in decision_batches(path, trigger_field, on_error, progress):
        n = lines
        skipped += batch_skipped
        for decision in batch:
            if decision.impression.event_id in seen:
                skipped[Reason.DUPLICATE_IMPRESSION.value] += 1
            else:
                seen.add(decision.impression.event_id)
                decisions.append(decision)
    if not decisions:
        raise ReplayInputError(
            path.name, "lines", f"no usable decision in {n} lines (skipped: {dict(skipped)})"
        )
    return _logged(decisions, none_action, skipped, str(path))


def decision_batches(
    path: Path,
    trigger_field: str | None,
    on_error: OnError,
    progress: Progress | None = None,
    lines_per_batch: int = 1 << 17,
) -> Iterator[tuple[list[_Decision], Counter[str], int]]:
    """The file's decisions in batches of at most ``lines_per_batch`` lines: (decisions, lines
    skipped by reason, lines read so far); repeated EventIds are left to the caller."""
    batch: list[_Decision] = []
    skipped: Counter[str] = Counter()
    n = 0
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, start=1):
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress("read", n, None)
            if line.strip():
                try:
                    decision = _decision(line, trigger_field)
                except _LineError as exc:
                    if on_error == "raise" or not exc.skippable:
                        hint = LINE_HINT if exc.skippable else "replay cannot use this file"
                        raise ReplayInputError(
                            f"{path.name} line {n}", exc.field, f"{exc.problem}; {hint}"
                        ) from None
                    skipped[exc.reason] += 1
                else:
                    if decision is None:
                        skipped[SKIP_LEARN] += 1
                    else:
                        batch.append(decision)
            if n % lines_per_batch == 0:
                yield batch, skipped, n
                batch, skipped = [], Counter()
    if progress is not None:
        progress("read", n, n)
    if batch or skipped or n % lines_per_batch:
        yield batch, skipped, n


def logged_batch(
    decisions: Sequence[_Decision], none_action: str | None, source: str
) -> LoggedData:
    """A batch of decisions as `LoggedData` (its own vocabulary)."""
    return _logged(decisions, none_action, Counter(), source)


def _logged(
    decisions: Sequence[_Decision],
    none_action: str | None,
    skipped: Counter[str],
    source: str,
) -> LoggedData:
    # from_joined lays the columns out exactly as for our own events; the outcome label and
    # the timestamp (nan when absent) are the line's own, so they replace the placeholders.
    joined = [
        JoinedEvent(d.impression, OutcomeLabel.IGNORED, None, d.reward, defaulted=False)
        for d in decisions
    ]
    data = from_joined(joined, none_action=none_action, skipped=skipped, source=source)
    return replace(
        data,
        timestamps=np.array([d.timestamp for d in decisions], dtype=np.float64),
        labels=np.array([d.label for d in decisions], dtype=object),
    )


def _decision(line: bytes, trigger_field: str | None) -> _Decision | None:
    """The decision on one line; None for a `_skipLearn` line."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _LineError(Reason.UNDECODABLE, "json", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _LineError(
            Reason.NOT_AN_OBJECT, "json", f"expected a JSON object, got {type(doc).__name__}"
        )
    _check_kind(doc)
    if doc.get("_skipLearn") is True:
        return None
    _check_pdrop(doc.get("pdrop"))
    event_id = _event_id(doc.get("EventId"))
    context = doc.get("c")
    if not isinstance(context, dict):
        reason = Reason.MISSING_FIELD if context is None else Reason.WRONG_TYPE
        raise _LineError(reason, "c", "the context object is required")
    nudge = context.get(NUDGE_KEY)
    nudge = nudge if isinstance(nudge, dict) else {}
    names = _namespace_names(nudge)
    ids, features = _actions(context.get("_multi"), names)
    cost = _number(doc, "_label_cost")
    probability = _number(doc, "_label_probability")
    if not 0.0 < probability <= 1.0:
        raise _LineError(
            Reason.PROBABILITY_OUT_OF_RANGE,
            "_label_probability",
            f"must be in (0, 1], got {probability}",
        )
    chosen = _chosen_index(doc, len(ids))
    timestamp = _timestamp(doc.get("Timestamp"))
    impression = Impression(
        event_id=event_id,
        ts=0.0 if math.isnan(timestamp) else timestamp,
        trigger=_trigger(context, nudge, trigger_field),
        learner_id=_text(nudge.get("learner_id"), ""),
        context=_context(context, names),
        action_ids=ids,
        action_features=features,
        chosen_index=chosen,
        probability=probability,
        policy_version=_text(nudge.get("policy_version"), "unknown"),
        pmf=_pmf(doc, chosen, probability, len(ids), nudge),
    )
    return _Decision(impression, timestamp, -cost, _text(nudge.get("label"), ""))


def _check_kind(doc: Mapping[str, Any]) -> None:
    """Refuse lines of a log kind replay does not evaluate, saying what was found."""
    context = doc.get("c")
    context = context if isinstance(context, dict) else {}
    multi = context.get("_multi")
    found = [
        name
        for name, there in (("_outcomes", "_outcomes" in doc), ("c._slots", "_slots" in context))
        if there
    ]
    if found:
        slates = isinstance(multi, list) and any(
            isinstance(a, dict) and "_slot_id" in a for a in multi
        )
        kind = "a slates log" if slates else "a conditional contextual bandit (CCB) log"
        raise _LineError(
            UNSUPPORTED_LOG,
            found[0],
            f"found {' and '.join(found)}: {kind}; replay evaluates one decision per line "
            "(what VW reads with --cb_explore_adf --dsjson)",
            skippable=False,
        )
    if "_label_ca" in doc:
        raise _LineError(
            UNSUPPORTED_LOG,
            "_label_ca",
            "found _label_ca: a continuous-action (CATS) log; replay evaluates discrete actions",
            skippable=False,
        )
    if not any(key in doc for key in DSJSON_FIELDS):
        keys = sorted(doc)
        shown = ", ".join(keys[:SHOWN_KEYS]) + (", ..." if len(keys) > SHOWN_KEYS else "")
        ours = doc.get("type") in ("impression", "outcome")
        hint = "; nudgebandit events? use --events" if ours else ""
        raise _LineError(
            UNKNOWN_STRUCTURE,
            "line",
            f"found an object with keys [{shown}], none of the DSJSON fields "
            f"{', '.join(DSJSON_FIELDS)}{hint}",
        )


def _check_pdrop(pdrop: Any) -> None:
    if pdrop is None:
        return
    if not _is_number(pdrop):
        raise _LineError(Reason.WRONG_TYPE, "pdrop", f"must be a number, got {pdrop!r}")
    if pdrop > 0:
        raise _LineError(
            "pdrop",
            "pdrop",
            f"{pdrop} of the events were dropped before logging; replay does not reweight "
            "dropped events, so its estimates would be biased: export the log without dropping",
            skippable=False,
        )


def _event_id(value: Any) -> str:
    if value is None:
        raise _LineError(Reason.MISSING_FIELD, "EventId", "every decision needs an EventId")
    if not isinstance(value, str) or not value:
        raise _LineError(Reason.WRONG_TYPE, "EventId", f"must be non-empty text, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(doc: Mapping[str, Any], key: str) -> float:
    value = doc.get(key)
    if value is None:
        raise _LineError(Reason.MISSING_FIELD, key, "required (or set _skipLearn)")
    if not _is_number(value):
        raise _LineError(Reason.WRONG_TYPE, key, f"must be a finite number, got {value!r}")
    return float(value)


def _chosen_index(doc: Mapping[str, Any], k: int) -> int:
    """0-based index of the chosen action, from `_label_Action` (checked against `_labelIndex`)."""
    action = _number(doc, "_label_Action")
    if action != int(action) or not 1 <= action <= k:
        raise _LineError(
            Reason.CHOSEN_NOT_IN_ACTIONS,
            "_label_Action",
            f"{action:g} is not a 1-based index of the {k} actions in c._multi",
        )
    index = doc.get("_labelIndex")
    if index is not None and index != int(action) - 1:
        raise _LineError(
            Reason.INVALID_VALUE,
            "_labelIndex",
            f"{index!r} disagrees with _label_Action {int(action)} (expected {int(action) - 1})",
        )
    return int(action) - 1


def _namespace_names(nudge: Mapping[str, Any]) -> dict[str, str]:
    """Our namespace names by VW key, from `c._nudge.namespaces` (none in others' files)."""
    names = nudge.get(NAMES_KEY)
    if not isinstance(names, dict):
        return {}
    return {k: v for k, v in names.items() if isinstance(v, str)}


def _actions(multi: Any, names: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[Features, ...]]:
    """Action ids and features of `c._multi`; `names` says which key is the action namespace."""
    if not isinstance(multi, list) or not multi:
        raise _LineError(
            Reason.EMPTY_ACTIONS, "c._multi", "must be a non-empty list of action objects"
        )
    for j, item in enumerate(multi):
        if not isinstance(item, dict):
            raise _LineError(Reason.WRONG_TYPE, f"c._multi[{j}]", "must be an object")
    ids: list[str] = []
    features: list[Features] = []
    for item, action in zip(multi, _action_ids(multi), strict=True):
        found: Features = {}
        for key, value in item.items():
            if names.get(key, key) == ACTION_NAMESPACE and isinstance(value, dict):
                own = _features(value)
                if own.get("id") == action:  # our writer's copy of the id, as VW's feature
                    del own["id"]
                found.update(own)
            elif not key.startswith("_"):
                found.update(_features({key: value}))
        ids.append(action)
        features.append(found)
    if len(set(ids)) != len(ids):
        dupes = sorted({a for a in ids if ids.count(a) > 1})
        raise _LineError(Reason.DUPLICATE_ACTION_ID, "c._multi", f"repeated action ids {dupes}")
    return tuple(ids), tuple(features)


def _action_ids(multi: Sequence[Mapping[str, Any]]) -> list[str]:
    """The id of each action: `_id`, else `_tag` when the line's tags tell its actions apart,
    else the position `action-<j+1>` (the rule and why: module docstring)."""
    own = [_id_value(item, "_id", j) for j, item in enumerate(multi)]
    tags = [_id_value(item, "_tag", j) for j, item in enumerate(multi)]
    untagged = [t for o, t in zip(own, tags, strict=True) if o is None]
    use_tags = None not in untagged and len(set(untagged)) == len(untagged)
    return [
        o if o is not None else (t if use_tags and t is not None else f"action-{j + 1}")
        for j, (o, t) in enumerate(zip(own, tags, strict=True))
    ]


def _id_value(item: Mapping[str, Any], key: str, j: int) -> str | None:
    """`item[key]` as an action id (text or an integer), None when absent."""
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _LineError(
            Reason.WRONG_TYPE, f"c._multi[{j}].{key}", f"an action id is text, got {value!r}"
        )
    return str(value)


def _features(obj: Mapping[str, Any], prefix: str = "") -> Features:
    """Flat `float | str` features of a JSON object (nested names joined with ".")."""
    out: Features = {}
    for key, value in obj.items():
        if key.startswith("_"):
            continue
        name = prefix + safe_text(key)
        if isinstance(value, bool):
            if value:
                out[name] = 1.0
        elif isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, str):
            out[name.removesuffix(TEXT_MARK)] = value
        elif isinstance(value, dict):
            out.update(_features(value, name + "."))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.update(_features(item, f"{name}[{i}]."))
                elif _is_number(item):
                    out[f"{name}[{i}]"] = float(item)
    return out


def _context(c: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Features]:
    """The namespaces of `c` under our names; plain top-level values are features of VW's
    root namespace (module docstring)."""
    context: dict[str, Features] = {}
    root: Features = {}
    for key, value in c.items():
        if key.startswith("_"):
            continue
        group = _namespace(value)
        if group is None:
            root.update(_features({key: value}))
        else:
            context[names.get(key, key)] = group
    if root:
        context[DEFAULT_NAMESPACE] = root
    return context


def _namespace(value: Any) -> Features | None:
    """The features of a namespace as VW reads one: an object, an array of objects (merged; a
    name a later object repeats gets its index as prefix, `[i].name`) or an array of numbers
    (`[i]`); None for a value that is a feature itself."""
    if isinstance(value, dict):
        return _features(value)
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, dict) for item in value):
        merged: Features = {}
        for i, item in enumerate(value):
            for name, feature in _features(item).items():
                merged[f"[{i}].{name}" if name in merged else name] = feature
        return merged
    if all(_is_number(item) for item in value):
        return {f"[{i}]": float(item) for i, item in enumerate(value)}
    return None


def _trigger(c: Mapping[str, Any], nudge: Mapping[str, Any], trigger_field: str | None) -> str:
    value = nudge.get("trigger")
    where = f"c.{NUDGE_KEY}.trigger"
    if value is None and trigger_field:
        node: Any = c
        for part in trigger_field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        value, where = node, f"c.{trigger_field}"
    if value is None:
        return DEFAULT_TRIGGER
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _LineError(Reason.WRONG_TYPE, where, f"a trigger must be text, got {value!r}")
    return str(value)


def _text(value: Any, default: str) -> str:
    return default if value is None else str(value)


def _timestamp(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _LineError(
            Reason.BAD_TIMESTAMP, "Timestamp", f"must be RFC 3339 text with an offset: {value!r}"
        )
    return parsed.timestamp()


def _pmf(
    doc: Mapping[str, Any],
    chosen: int,
    probability: float,
    k: int,
    nudge: Mapping[str, Any],
) -> tuple[float, ...] | None:
    """The logging pmf over `c._multi` order from `a`/`p`; None when the line has none."""
    p = doc.get("p", doc.get("_p"))
    a = doc.get("a")
    if p is None or a is None or nudge.get("pmf_logged") is False:
        return None
    integers = isinstance(a, list) and all(type(x) is int for x in a)
    if not integers or sorted(a) != list(range(1, k + 1)):
        raise _LineError(
            Reason.INVALID_VALUE, "a", f"must list each of the {k} actions once (1-based): {a}"
        )
    if a[0] != chosen + 1:
        raise _LineError(
            Reason.INVALID_VALUE, "a", f"starts with {a[0]}, but _label_Action is {chosen + 1}"
        )
    if not isinstance(p, list) or len(p) != k or not all(_is_number(x) for x in p):
        raise _LineError(Reason.PMF_INVALID, "p", f"must be {k} probabilities aligned with a")
    total = math.fsum(p)
    if any(x < 0.0 or x > 1.0 for x in p) or abs(total - 1.0) > PMF_TOLERANCE:
        raise _LineError(
            Reason.PMF_INVALID, "p", f"must be probabilities summing to 1, sums to {total}"
        )
    if abs(p[0] - probability) > PMF_TOLERANCE:
        raise _LineError(
            Reason.PMF_INVALID,
            "p",
            f"gives the chosen action {p[0]}, _label_probability says {probability}",
        )
    pmf = [0.0] * k
    for index, value in zip(a, p, strict=True):
        pmf[index - 1] = float(value)
    return tuple(pmf)


# ---- writing ------------------------------------------------------------------------------


def write_dsjson(data: LoggedData, path: Path | str, letters: NamespaceLetters) -> int:
    """Write one DSJSON line per decision (VW reads it with ``--cb_explore_adf --dsjson``);
    returns the number of lines. Namespaces are keyed by `letters`, so VW reads the features
    of our text format (see the module docstring) and the configured interactions apply.

    Contexts, candidate order and action features come from ``data.impressions``; without
    them the candidates are the row's actions in vocabulary order with no features. ``p`` is
    the logged pmf; when none was logged it is the chosen action's probability and the
    remainder split evenly over the other actions, marked ``c._nudge.pmf_logged: false`` so
    `load_dsjson` does not take it for a logged pmf.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {action: k for k, action in enumerate(data.actions)}
    with open(path, "wb") as fh:
        for i in range(data.n):
            fh.write(orjson.dumps(_line(data, i, columns, letters)) + b"\n")
    return data.n


def _line(
    data: LoggedData, i: int, columns: Mapping[str, int], letters: NamespaceLetters
) -> dict[str, Any]:
    """The DSJSON object of row i; the `_label_*` fields come before `c`, as VW needs."""
    if data.impressions is not None:
        imp = data.impressions[i]
        ids, features, context = imp.action_ids, imp.action_features, imp.context
        version: str | None = imp.policy_version
    else:
        ids = tuple(data.actions[k] for k in np.flatnonzero(data.mask[i]))
        features, context, version = tuple({} for _ in ids), {}, None
    cols = [columns[a] for a in ids]
    chosen = cols.index(int(data.chosen[i]))
    probability = float(data.pscore[i])
    if data.logging_pmf is not None:
        probs = [float(data.logging_pmf[i, k]) for k in cols]
    else:
        rest = (1.0 - probability) / (len(ids) - 1) if len(ids) > 1 else 0.0
        probs = [probability if j == chosen else rest for j in range(len(ids))]
    order = [chosen, *(j for j in range(len(ids)) if j != chosen)]
    event_id = str(data.event_ids[i])
    reward = float(data.reward[i])
    nudge: dict[str, Any] = {
        "trigger": str(data.triggers[i]),
        "learner_id": str(data.learners[i]),
        "label": str(data.labels[i]),
        NAMES_KEY: {**{v: k for k, v in letters.context.items()}, letters.action: ACTION_NAMESPACE},
    }
    if version is not None:
        nudge["policy_version"] = version
    if data.logging_pmf is None:
        nudge["pmf_logged"] = False
    line: dict[str, Any] = {
        "_label_cost": -reward,
        "_label_probability": probability,
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "o": [{"v": reward, "EventId": event_id, "ActionTaken": False}],
    }
    ts = float(data.timestamps[i])
    if math.isfinite(ts):
        line["Timestamp"] = rfc3339(ts)
    line.update(
        Version="1",
        EventId=event_id,
        a=[j + 1 for j in order],
        c={
            **{letters.context.get(ns, ns): _vw_features(f) for ns, f in context.items()},
            "_multi": [
                {"_id": a, letters.action: {f"id{TEXT_MARK}": a, **_vw_features(f)}}
                for a, f in zip(ids, features, strict=True)
            ],
            NUDGE_KEY: nudge,
        },
        p=[probs[j] for j in order],
    )
    return line


def _vw_features(features: Mapping[str, float | str]) -> dict[str, float | str]:
    """A namespace's features as VW should hash them: text `k: v` as `k=: v` (VW: `k=v`)."""
    out: dict[str, float | str] = {}
    for name, value in features.items():
        if isinstance(value, str):
            out[name + TEXT_MARK] = safe_text(value)
        else:
            out[name] = value
    return out


def rfc3339(ts: float) -> str:
    """RFC 3339 UTC text of epoch seconds, to the microsecond (reads back to the same float)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds")[:-6] + "Z"
