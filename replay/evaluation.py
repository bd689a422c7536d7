"""Replay: every candidate policy through every estimator, overall and per trigger, plus the
paired contrasts (personalization and targeting gains, each message's effect vs no message).

The reward model of DM / DR / DRos is the tabular one by trigger (fitted inside the
estimators, refitted per bootstrap resample), so it needs nothing but the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bandit.errors import InvalidFeedback
from replay.candidates import Candidate
from replay.estimators import (
    DM,
    DR,
    IPS,
    SNIPS,
    Diagnostics,
    DRos,
    Estimate,
    LoggedFeedback,
    _Estimator,
)
from replay.logged import LoggedData
from replay.progress import Progress
from replay.results import ALL_TRIGGERS, Contrast, EstimateRow, PolicyDiagnostics, ReplayResult

Interval = Literal["normal", "bootstrap"]


ESTIMATORS: dict[str, Callable[[], _Estimator]] = {
    "IPS": IPS,
    "SNIPS": SNIPS,
    "DM": DM,
    "DR": DR,
    "DRos": DRos,
}


@dataclass(frozen=True)
class Gain:
    """A named paired contrast between two candidates: ``first`` minus ``second``."""

    name: str
    first: str
    second: str


def build_estimators(names: Sequence[str], clip: float | None = None) -> list[_Estimator]:
    """Estimator objects by name (``clip`` applies to IPS and DR)."""
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}")
    built: list[_Estimator] = []
    for name in names:
        if clip is not None and name in ("IPS", "DR"):
            built.append(IPS(clip=clip) if name == "IPS" else DR(clip=clip))
        else:
            built.append(ESTIMATORS[name]())
    return built


def evaluate(
    data: LoggedData,
    candidates: Sequence[Candidate],
    *,
    estimators: Sequence[str] = ("IPS", "SNIPS", "DM", "DR", "DRos"),
    clip: float | None = None,
    confidence: float = 0.95,
    interval: Interval = "normal",
    n_boot: int = 200,
    seed: int = 0,
    by_trigger: bool = True,
    gains: Sequence[Gain] = (),
    effects: bool = True,
    progress: Progress | None = None,
) -> ReplayResult:
    """Estimate every candidate's value on `data`; see the module docstring."""
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique; got {names}")
    built = build_estimators(estimators, clip)
    timings: dict[str, float] = {}
    scorer = _Scorer(data, built, confidence, interval, n_boot, seed)
    targets: dict[str, np.ndarray] = {}
    rows: list[EstimateRow] = []
    diagnostics: list[PolicyDiagnostics] = []
    notes: list[str] = []
    for done, candidate in enumerate(candidates):
        if progress:
            progress("policies", done, len(candidates))
        started = time.perf_counter()
        target = candidate.probabilities(data)
        timings[f"policy {candidate.name}"] = time.perf_counter() - started
        targets[candidate.name] = target
        started = time.perf_counter()
        rows += scorer.rows(candidate.name, target, by_trigger)
        diagnostics.append(scorer.diagnostics(candidate.name, target))
        timings[f"estimate {candidate.name}"] = time.perf_counter() - started
    if progress:
        progress("policies", len(candidates), len(candidates))
    contrasts: list[Contrast] = []
    for gain in gains:
        for missing in {gain.first, gain.second} - set(targets):
            raise ValueError(f"gain {gain.name!r} names {missing!r}, not a candidate {names}")
        contrasts += scorer.gain(gain, targets[gain.first], targets[gain.second], by_trigger)
    if effects:
        started = time.perf_counter()
        found = scorer.effects(by_trigger)
        timings["effects"] = time.perf_counter() - started
        if data.none_action is None:
            notes.append("no send-nothing action in the log: effects vs no message not estimated")
        contrasts += found
    if any(d.ess < 0.01 * d.n for d in diagnostics):
        notes.append("some policies rest on very few effective events; see their warnings")
    return ReplayResult(
        source=data.source,
        n_events=data.n,
        skipped=dict(data.skipped),
        actions=data.actions,
        triggers=data.trigger_ids,
        policies=tuple(names),
        estimators=tuple(e.name for e in built),
        confidence=confidence,
        estimates=tuple(rows),
        diagnostics=tuple(diagnostics),
        contrasts=tuple(contrasts),
        notes=tuple(notes),
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )


class _Scorer:
    """Estimates on `data` (whole or by trigger) for one set of estimators and interval kind."""

    def __init__(
        self,
        data: LoggedData,
        estimators: list[_Estimator],
        confidence: float,
        interval: Interval,
        n_boot: int,
        seed: int,
    ) -> None:
        if interval not in ("normal", "bootstrap"):
            raise ValueError(f"interval must be 'normal' or 'bootstrap'; got {interval!r}")
        self.data = data
        self.estimators = estimators
        self.confidence = confidence
        self.interval = interval
        self.n_boot = n_boot
        self.seed = seed
        self.trigger_names, self.cells = data.trigger_codes()
        self.rows_of = {
            name: np.flatnonzero(self.cells == code) for code, name in enumerate(self.trigger_names)
        }

    def feedback(self, target: np.ndarray, rows: np.ndarray | None = None) -> LoggedFeedback:
        d = self.data
        if rows is None:
            return LoggedFeedback(d.reward, d.pscore, d.chosen, target, mask=d.mask, cells=self.cells)
        return LoggedFeedback(
            d.reward[rows], d.pscore[rows], d.chosen[rows], target[rows],
            mask=d.mask[rows], cells=self.cells[rows],
        )  # fmt: skip

    def _one(
        self, estimator: _Estimator, feedback: LoggedFeedback, minus: LoggedFeedback | None
    ) -> Estimate:
        if self.interval == "bootstrap":
            return estimator.bootstrap_interval(
                feedback, seed=self.seed, n_boot=self.n_boot, confidence=self.confidence,
                minus=minus,
            )  # fmt: skip
        if minus is not None:
            return estimator.estimate_difference(feedback, minus, confidence=self.confidence)
        return estimator.estimate(feedback, confidence=self.confidence)

    def _slices(self, by_trigger: bool) -> list[tuple[str, np.ndarray | None]]:
        slices: list[tuple[str, np.ndarray | None]] = [(ALL_TRIGGERS, None)]
        if by_trigger:
            slices += list(self.rows_of.items())
        return slices

    def rows(self, policy: str, target: np.ndarray, by_trigger: bool) -> list[EstimateRow]:
        _check_target(policy, self.data, target)
        out = []
        for trigger, rows in self._slices(by_trigger):
            feedback = self.feedback(target, rows)
            for estimator in self.estimators:
                est = self._one(estimator, feedback, None)
                out.append(_row(policy, trigger, feedback.n, est))
        return out

    def diagnostics(self, policy: str, target: np.ndarray) -> PolicyDiagnostics:
        feedback = self.feedback(target)
        diag = Diagnostics.of(feedback)
        warnings = diag.warnings()
        if any(e.name == "DM" for e in self.estimators) and _varies_within_triggers(
            target, self.cells
        ):
            warnings.append(
                "DM's tabular reward model sees only the trigger: for this policy, which varies "
                "within triggers, DM is biased (it misses what personalization earns); trust DR"
            )
        return PolicyDiagnostics(
            policy, diag.n, diag.ess, diag.min_weight, diag.max_weight,
            diag.zero_support_share, tuple(warnings),
        )  # fmt: skip

    def gain(
        self, gain: Gain, first: np.ndarray, second: np.ndarray, by_trigger: bool
    ) -> list[Contrast]:
        out = []
        for trigger, rows in self._slices(by_trigger):
            f1, f2 = self.feedback(first, rows), self.feedback(second, rows)
            for estimator in self.estimators:
                est = self._one(estimator, f1, f2)
                out.append(_contrast("gain", gain.name, gain.first, gain.second, trigger, f1.n, est))
        return out

    def effects(self, by_trigger: bool) -> list[Contrast]:
        """Each message's value minus sending nothing, where both were candidates."""
        d = self.data
        if d.none_action is None:
            return []
        none = d.action_index(d.none_action)
        out = []
        for k, message in enumerate(d.actions):
            if k == none:
                continue
            both = d.mask[:, k] & d.mask[:, none]
            send, skip = _one_hot(d, k), _one_hot(d, none)
            for trigger, rows in self._slices(by_trigger):
                chosen_rows = np.flatnonzero(both) if rows is None else rows[both[rows]]
                if chosen_rows.size < 2:
                    continue
                f1, f2 = self.feedback(send, chosen_rows), self.feedback(skip, chosen_rows)
                for estimator in self.estimators:
                    est = self._one(estimator, f1, f2)
                    out.append(
                        _contrast(
                            "effect", message, message, d.none_action, trigger, f1.n, est
                        )
                    )
        return out


def _one_hot(data: LoggedData, column: int) -> np.ndarray:
    target = np.zeros((data.n, len(data.actions)))
    target[:, column] = 1.0
    return target


def _check_target(policy: str, data: LoggedData, target: np.ndarray) -> None:
    expected = (data.n, len(data.actions))
    if target.shape != expected:
        raise InvalidFeedback(f"policy {policy!r} gave probabilities of shape {target.shape}; "
                              f"expected {expected}")
    off = (target > 0) & ~data.mask
    if off.any():
        row = int(np.argmax(off.any(axis=1)))
        raise InvalidFeedback(
            f"policy {policy!r} puts probability on an action that was not a candidate at "
            f"logged decision {row} ({data.event_ids[row]})"
        )


def _varies_within_triggers(target: np.ndarray, cells: np.ndarray) -> bool:
    order = np.argsort(cells, kind="stable")
    sorted_target, sorted_cells = target[order], cells[order]
    same_cell = sorted_cells[1:] == sorted_cells[:-1]
    changed = np.abs(np.diff(sorted_target, axis=0)).max(axis=1) > 1e-12
    return bool((same_cell & changed).any())


def _row(policy: str, trigger: str, n: int, est: Estimate) -> EstimateRow:
    return EstimateRow(
        policy, est.estimator, trigger, est.value, est.low, est.high, est.se, n, est.method
    )


def _contrast(
    kind: Literal["gain", "effect"],
    name: str,
    first: str,
    second: str,
    trigger: str,
    n: int,
    est: Estimate,
) -> Contrast:
    return Contrast(
        kind, name, first, second, trigger, est.estimator, est.value, est.low, est.high,
        est.se, n, est.method,
    )  # fmt: skip
