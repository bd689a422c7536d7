"""Candidate policies that run Vowpal Wabbit (through `bandit`, never importing it here).

A published snapshot (its VW pmf, its greedy choice, or the whole mixture the decision service
logs), "what if we had run this VW configuration" (progressive validation: predict each
decision, then learn it), and the out-of-sample personalised policy (cross-fitting: trained on
the other folds, applied to this one). All need the logged contexts (``data.impressions``).

The learned ones take the config's learning settings; a log whose context namespaces the config
does not know (another system's DSJSON) gets VW letters and shared × action interactions of
its own (`replay.vw_namespaces`), and action ids are made safe for VW's text format. Each
remembers the probabilities of the last log it scored: ``always-send(personalized)`` asks for
them again, and the VW training is the expensive part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from bandit.config import Config, LearnerConfig
from bandit.decisions import Decider
from bandit.errors import InvalidFeedback, NudgeError
from bandit.events import Impression, OutcomeLabel
from bandit.join import JoinedEvent
from bandit.learning import OnlineLearner
from bandit.snapshots import LATEST, signing_key, warm_start_state
from bandit.vw_text import safe_text
from replay.candidates import check_probabilities
from replay.logged import LoggedData
from replay.progress import Progress
from replay.vw_namespaces import learner_for_log

SnapshotMode = Literal["pmf", "greedy", "deployed"]
LearnedMode = Literal["pmf", "greedy"]
PROGRESS_EVERY_ROWS = 5_000
_LABELS = frozenset(label.value for label in OutcomeLabel)


def require_impressions(name: str, data: LoggedData) -> tuple[Impression, ...]:
    """The logged contexts, or a clear error: VW policies score contexts, not just triggers."""
    if data.impressions is None:
        raise InvalidFeedback(
            f"candidate {name!r} runs a VW policy on each decision's context, but the source "
            f"{data.source or '(unnamed)'} has no contexts (e.g. a table without context "
            "columns); replay it with trigger-only candidates, or export the events with contexts"
        )
    return data.impressions


def _columns(data: LoggedData, imp: Impression) -> np.ndarray:
    """Columns of the log's vocabulary for the impression's own action order."""
    return np.fromiter(
        (data.action_index(a) for a in imp.action_ids), np.int64, len(imp.action_ids)
    )


def _row(data: LoggedData, imp: Impression, pmf: np.ndarray, greedy: bool) -> np.ndarray:
    """One (K,) target row from a pmf over the impression's actions: renormalised (VW's float32
    pmf can miss 1 by ~1e-7), or one-hot on its argmax (the first of equals) when greedy."""
    row = np.zeros(len(data.actions))
    cols = _columns(data, imp)
    pmf = np.asarray(pmf, dtype=np.float64)
    if greedy:
        row[cols[int(np.argmax(pmf))]] = 1.0
    else:
        row[cols] = pmf / pmf.sum()
    return row


def _report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None and (done % PROGRESS_EVERY_ROWS == 0 or done == total):
        progress(stage, done, total)


def _check_mode(owner: str, mode: str, allowed: tuple[str, ...]) -> None:
    if mode not in allowed:
        raise ValueError(f"{owner} mode must be one of {list(allowed)}; got {mode!r}")


@dataclass(frozen=True)
class SnapshotPolicy:
    """A published policy snapshot (a store with ``LATEST``, or one ``snap-*`` directory).

    ``pmf``: the policy's VW exploration pmf; ``greedy``: all mass on its argmax (first of
    equals); ``deployed``: the whole pmf the decision service would log (forced share, cold
    start from the snapshot's reaction counts, versions, pruned messages' re-test share).
    """

    directory: Path | str
    mode: SnapshotMode = "pmf"
    name: str = ""  # default: "<directory name>:<mode>"
    key: bytes | None = field(default=None, repr=False)  # refuse snapshots not signed with it

    def __post_init__(self) -> None:
        _check_mode("SnapshotPolicy", self.mode, ("pmf", "greedy", "deployed"))
        if not self.name:
            object.__setattr__(self, "name", f"{Path(self.directory).name}:{self.mode}")

    @contextmanager
    def decider(self) -> Iterator[Decider]:
        """A decider on the snapshot (the newest, for a store), closed afterwards."""
        path = Path(self.directory)
        store = (path / LATEST).exists()
        decider = (
            Decider(path, key=self.key) if store else Decider.from_snapshot(path, key=self.key)
        )
        try:
            yield decider
        finally:
            decider.close()

    def probabilities(self, data: LoggedData) -> np.ndarray:
        name = str(self.name)
        impressions = require_impressions(name, data)
        probs = np.zeros(data.mask.shape)
        with self.decider() as decider:
            for i, imp in enumerate(impressions):
                try:
                    pmf = self._pmf(decider, imp)
                except NudgeError as exc:
                    raise InvalidFeedback(
                        f"candidate {name!r}: row {i} (event {imp.event_id!r}): {exc}"
                    ) from exc
                probs[i] = _row(data, imp, np.asarray(pmf), greedy=self.mode == "greedy")
        return check_probabilities(name, data, probs)

    def _pmf(self, decider: Decider, imp: Impression) -> list[float]:
        if self.mode == "deployed":
            return decider.decision_pmf(
                imp.trigger,
                imp.learner_id,
                imp.context,
                imp.action_ids,
                action_features=dict(zip(imp.action_ids, imp.action_features, strict=True)),
            )
        return decider.policy.policy_pmf(
            imp.trigger, imp.context, imp.action_ids, imp.action_features
        )


@dataclass
class _Memo:
    """The probabilities of the last log a candidate scored (the same object, not an equal one)."""

    data: LoggedData | None = None
    probs: np.ndarray | None = None

    def get(self, data: LoggedData, compute: Callable[[LoggedData], np.ndarray]) -> np.ndarray:
        """A copy of the remembered probabilities for `data`, computed on a miss."""
        if self.data is not data or self.probs is None:
            self.data, self.probs = None, None  # a failed compute leaves nothing stale
            probs = compute(data)
            self.data, self.probs = data, probs
        return self.probs.copy()


def learner_settings(config: Config, impressions: tuple[Impression, ...]) -> LearnerConfig:
    """The learner section a VW candidate trains with on this log: the config's, for the policy
    only (no outcome model, which does not change the pmf), with the log's own namespaces when
    the config does not know them."""
    learner = config.learner.model_copy(update={"outcome_model": False})
    return learner_for_log(learner, impressions)


def _fresh_learner(
    config: Config, data: LoggedData, settings: LearnerConfig | None = None
) -> OnlineLearner:
    """A learner as the consumer would start one (warm start included), for the policy only:
    no pruning, which does not change the policy's pmf; `settings` default to
    `learner_settings` of the log (pass them to work them out once)."""
    if settings is None:
        settings = learner_settings(config, data.impressions or ())
    warm = settings.warm_start
    key = signing_key(config.snapshots.signing_key_file) if warm is not None else None
    state = warm_start_state(warm.snapshot, warm.freeze, key=key) if warm is not None else None
    none_action = data.none_action or config.rewards.none_action
    return OnlineLearner(settings, state=state, none_action=safe_text(none_action))


def _vw_view(imp: Impression) -> Impression:
    """The impression as VW's text format can carry it: action ids with its separators (space,
    `|`, `:`) replaced, as `bandit.vw_text` does for text features; the pmf keeps the order."""
    safe = tuple(safe_text(a) for a in imp.action_ids)
    return imp if safe == imp.action_ids else replace(imp, action_ids=safe)


def _joined(data: LoggedData, i: int, imp: Impression) -> JoinedEvent:
    """Row i as the reward join would have settled it (the reward is what VW learns), with the
    action ids VW can read."""
    label = str(data.labels[i])
    known = label in _LABELS
    return JoinedEvent(
        impression=_vw_view(imp),
        label=OutcomeLabel(label) if known else OutcomeLabel.IGNORED,
        value=None,
        reward=float(data.reward[i]),
        defaulted=not known,
    )


def _predict(learner: OnlineLearner, imp: Impression) -> np.ndarray:
    """The learner's pmf over the impression's actions, in their order."""
    vw = _vw_view(imp)
    return learner.predict(vw.trigger, vw.context, vw.action_ids, vw.action_features)


@dataclass(frozen=True)
class ProgressiveVW:
    """What if this VW configuration had been running: row i gets the pmf (or greedy choice)
    of a learner trained on rows 0..i-1 in log order, then learns row i (progressive
    validation, predict before learn), so no row is scored by a model that saw its reward.

    Unlike the logging policy it would have chosen differently, so later contexts would have
    differed too; this is the standard offline stand-in (cf. VW's progressive validation).
    """

    config: Config
    mode: LearnedMode = "pmf"
    name: str = ""  # default: "progressive-vw:<mode>"
    progress: Progress | None = None
    _memo: _Memo = field(default_factory=_Memo, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_mode("ProgressiveVW", self.mode, ("pmf", "greedy"))
        if not self.name:
            object.__setattr__(self, "name", f"progressive-vw:{self.mode}")

    def probabilities(self, data: LoggedData) -> np.ndarray:
        return self._memo.get(data, self._probabilities)

    def _probabilities(self, data: LoggedData) -> np.ndarray:
        name = str(self.name)
        impressions = require_impressions(name, data)
        probs = np.zeros(data.mask.shape)
        learner = _fresh_learner(self.config, data)
        try:
            for i, imp in enumerate(impressions):
                probs[i] = _row(data, imp, _predict(learner, imp), self.mode == "greedy")
                learner.learn(_joined(data, i, imp))
                _report(self.progress, name, i + 1, data.n)
        finally:
            learner.close()
        return check_probabilities(name, data, probs)


@dataclass(frozen=True)
class CrossFitVW:
    """The out-of-sample personalised policy: the rows of fold f get the pmf (or greedy
    choice) of a fresh learner trained on the other folds' rows in log order, as the
    push-nudge study trained on phase 1 and deployed to phase 2.

    Folds come from `LoggedData.folds` (a hash of the event id), so they are stable and
    shared with `BestUniform`, making the two directly comparable.
    """

    config: Config
    folds: int = 2
    mode: LearnedMode = "greedy"
    name: str = ""  # default: "crossfit-vw:<mode>"
    progress: Progress | None = None
    _memo: _Memo = field(default_factory=_Memo, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_mode("CrossFitVW", self.mode, ("pmf", "greedy"))
        if self.folds < 2:
            raise ValueError(f"CrossFitVW needs at least 2 folds; got {self.folds}")
        if not self.name:
            object.__setattr__(self, "name", f"crossfit-vw:{self.mode}")

    def probabilities(self, data: LoggedData) -> np.ndarray:
        return self._memo.get(data, self._probabilities)

    def _probabilities(self, data: LoggedData) -> np.ndarray:
        name = str(self.name)
        impressions = require_impressions(name, data)
        settings = learner_settings(self.config, impressions)
        folds = data.folds(self.folds)
        probs = np.zeros(data.mask.shape)
        for f in range(self.folds):
            learner = _fresh_learner(self.config, data, settings)
            try:
                self._fit(learner, data, impressions, np.flatnonzero(folds != f), f)
                rows = np.flatnonzero(folds == f)
                stage = f"{name} fold {f + 1}/{self.folds} predict"
                for done, i in enumerate(rows.tolist(), start=1):
                    imp = impressions[i]
                    probs[i] = _row(data, imp, _predict(learner, imp), self.mode == "greedy")
                    _report(self.progress, stage, done, len(rows))
            finally:
                learner.close()
        return check_probabilities(name, data, probs)

    def _fit(
        self,
        learner: OnlineLearner,
        data: LoggedData,
        impressions: tuple[Impression, ...],
        rows: np.ndarray,
        fold: int,
    ) -> None:
        stage = f"{self.name} fold {fold + 1}/{self.folds} train"
        for done, i in enumerate(rows.tolist(), start=1):
            learner.learn(_joined(data, i, impressions[i]))
            _report(self.progress, stage, done, len(rows))
