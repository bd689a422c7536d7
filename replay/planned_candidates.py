"""Trigger-level candidate policies for a log read in chunks, built after its first pass.

Candidates of `replay.candidates` whose probabilities at a decision depend on that decision
alone (logging, uniform, random-message, never-send, and always-send of those) run on each
chunk as they are. `BestUniform` picks its actions from the whole log, so `PickedBest` is the
same policy with the picks made from the first pass's sums (`replay.chunk_scan.LogPlan`): it
too runs chunk by chunk and gives the same probabilities. VW-based candidates need contexts
and side files a join by event id, so they stay on the in-memory path: `streamable` tells
which spec lists can be streamed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bandit.errors import InvalidFeedback
from replay.candidates import (
    AlwaysSend,
    Candidate,
    FoldPicks,
    LoggingPolicy,
    NeverSend,
    Ranking,
    Uniform,
    check_probabilities,
)
from replay.chunk_scan import LogPlan
from replay.logged import LoggedData
from replay.policy_specs import (
    TRIGGER_LEVEL_KINDS,
    PolicySpec,
    PolicySpecError,
    parse_policy_spec,
)

STREAMABLE_KINDS = (*TRIGGER_LEVEL_KINDS, "always-send")


def streamable(specs: Sequence[str]) -> bool:
    """True when every spec builds a trigger-level candidate (always-send of one, or of a
    streamable candidate named before it); malformed specs count as streamable, so that the
    streaming path reports them."""
    names: set[str] = set()
    for text in specs:
        try:
            spec = parse_policy_spec(text)
        except PolicySpecError:
            return True
        if spec.kind not in STREAMABLE_KINDS:
            return False
        base_unknown = spec.kind == "always-send" and spec.argument not in names
        if base_unknown and not streamable([spec.argument]):
            return False
        names.add(spec.name or _default_name(spec))
    return True


def default_specs(plan: LogPlan) -> list[str]:
    """`replay.policy_specs.default_policy_specs` for a log without contexts, from its plan."""
    specs = ["uniform"]
    if plan.has_pmf:
        specs.insert(0, "logging")
    if plan.none_action is not None:
        specs.append("random-message")
        if plan.rows_without_none() == 0:
            specs.append("never-send")
    return [*specs, "best-uniform", "best-per-trigger"]


def build_planned(specs: Sequence[str] | None, plan: LogPlan) -> list[Candidate]:
    """Candidates for the log of ``plan`` from ``specs`` (None or empty: `default_specs`);
    best-* candidates cross-fit over the plan's folds. Problems are `PolicySpecError`s."""
    parsed = [parse_policy_spec(t) for t in (specs or default_specs(plan))]
    built: dict[str, Candidate] = {}
    for spec in parsed:
        try:
            candidate = _build(spec, plan, built)
        except PolicySpecError:
            raise
        except (InvalidFeedback, ValueError) as exc:
            raise PolicySpecError(spec.text, str(exc)) from None
        if candidate.name in built:
            raise PolicySpecError(
                spec.text,
                f"a candidate named {candidate.name!r} is already there; rename one (NAME=SPEC)",
            )
        built[candidate.name] = candidate
    return list(built.values())


def _default_name(spec: PolicySpec) -> str:
    if spec.kind == "always-send":
        return f"always-send({spec.argument})"
    return spec.kind


def _build(spec: PolicySpec, plan: LogPlan, built: Mapping[str, Candidate]) -> Candidate:
    kind, name = spec.kind, spec.name
    if kind not in STREAMABLE_KINDS:
        raise PolicySpecError(
            spec.text,
            f"{kind} needs the log in memory (contexts or a join by event id); it cannot be "
            "evaluated over chunks",
        )
    if kind == "logging":
        if not plan.has_pmf:
            raise InvalidFeedback(
                f"candidate {name or kind!r}: the log has no full pmf of the logging policy "
                f"({plan.n - plan.with_pmf} of {plan.n} decisions logged only the chosen "
                "action's probability)"
            )
        return LoggingPolicy(name or kind)
    if kind in ("uniform", "random-message"):
        return Uniform(name=name or kind, messages_only=kind == "random-message")
    if kind == "never-send":
        _check_never_send(name or kind, plan)
        return NeverSend(name or kind)
    if kind in ("best-uniform", "best-message", "best-per-trigger"):
        by_trigger, include_none = kind == "best-per-trigger", kind != "best-message"
        picks = fold_picks(plan, by_trigger=by_trigger, include_none=include_none)
        return PickedBest(name or kind, plan.folds, picks)
    base = built.get(spec.argument)
    if base is None:
        base = _build(parse_policy_spec(spec.argument), plan, built)
    return AlwaysSend(base, name=name or "")


def _check_never_send(name: str, plan: LogPlan) -> None:
    if plan.none_action is None:
        raise InvalidFeedback(
            f"candidate {name!r}: the log has no send-nothing action (actions: "
            f"{list(plan.actions)}); set the none action of the source"
        )
    missing = plan.rows_without_none()
    if missing:
        raise InvalidFeedback(
            f"candidate {name!r}: {missing} of {plan.n} decisions did not offer "
            f"{plan.none_action!r}, so sending nothing was not possible there"
        )


# ---- the best single action, picked from the first pass -----------------------------------------


def fold_picks(plan: LogPlan, *, by_trigger: bool, include_none: bool) -> dict[int, FoldPicks]:
    """`BestUniform.picks` from the plan's sums: for each fold, actions ranked by SNIPS on the
    other folds' decisions, overall and (``by_trigger``) per trigger with data there."""
    picks = {}
    for fold in range(plan.folds):
        train = np.arange(plan.folds) != fold
        count = plan.count[:, train].sum(axis=1)  # (blocks, K)
        num = plan.weighted[:, train].sum(axis=1)
        den = plan.inverse[:, train].sum(axis=1)
        overall = _ranking(
            plan, num.sum(axis=0), den.sum(axis=0), int(count.sum()), None, include_none
        )
        by: dict[str, Ranking] = {}
        if by_trigger:
            for cell, trigger in enumerate(plan.triggers):
                at = plan.block_cell == cell
                if count[at].sum() > 0:
                    by[trigger] = _ranking(
                        plan, num[at].sum(axis=0), den[at].sum(axis=0), int(count[at].sum()),
                        overall, include_none,
                    )  # fmt: skip
        picks[fold] = FoldPicks(fold, overall, by)
    return picks


def _ranking(
    plan: LogPlan,
    num: np.ndarray,
    den: np.ndarray,
    rows: int,
    fallback: Ranking | None,
    include_none: bool,
) -> Ranking:
    """`BestUniform._ranking` from summed ``r/p`` and ``1/p`` by chosen action (K,)."""
    k = plan.k
    values = np.divide(num, den, out=np.full(k, np.nan), where=den > 0)
    order = list(fallback.actions) if fallback else list(plan.actions)
    if fallback and plan.none_action and plan.none_action not in order:
        order.append(plan.none_action)
    position = {a: i for i, a in enumerate(order)}
    excluded = None if include_none else plan.none_action

    def key(col: int) -> tuple[bool, float, int]:
        value = float(values[col])
        return (
            math.isnan(value),
            -value if not math.isnan(value) else 0.0,
            position[plan.actions[col]],
        )

    ranked = sorted((c for c in range(k) if plan.actions[c] != excluded), key=key)
    return Ranking(
        actions=tuple(plan.actions[c] for c in ranked),
        values=tuple(float(values[c]) for c in ranked),
        rows=rows,
    )


@dataclass(frozen=True)
class PickedBest:
    """`BestUniform` with given picks: the rows of fold f take ``picks[f]``'s best action
    available there (per trigger when it has a ranking for the row's trigger)."""

    name: str
    folds: int
    picks: Mapping[int, FoldPicks]

    def probabilities(self, data: LoggedData, folds: np.ndarray | None = None) -> np.ndarray:
        """``folds``: the rows' folds when already known (`LoggedData.folds(self.folds)`)."""
        folds = data.folds(self.folds) if folds is None else folds
        triggers = data.triggers.astype(str)
        probs = np.zeros(data.mask.shape)
        for fold, picks in self.picks.items():
            rows = np.flatnonzero(folds == fold)
            for trigger in np.unique(triggers[rows]).tolist():
                at = rows[triggers[rows] == trigger]
                ranking = picks.by_trigger.get(trigger, picks.overall)
                probs[at, _first_available(data, ranking, at)] = 1.0
        return check_probabilities(self.name, data, probs)


def _first_available(data: LoggedData, ranking: Ranking, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) column of the best-ranked action available at each row; the send-nothing
    action where no ranked action is (it was excluded from the ranking)."""
    k = len(data.actions)
    rank = np.full(k, k, dtype=np.int64)
    for r, action in enumerate(ranking.actions):
        rank[data.action_index(action)] = r
    return np.argmin(np.where(data.mask[rows], rank[None, :], k + 1), axis=1)
