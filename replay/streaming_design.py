"""What a streaming replay estimates, laid out before the second pass: slices, targets, units.

A unit is one target (a candidate policy, or always choosing one action) on one slice of the
log (all rows, one trigger's, or the rows where a message and sending nothing were both
candidates, for that message's effect), exactly the (feedback, target) pairs that
`replay.evaluation.evaluate` scores; a contrast is a pair of units on the same slice. `Design`
also holds each slice's tabular reward model from the first pass. `ChunkFrame` puts one chunk
over the log's vocabulary and gives each unit's `LoggedFeedback` on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from replay.candidates import Candidate
from replay.chunk_scan import LogPlan
from replay.chunked import LogChunk
from replay.estimators import LoggedFeedback, _Estimator, tabular_q
from replay.evaluation import Gain
from replay.planned_candidates import PickedBest
from replay.results import ALL_TRIGGERS


@dataclass(frozen=True)
class Slice:
    """The rows of ``trigger`` (all: `ALL_TRIGGERS`) where, with ``effect`` (a message's
    column), that message and the send-nothing action were both candidates."""

    trigger: str = ALL_TRIGGERS
    effect: int | None = None


@dataclass(frozen=True)
class Target:
    """A candidate policy (``kind`` policy, index into the candidates) or always choosing an
    action (``kind`` action, its column)."""

    kind: Literal["policy", "action"]
    index: int


@dataclass(frozen=True)
class Unit:
    slice: Slice
    target: Target


@dataclass(frozen=True)
class Contrast:
    """``first`` minus ``second`` on the same slice: a gain of two policies or a message's
    effect against sending nothing (names as `replay.results.Contrast` reports them)."""

    kind: Literal["gain", "effect"]
    name: str
    first_name: str
    second_name: str
    first: Unit
    second: Unit


@dataclass(frozen=True)
class SliceModel:
    """A slice's tabular reward model: its table q (cells, K) over every trigger, the summed
    inverse propensities N (cells * K) and its rows; ``cells`` are the triggers it covers."""

    q: np.ndarray
    logged: np.ndarray
    total: np.ndarray
    n: int
    cells: np.ndarray


@dataclass(frozen=True)
class Design:
    """Everything the second and third passes compute, fixed after the first."""

    plan: LogPlan
    candidates: tuple[Candidate, ...]
    estimators: tuple[_Estimator, ...]
    policy_slices: tuple[Slice, ...]
    units: tuple[Unit, ...]
    contrasts: tuple[Contrast, ...]
    models: Mapping[Slice, SliceModel]
    effects: bool  # effects vs sending nothing were asked for
    confidence: float
    n_boot: int  # 0: analytic intervals; else Poisson-bootstrap resamples
    seed: int

    @classmethod
    def of(
        cls,
        plan: LogPlan,
        candidates: Sequence[Candidate],
        estimators: Sequence[_Estimator],
        *,
        by_trigger: bool,
        gains: Sequence[Gain],
        effects: bool,
        confidence: float,
        n_boot: int,
        seed: int,
    ) -> Design:
        names = [c.name for c in candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate names must be unique; got {names}")
        policy_slices = [Slice()]
        if by_trigger:
            policy_slices += [Slice(t) for t in plan.triggers]
        units = [
            Unit(s, Target("policy", j)) for j in range(len(candidates)) for s in policy_slices
        ]
        contrasts = []
        for gain in gains:
            for missing in {gain.first, gain.second} - set(names):
                raise ValueError(f"gain {gain.name!r} names {missing!r}, not a candidate {names}")
            first, second = (
                Target("policy", names.index(gain.first)),
                Target("policy", names.index(gain.second)),
            )
            for s in policy_slices:
                contrasts.append(
                    Contrast(
                        "gain", gain.name, gain.first, gain.second, Unit(s, first), Unit(s, second)
                    )
                )
        none = plan.none_column()
        if effects and none is not None:
            for k, message in enumerate(plan.actions):
                if k == none:
                    continue
                for s in policy_slices:
                    trigger = None if s.trigger == ALL_TRIGGERS else s.trigger
                    if plan.rows_in(plan.blocks_in(trigger, k)) < 2:
                        continue
                    at = Slice(s.trigger, k)
                    send, skip = Unit(at, Target("action", k)), Unit(at, Target("action", none))
                    units += [send, skip]
                    contrasts.append(
                        Contrast("effect", message, message, plan.actions[none], send, skip)
                    )
        slices = dict.fromkeys(u.slice for u in units)
        return cls(
            plan=plan,
            candidates=tuple(candidates),
            estimators=tuple(estimators),
            policy_slices=tuple(policy_slices),
            units=tuple(units),
            contrasts=tuple(contrasts),
            models={s: _model(plan, s) for s in slices},
            effects=effects,
            confidence=confidence,
            n_boot=n_boot,
            seed=seed,
        )

    def target_name(self, target: Target) -> str:
        if target.kind == "policy":
            return self.candidates[target.index].name
        return self.plan.actions[target.index]


def _model(plan: LogPlan, s: Slice) -> SliceModel:
    blocks = plan.blocks_in(None if s.trigger == ALL_TRIGGERS else s.trigger, s.effect)
    logged, total = plan.tabular_sums(blocks)
    return SliceModel(
        q=tabular_q(logged, total),
        logged=logged.reshape(-1),
        total=total.reshape(-1),
        n=plan.rows_in(blocks),
        cells=np.unique(plan.block_cell[blocks]),
    )


class ChunkFrame:
    """One chunk over the log's vocabulary: its `LoggedData`, trigger codes, each target's
    probabilities (computed once) and each unit's `LoggedFeedback`."""

    def __init__(self, design: Design, chunk: LogChunk) -> None:
        plan = design.plan
        self.design = design
        self.chunk = chunk
        self.data = chunk.logged(plan.columns, plan.actions, plan.none_action, plan.source)
        self.cells = plan.cell_codes(chunk.triggers)
        self._targets: dict[Target, np.ndarray] = {}
        self._rows: dict[Slice, np.ndarray | None] = {}
        self._feedback: dict[Unit, LoggedFeedback | None] = {}
        self._folds: np.ndarray | None = None

    def target(self, target: Target) -> np.ndarray:
        found = self._targets.get(target)
        if found is None:
            if target.kind == "policy":
                candidate = self.design.candidates[target.index]
                if isinstance(candidate, PickedBest):  # the chunk's folds, computed once
                    found = candidate.probabilities(self.data, folds=self.folds())
                else:
                    found = candidate.probabilities(self.data)
            else:
                found = np.zeros(self.data.mask.shape)
                found[:, target.index] = self.data.mask[:, target.index]  # 0 where masked
            self._targets[target] = found
        return found

    def folds(self) -> np.ndarray:
        if self._folds is None:
            self._folds = self.chunk.folds(self.design.plan.folds)
        return self._folds

    def rows(self, s: Slice) -> np.ndarray | None:
        """The chunk's rows in slice ``s`` (None: all of them)."""
        if s not in self._rows:
            selected: np.ndarray | None = None
            if s.trigger != ALL_TRIGGERS:
                selected = self.cells == self.design.plan.triggers.index(s.trigger)
            if s.effect is not None:
                none = self.design.plan.none_column()
                both = self.data.mask[:, s.effect] & self.data.mask[:, none]
                selected = both if selected is None else selected & both
            self._rows[s] = None if selected is None else np.flatnonzero(selected)
        return self._rows[s]

    def feedback(self, unit: Unit) -> LoggedFeedback | None:
        """The unit's feedback on this chunk (None when the chunk has no row of its slice)."""
        if unit not in self._feedback:
            self._feedback[unit] = self._make_feedback(unit)
        return self._feedback[unit]

    def forget(self, unit: Unit) -> None:
        """Drop the unit's cached feedback (memory: a chunk's worth of (n, K) arrays each)."""
        self._feedback.pop(unit, None)

    def _make_feedback(self, unit: Unit) -> LoggedFeedback | None:
        rows = self.rows(unit.slice)
        target = self.target(unit.target)
        d = self.data
        # The chunk was validated when read, the targets by the candidates (one-hot: below).
        if rows is None:
            return LoggedFeedback.trusted(d.reward, d.pscore, d.chosen, target, d.mask, self.cells)
        if rows.size == 0:
            return None
        return LoggedFeedback.trusted(
            d.reward[rows], d.pscore[rows], d.chosen[rows], target[rows], d.mask[rows],
            self.cells[rows],
        )  # fmt: skip
