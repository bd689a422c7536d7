"""Candidate policies for replay: the contract, the baselines, and policies read from a file.

A candidate gives its probability of every action at every logged decision, an (n, K) array
over the log's vocabulary: zero where ``data.mask`` is False, each row summing to 1. The
baselines answer the questions of a nudge study: the logging policy itself, uniformly random
(any action, or any message), never sending, sending to all (the value of targeting), and
the best single message overall or per trigger, chosen out of sample.
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import orjson

from bandit.errors import InvalidFeedback, ReplayInputError
from replay.logged import PMF_TOLERANCE, LoggedData

# Side files often hold rounded decimals (0.3333): rows within this of 1 are renormalised.
SIDE_FILE_SUM_TOLERANCE = 1e-4


class Candidate(Protocol):
    """A policy to evaluate: its probability of every action at every logged decision."""

    @property
    def name(self) -> str: ...

    def probabilities(self, data: LoggedData) -> np.ndarray:
        """(n, K) float64: zero where ``data.mask`` is False, rows summing to 1."""
        ...


def check_probabilities(name: str, data: LoggedData, probs: np.ndarray) -> np.ndarray:
    """``probs`` as float64 if it is a valid (n, K) target for ``data``; else `InvalidFeedback`
    naming the candidate and its first bad row, so a broken policy fails before estimation."""
    array = np.asarray(probs, dtype=np.float64)
    expected = (data.n, len(data.actions))
    if array.shape != expected:
        raise InvalidFeedback(
            f"candidate {name!r}: probabilities have shape {array.shape}; expected {expected} "
            "(logged decisions, actions)"
        )
    row_sum = np.where(data.mask, array, 0.0).sum(axis=1)
    checks: tuple[tuple[np.ndarray | np.bool_, Callable[[int], str]], ...] = (
        (~np.isfinite(array).all(axis=1), lambda _row: "has a value that is not finite"),
        ((array < 0.0).any(axis=1), lambda _row: "has a negative probability"),
        (((array > 0.0) & ~data.mask).any(axis=1), lambda row: _unavailable(data, array, row)),
        (
            np.abs(row_sum - 1.0) > PMF_TOLERANCE,
            lambda row: f"sums to {row_sum[row]:.9g} over available actions, not 1",
        ),
    )
    for bad, problem in checks:
        if bad.any():
            row = int(np.argmax(bad))
            raise InvalidFeedback(
                f"candidate {name!r}: row {row} (event {data.event_ids[row]!r}) "
                f"{problem(row)} (first bad row of {int(bad.sum())})"
            )
    return array


def _unavailable(data: LoggedData, array: np.ndarray, row: int) -> str:
    col = int(np.argmax((array[row] > 0.0) & ~data.mask[row]))
    return f"puts {array[row, col]:g} on {data.actions[col]!r}, which was not a candidate there"


def _none_column(name: str, data: LoggedData) -> int:
    """The column of the send-nothing action, or a clear error when the log has none."""
    if data.none_action is None:
        raise InvalidFeedback(
            f"candidate {name!r}: the log has no send-nothing action (actions: "
            f"{list(data.actions)}); set the none action of the source"
        )
    return data.action_index(data.none_action)


def _message_mask(data: LoggedData) -> np.ndarray:
    """(n, K) True where a message (not the send-nothing action) was a candidate."""
    messages = data.mask.copy()
    if data.none_action is not None:
        messages[:, data.action_index(data.none_action)] = False
    return messages


def _uniform(mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=1, keepdims=True)
    return np.where(mask, 1.0 / np.maximum(counts, 1), 0.0)


@dataclass(frozen=True)
class LoggingPolicy:
    """The policy that logged the data, from each decision's full logged pmf: its estimate is
    the sanity check every other value is compared with."""

    name: str = "logging"

    def probabilities(self, data: LoggedData) -> np.ndarray:
        if data.logging_pmf is None:
            raise InvalidFeedback(
                f"candidate {self.name!r}: the log has no full pmf of the logging policy (some "
                "decisions logged only the chosen action's probability), so only the on-policy "
                "mean of the logged rewards is available for it"
            )
        return check_probabilities(self.name, data, data.logging_pmf.copy())


@dataclass(frozen=True)
class Uniform:
    """Uniformly random over the available actions; ``messages_only``: over the available
    messages (the study's "random message" arm), sending nothing only where no message is."""

    name: str = "uniform"
    messages_only: bool = False

    def probabilities(self, data: LoggedData) -> np.ndarray:
        mask = data.mask
        if self.messages_only:
            messages = _message_mask(data)
            no_message = ~messages.any(axis=1)
            messages[no_message] = data.mask[no_message]
            mask = messages
        return check_probabilities(self.name, data, _uniform(mask))


@dataclass(frozen=True)
class NeverSend:
    """All mass on the send-nothing action: the control every message's effect is against."""

    name: str = "never-send"

    def probabilities(self, data: LoggedData) -> np.ndarray:
        col = _none_column(self.name, data)
        missing = ~data.mask[:, col]
        if missing.any():
            row = int(np.argmax(missing))
            raise InvalidFeedback(
                f"candidate {self.name!r}: row {row} (event {data.event_ids[row]!r}) did not "
                f"offer {data.none_action!r}, so sending nothing was not possible there "
                f"(first of {int(missing.sum())} such rows)"
            )
        probs = np.zeros(data.mask.shape)
        probs[:, col] = 1.0
        return check_probabilities(self.name, data, probs)


@dataclass(frozen=True)
class AlwaysSend:
    """``base`` with its send-nothing mass moved onto the available messages in proportion
    ("send to all"); uniform over messages where ``base`` sends nothing at all.

    ``base`` minus ``AlwaysSend(base)`` is the value of targeting: of choosing whom not to nudge.
    Rows without any available message keep sending nothing.
    """

    base: Candidate
    name: str = ""  # default: "always-send(<base>)"

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"always-send({self.base.name})")

    def probabilities(self, data: LoggedData) -> np.ndarray:
        name = str(self.name)
        rows = check_probabilities(self.base.name, data, self.base.probabilities(data))
        if data.none_action is None:
            return rows  # nothing to move
        col = data.action_index(data.none_action)
        messages = _message_mask(data)
        has_message = messages.any(axis=1)
        sent = np.where(messages, rows, 0.0)
        total = sent.sum(axis=1, keepdims=True)
        share = np.where(total > 0.0, sent / np.where(total > 0.0, total, 1.0), _uniform(messages))
        moved = np.where(has_message, rows[:, col], 0.0)[:, None]
        out = sent + moved * share
        out[:, col] = np.where(has_message, 0.0, rows[:, col])
        return check_probabilities(name, data, out)


@dataclass(frozen=True)
class Ranking:
    """Actions ranked by their SNIPS value on training rows, best first (nan: never chosen)."""

    actions: tuple[str, ...]
    values: tuple[float, ...]
    rows: int  # training rows the values rest on

    @property
    def best(self) -> str:
        return self.actions[0]


@dataclass(frozen=True)
class FoldPicks:
    """What `BestUniform` chose for the rows of one fold, from the other folds' rows."""

    fold: int
    overall: Ranking
    by_trigger: dict[str, Ranking] = field(default_factory=dict)  # empty unless by trigger

    def best(self, trigger: str | None = None) -> str:
        """The pick at ``trigger`` (the overall pick for None or a trigger without data)."""
        ranking = self.by_trigger.get(trigger, self.overall) if trigger else self.overall
        return ranking.best


@dataclass(frozen=True)
class BestUniform:
    """The best single action overall, or per trigger, chosen out of sample by cross-fitting.

    The rows of fold f get the action ranked best by SNIPS on the other folds' rows:
    ``V(a) = sum 1[a_i = a] r_i / p_i / sum 1[a_i = a] / p_i`` (the value of always choosing
    a, where it was available), per trigger when ``by_trigger`` (an unseen trigger uses the
    overall ranking), falling to the next-ranked action where the best was not a candidate.
    Out of sample because picking the best of many noisy estimates and evaluating it on the
    same rows is optimistic (the winner's curse); the push-nudge study likewise tested its
    best message on data it was not chosen on. ``include_none=False`` ranks messages only.
    """

    by_trigger: bool
    folds: int = 2
    include_none: bool = True
    name: str = ""  # default: best-uniform[-messages][-per-trigger]

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(
                f"BestUniform needs at least 2 folds to pick out of sample; got {self.folds}"
            )
        if not self.name:
            suffix = ("" if self.include_none else "-messages") + (
                "-per-trigger" if self.by_trigger else ""
            )
            object.__setattr__(self, "name", f"best-uniform{suffix}")

    def picks(self, data: LoggedData) -> dict[int, FoldPicks]:
        """Fold -> the rankings its rows were served by (say which message was best)."""
        folds = data.folds(self.folds)
        return {f: self._fold_picks(data, folds != f, f) for f in range(self.folds)}

    def probabilities(self, data: LoggedData) -> np.ndarray:
        folds = data.folds(self.folds)
        triggers = data.triggers.astype(str)
        probs = np.zeros(data.mask.shape)
        for f in range(self.folds):
            picks = self._fold_picks(data, folds != f, f)
            rows = np.flatnonzero(folds == f)
            for trigger in np.unique(triggers[rows]).tolist():
                at = rows[triggers[rows] == trigger]
                ranking = picks.by_trigger.get(trigger, picks.overall)
                probs[at, self._first_available(data, ranking, at)] = 1.0
        return check_probabilities(str(self.name), data, probs)

    def _fold_picks(self, data: LoggedData, train: np.ndarray, fold: int) -> FoldPicks:
        overall = self._ranking(data, train, None)
        if not self.by_trigger:
            return FoldPicks(fold, overall)
        triggers = data.triggers.astype(str)
        by_trigger = {
            t: self._ranking(data, train & (triggers == t), overall)
            for t in data.trigger_ids
            if (train & (triggers == t)).any()
        }
        return FoldPicks(fold, overall, by_trigger)

    def _ranking(self, data: LoggedData, rows: np.ndarray, fallback: Ranking | None) -> Ranking:
        """Actions by SNIPS value on ``rows``, best first; actions never chosen there follow in
        the ``fallback`` order (vocabulary order without one), and excluded none comes last."""
        k = len(data.actions)
        weight = 1.0 / data.pscore[rows]
        chosen = data.chosen[rows]
        num = np.bincount(chosen, weights=data.reward[rows] * weight, minlength=k)
        den = np.bincount(chosen, weights=weight, minlength=k)
        values = np.divide(num, den, out=np.full(k, np.nan), where=den > 0)
        order = list(fallback.actions) if fallback else list(data.actions)
        if fallback and data.none_action and data.none_action not in order:
            order.append(data.none_action)
        position = {a: i for i, a in enumerate(order)}
        excluded = None if self.include_none else data.none_action

        def key(col: int) -> tuple[bool, float, int]:
            action = data.actions[col]
            value = values[col]
            return (math.isnan(value), -value if not math.isnan(value) else 0.0, position[action])

        ranked = sorted((c for c in range(k) if data.actions[c] != excluded), key=key)
        return Ranking(
            actions=tuple(data.actions[c] for c in ranked),
            values=tuple(float(values[c]) for c in ranked),
            rows=int(np.count_nonzero(rows)),
        )

    @staticmethod
    def _first_available(data: LoggedData, ranking: Ranking, rows: np.ndarray) -> np.ndarray:
        """(len(rows),) column of the best-ranked action available at each row; the
        send-nothing action where no ranked action is (it was excluded from the ranking)."""
        k = len(data.actions)
        rank = np.full(k, k, dtype=np.int64)  # unranked (excluded none): after every ranked
        for r, action in enumerate(ranking.actions):
            rank[data.action_index(action)] = r
        positions = np.where(data.mask[rows], rank[None, :], k + 1)
        return np.argmin(positions, axis=1)


# ---- policies given from outside: an array, a mapping, or a side file --------------------------


@dataclass(frozen=True)
class _Entry:
    """One event's probabilities as read: action -> (probability, line), first line."""

    line: int
    probs: dict[str, tuple[float, int]]


Where = Callable[[str, int], str]  # (event id, line) -> where, for ReplayInputError


@dataclass(frozen=True)
class External:
    """A policy computed elsewhere: an (n, K) array over the log's vocabulary, or a mapping
    event id -> {action: probability} (validated against the log when used)."""

    name: str
    table: np.ndarray | Mapping[str, Mapping[str, float]]

    def probabilities(self, data: LoggedData) -> np.ndarray:
        if isinstance(self.table, np.ndarray):
            return check_probabilities(self.name, data, self.table.copy())
        source = f"candidate {self.name!r}"
        entries = {
            str(eid): _Entry(
                0, {str(a): (_probability(p, f"{source} event {eid!r}"), 0) for a, p in row.items()}
            )
            for eid, row in self.table.items()
        }
        probs = _matrix(entries, data, source, lambda eid, _line: f"{source} event {eid!r}")
        return check_probabilities(self.name, data, probs)


def load_external(path: Path | str, data: LoggedData, name: str | None = None) -> External:
    """A candidate from a side file keyed by event id, checked against ``data``.

    JSON lines (``.jsonl``, ``.ndjson``, ``.json``): ``{"event_id": ..., "probabilities":
    {"action": p, ...}}`` per line; CSV (``.csv``): columns event_id, action, probability,
    one row per (event, action). Every log event needs a row summing to 1 (within
    ``SIDE_FILE_SUM_TOLERANCE``, then renormalised) over its available actions; actions left
    out get 0. Events the log does not have are ignored. Errors name the file line and field.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        entries = _read_jsonl(path, data)
    elif suffix == ".csv":
        entries = _read_csv(path, data)
    else:
        raise ReplayInputError(
            str(path), "path", f"unknown side-file type {suffix!r}; use .jsonl or .csv"
        )
    probs = _matrix(entries, data, str(path), lambda _eid, line: f"{path} line {line}")
    return External(name or path.stem, probs)


def _read_jsonl(path: Path, data: LoggedData) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            where = f"{path} line {line_no}"
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ReplayInputError(where, "line", f"not JSON ({exc})") from None
            if not isinstance(doc, dict):
                raise ReplayInputError(where, "line", "expected a JSON object")
            eid = _event_id(doc.get("event_id"), where)
            probs = doc.get("probabilities")
            if not isinstance(probs, dict) or not probs:
                raise ReplayInputError(
                    where, "probabilities", "expected a non-empty object {action: probability}"
                )
            _add_event(entries, eid, line_no, where)
            for action, value in probs.items():
                _add(entries[eid], data, str(action), value, line_no, where)
    return entries


def _read_csv(path: Path, data: LoggedData) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"event_id", "action", "probability"} - set(reader.fieldnames or ())
        if missing:
            raise ReplayInputError(
                f"{path} line 1", "header", f"missing columns {sorted(missing)}; need "
                "event_id, action, probability",
            )  # fmt: skip
        for row in reader:
            line_no = reader.line_num
            where = f"{path} line {line_no}"
            eid = _event_id(row["event_id"], where)
            if eid not in entries:
                _add_event(entries, eid, line_no, where)
            _add(entries[eid], data, str(row["action"] or ""), row["probability"], line_no, where)
    return entries


def _event_id(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ReplayInputError(where, "event_id", f"expected a non-empty id, got {value!r}")
    return str(value)


def _add_event(entries: dict[str, _Entry], eid: str, line: int, where: str) -> None:
    if eid in entries:
        raise ReplayInputError(
            where, "event_id", f"event {eid!r} repeats (first on line {entries[eid].line})"
        )
    entries[eid] = _Entry(line, {})


def _add(
    entry: _Entry, data: LoggedData, action: str, value: object, line: int, where: str
) -> None:
    if action not in data.actions:
        raise ReplayInputError(
            where, "action", f"unknown action {action!r}; the log has {list(data.actions)}"
        )
    if action in entry.probs:
        raise ReplayInputError(
            where, "action", f"{action!r} repeats (first on line {entry.probs[action][1]})"
        )
    entry.probs[action] = (_probability(value, where), line)


def _probability(value: object, where: str) -> float:
    p = math.nan
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            p = float(value)
    if not 0.0 <= p <= 1.0:  # also refuses nan
        raise ReplayInputError(where, "probability", f"{value!r} is not a probability in [0, 1]")
    return p


def _matrix(
    entries: Mapping[str, _Entry], data: LoggedData, source: str, where: Where
) -> np.ndarray:
    """(n, K) from per-event entries: every log event present, mass only on its candidates,
    each row summing to 1 (within ``SIDE_FILE_SUM_TOLERANCE``; renormalised)."""
    column = {a: k for k, a in enumerate(data.actions)}
    probs = np.zeros(data.mask.shape)
    absent: list[str] = []
    for i, eid in enumerate(data.event_ids.tolist()):
        entry = entries.get(str(eid))
        if entry is None:
            absent.append(str(eid))
            continue
        for action, (p, line) in entry.probs.items():
            k = column.get(action)
            if k is None:
                raise ReplayInputError(
                    where(str(eid), line), "action", f"unknown action {action!r}"
                )
            if p > 0.0 and not data.mask[i, k]:
                offered = [a for a, m in zip(data.actions, data.mask[i], strict=True) if m]
                raise ReplayInputError(
                    where(str(eid), line),
                    "probabilities",
                    f"{action!r} gets {p:g} but was not a candidate of event {eid!r} "
                    f"(candidates: {offered})",
                )
            probs[i, k] = p
        total = probs[i].sum()
        if abs(total - 1.0) > SIDE_FILE_SUM_TOLERANCE:
            raise ReplayInputError(
                where(str(eid), entry.line),
                "probabilities",
                f"event {eid!r}: probabilities sum to {total:g}, not 1",
            )
        probs[i] /= total
    if absent:  # after the rows that are there, whose errors name a line
        raise ReplayInputError(
            source,
            "event_id",
            f"no probabilities for logged event {absent[0]!r} ({len(absent)} of {data.n} "
            "logged events missing)",
        )
    return probs
