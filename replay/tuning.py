"""Learning settings worth deploying: a search over VW settings by progressive validation.

Each trial is one learner configuration run through the log in order, predicting each decision
before learning it (progressive validation: no row is scored by a model that saw its reward);
the policy it would have deployed (its pmf, exploration included) is valued off-policy on those
rows with DR (tabular reward model by trigger). The search is coordinate-wise: from the config's
own settings, each dimension (learning rate, cb type, interactions, low rank, exploration) is
tried in turn with the others held at the best so far, for `rounds` rounds, so a grid of
d dimensions with v values costs about d * v passes, not v ** d.

Picking the best of many trials on the same rows flatters the winner. `TunedCrossFitVW` keeps
the personalised candidate out of sample: the rows of fold f are scored by a learner whose
settings were searched, and whose model was trained, on the other folds only. `tune` on the
whole log gives the settings to deploy, with the (optimistic) value of the winning trial.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from bandit.config import Config, LearnerConfig, LowRankConfig
from bandit.errors import InvalidFeedback
from bandit.exploration import EpsilonGreedy
from bandit.learning import OnlineLearner
from replay.candidates import check_probabilities
from replay.estimators import DR, Estimate, LoggedFeedback
from replay.logged import LoggedData
from replay.progress import Progress
from replay.vw_candidates import (
    _fresh_learner,
    _joined,
    _Memo,
    _predict,
    _row,
    learner_settings,
    require_impressions,
)

ACTION = "action"  # the interactions' name for the action namespace
LEARNING_RATES = (0.01, 0.05, 0.1, 0.3, 1.0)
CB_TYPES = ("mtr", "dr", "ips")
INTERACTIONS = ("shared-x-action", "none")
LOW_RANKS = (0, 4)  # 0: no low-rank interactions
EPSILONS = (0.05, 0.1, 0.2)
PROGRESS_EVERY_ROWS = 5_000


@dataclass(frozen=True)
class Setting:
    """One point of the search; `apply` turns it into a learner configuration."""

    learning_rate: float
    cb_type: str
    interactions: str  # "shared-x-action": every context namespace x action; "none"
    low_rank: int  # rank of `--lrq` over every context namespace x action; 0: off
    epsilon: float | None  # None: the config's exploration (not epsilon-greedy) kept

    def label(self) -> str:
        eps = "" if self.epsilon is None else f" epsilon={self.epsilon:g}"
        lrq = f" lrq={self.low_rank}" if self.low_rank else ""
        return (
            f"lr={self.learning_rate:g} cb_type={self.cb_type} "
            f"interactions={self.interactions}{lrq}{eps}"
        )

    def apply(self, learner: LearnerConfig) -> LearnerConfig:
        """The learner configuration with this setting (everything else unchanged)."""
        pairs = [(ns, ACTION) for ns in learner.namespaces]
        update: dict[str, Any] = {
            "vw_args": with_vw_options(
                learner.vw_args,
                {"--learning_rate": f"{self.learning_rate:g}", "--cb_type": self.cb_type},
            ),
            "interactions": pairs if self.interactions == "shared-x-action" else [],
            "low_rank": LowRankConfig(kind="lrq", pairs=pairs, rank=self.low_rank)
            if self.low_rank and pairs
            else None,
        }
        if self.epsilon is not None:
            update["exploration"] = EpsilonGreedy(epsilon=self.epsilon)
        # validated again: the copy must be a configuration the consumer would accept
        return LearnerConfig.model_validate({**learner.model_dump(), **_dumped(update)})


def _dumped(update: dict[str, Any]) -> dict[str, Any]:
    return {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in update.items()}


_VW_ALIASES = {"-l": "--learning_rate"}


def with_vw_options(vw_args: str, options: dict[str, str]) -> str:
    """`vw_args` with each of `options` (long name -> value) set once, replacing any earlier
    value (`--name value`, `--name=value`, or a short alias such as `-l 0.5`)."""
    tokens = shlex.split(vw_args)
    kept: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name = _VW_ALIASES.get(token, token).split("=", 1)[0]
        if name in options:
            i += 1 if "=" in token else 2
            continue
        kept.append(token)
        i += 1
    for name, value in options.items():
        kept += [name, value]
    return " ".join(kept)


def config_setting(learner: LearnerConfig) -> Setting:
    """The config's own point of the search space (where the search starts)."""
    tokens = shlex.split(learner.vw_args)
    values: dict[str, str] = {}
    for i, token in enumerate(tokens):
        name, _, inline = _VW_ALIASES.get(token, token).partition("=")
        if name in ("--learning_rate", "--cb_type"):
            values[name] = inline or (tokens[i + 1] if i + 1 < len(tokens) else "")
    exploration = learner.exploration
    return Setting(
        learning_rate=float(values.get("--learning_rate", "0.5")),  # VW's default rate
        cb_type=values.get("--cb_type", "mtr"),  # VW's default for cb_explore_adf
        interactions="shared-x-action" if learner.interactions else "none",
        low_rank=learner.low_rank.rank if learner.low_rank is not None else 0,
        epsilon=exploration.epsilon if isinstance(exploration, EpsilonGreedy) else None,
    )


@dataclass(frozen=True)
class SearchSpace:
    """The values tried per dimension."""

    learning_rates: tuple[float, ...] = LEARNING_RATES
    cb_types: tuple[str, ...] = CB_TYPES
    interactions: tuple[str, ...] = INTERACTIONS
    low_ranks: tuple[int, ...] = LOW_RANKS
    epsilons: tuple[float, ...] = EPSILONS
    rounds: int = 1

    def neighbours(self, best: Setting) -> list[list[Setting]]:
        """Per dimension, `best` with that dimension set to each of its values."""
        dims: list[list[Setting]] = [
            [replace(best, learning_rate=v) for v in self.learning_rates],
            [replace(best, cb_type=v) for v in self.cb_types],
            [replace(best, interactions=v) for v in self.interactions],
            [replace(best, low_rank=v) for v in self.low_ranks],
        ]
        if best.epsilon is not None:
            dims.append([replace(best, epsilon=v) for v in self.epsilons])
        return dims


@dataclass(frozen=True)
class Trial:
    """One setting's progressive-validation value on the searched rows."""

    setting: Setting
    estimate: Estimate


class Closable(Protocol):
    def close(self) -> None: ...


Trained = TypeVar("Trained", bound=Closable)  # a trained learner (a stand-in in tests)


@dataclass
class Search(Generic[Trained]):
    """What a search tried and what won; `learner` is the winner's, trained on the rows."""

    trials: list[Trial]
    best: Trial
    start: Setting
    learner: Trained | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.learner is not None:
            self.learner.close()
            self.learner = None


def coordinate_search(
    start: Setting, space: SearchSpace, run: Callable[[Setting], tuple[Estimate, Trained]]
) -> Search[Trained]:
    """Best setting by coordinate-wise search from `start`; each setting runs once (cached).
    Ties keep the earlier best, so the config's own setting wins unless beaten."""
    seen: dict[Setting, Estimate] = {}
    keep: Trained | None = None
    best: Setting = start

    def value_of(setting: Setting) -> float:
        nonlocal keep
        if setting not in seen:
            estimate, learner = run(setting)
            seen[setting] = estimate
            if setting == best or _better(estimate, seen.get(best)):
                if keep is not None:
                    keep.close()
                keep = learner
            else:
                learner.close()
        return seen[setting].value

    value_of(start)
    for _ in range(max(1, space.rounds)):
        moved = False
        for d in range(len(space.neighbours(best))):
            for setting in space.neighbours(best)[d]:  # the other dimensions at the best so far
                if value_of(setting) > seen[best].value + 1e-12:
                    best, moved = setting, True
        if not moved:
            break
    trials = [Trial(s, e) for s, e in seen.items()]
    return Search(trials, Trial(best, seen[best]), start, keep)


def _better(estimate: Estimate, incumbent: Estimate | None) -> bool:
    return incumbent is None or estimate.value > incumbent.value + 1e-12


def progressive_run(
    config: Config,
    data: LoggedData,
    rows: np.ndarray,
    setting: Setting,
    *,
    base: LearnerConfig | None = None,
    confidence: float = 0.95,
    progress: Progress | None = None,
) -> tuple[Estimate, OnlineLearner]:
    """`setting`'s learner (on `base`, default: the config's learner as the VW candidates use
    it on this log) through `rows` in log order, predicting before learning each one; the DR
    value of the pmfs it predicted, and the learner (trained on every row)."""
    impressions = require_impressions("tuning", data)
    base = base or learner_settings(config, impressions)
    learner = _fresh_learner(config, data, setting.apply(base))
    target = np.zeros((len(rows), len(data.actions)))
    stage = f"tune {setting.label()}"
    try:
        for done, i in enumerate(rows.tolist()):
            imp = impressions[i]
            target[done] = _row(data, imp, _predict(learner, imp), greedy=False)
            learner.learn(_joined(data, i, imp))
            if progress is not None and (done + 1) % PROGRESS_EVERY_ROWS == 0:
                progress(stage, done + 1, len(rows))
    except BaseException:
        learner.close()
        raise
    return dr_value(data, rows, target, confidence), learner


def dr_value(data: LoggedData, rows: np.ndarray, target: np.ndarray, confidence: float) -> Estimate:
    """DR (tabular reward model by trigger) of a target (len(rows), K) on `rows`."""
    _, cells = data.trigger_codes()
    feedback = LoggedFeedback(
        data.reward[rows], data.pscore[rows], data.chosen[rows], target,
        mask=data.mask[rows], cells=cells[rows],
    )  # fmt: skip
    return DR().estimate(feedback, confidence=confidence)


def search_rows(
    config: Config,
    data: LoggedData,
    rows: np.ndarray,
    space: SearchSpace,
    *,
    confidence: float = 0.95,
    progress: Progress | None = None,
) -> Search[OnlineLearner]:
    """The coordinate search over `rows` (indices into `data`, in log order)."""
    if len(rows) < 2:
        raise InvalidFeedback(f"tuning needs at least 2 logged decisions; got {len(rows)}")
    base = learner_settings(config, require_impressions("tuning", data))
    start = config_setting(base)

    def run(setting: Setting) -> tuple[Estimate, OnlineLearner]:
        return progressive_run(
            config, data, rows, setting, base=base, confidence=confidence, progress=progress
        )

    return coordinate_search(start, space, run)


@dataclass(frozen=True)
class Tuning:
    """`tune`'s answer: the trials on the whole log, the winner and the config to deploy."""

    search: Search[OnlineLearner]
    learner: LearnerConfig

    @property
    def best(self) -> Trial:
        return self.search.best

    def snippet(self) -> str:
        """The `learner:` settings to paste into config.yaml."""
        return learner_snippet(self.learner)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "progressive validation (predict, then learn, each logged decision in "
            "order); each trial's deployed pmf valued by DR",
            "start": self.search.start.label(),
            "best": _trial_json(self.best),
            "trials": [_trial_json(t) for t in sorted(self.search.trials, key=_by_value)],
            "config_snippet": self.snippet(),
        }


def _by_value(trial: Trial) -> float:
    return -trial.estimate.value if math.isfinite(trial.estimate.value) else math.inf


def _trial_json(trial: Trial) -> dict[str, Any]:
    e = trial.estimate
    return {"setting": trial.setting.label(), "value": e.value, "low": e.low, "high": e.high}


def learner_snippet(learner: LearnerConfig) -> str:
    """YAML of the tuned learner settings (`learner:` section, the keys the search sets)."""
    names = ", ".join(f"{name}: {letter}" for name, letter in learner.namespaces.items())
    lines = [
        "learner:",
        f"  namespaces: {{{names}}}",
        f"  vw_args: {learner.vw_args!r}".replace("'", '"'),
    ]
    if learner.interactions:
        pairs = ", ".join(f"[{a}, {b}]" for a, b in learner.interactions)
        lines.append(f"  interactions: [{pairs}]")
    else:
        lines.append("  interactions: []")
    if learner.low_rank is not None:
        pairs = ", ".join(f"[{a}, {b}]" for a, b in learner.low_rank.pairs)
        lines.append(
            f"  low_rank: {{kind: {learner.low_rank.kind}, rank: {learner.low_rank.rank}, "
            f"pairs: [{pairs}]}}"
        )
    else:
        lines.append("  low_rank: null")
    exploration = learner.exploration
    if isinstance(exploration, EpsilonGreedy):
        lines.append(f"  exploration: {{algorithm: epsilon, epsilon: {exploration.epsilon:g}}}")
    return "\n".join(lines)


def tune(
    config: Config,
    data: LoggedData,
    space: SearchSpace | None = None,
    *,
    confidence: float = 0.95,
    progress: Progress | None = None,
) -> Tuning:
    """Search the whole log; the winner's learner configuration is the one to deploy."""
    search = search_rows(
        config, data, np.arange(data.n), space or SearchSpace(),
        confidence=confidence, progress=progress,
    )  # fmt: skip
    search.close()
    base = learner_settings(config, require_impressions("tuning", data))
    return Tuning(search, search.best.setting.apply(base))


@dataclass(frozen=True)
class TunedCrossFitVW:
    """The personalised policy with tuned settings, out of sample: for each fold, the settings
    are searched and the winner trained on the other folds' rows only, then it scores the fold
    (greedy by default, as `CrossFitVW`). Folds are `LoggedData.folds` (shared with
    `BestUniform` and `CrossFitVW`)."""

    config: Config
    space: SearchSpace = field(default_factory=SearchSpace)
    folds: int = 2
    greedy: bool = True
    name: str = "personalized(tuned)"
    progress: Progress | None = None
    chosen: list[str] = field(default_factory=list, compare=False)  # per fold, after a run
    _memo: _Memo = field(default_factory=_Memo, init=False, repr=False, compare=False)

    def probabilities(self, data: LoggedData) -> np.ndarray:
        """Remembered for the last log: `always-send(personalized)` asks again."""
        return self._memo.get(data, self._probabilities)

    def _probabilities(self, data: LoggedData) -> np.ndarray:
        impressions = require_impressions(self.name, data)
        folds = data.folds(self.folds)
        probs = np.zeros(data.mask.shape)
        self.chosen.clear()
        for f in range(self.folds):
            search = search_rows(
                self.config, data, np.flatnonzero(folds != f), self.space, progress=self.progress
            )
            try:
                learner = search.learner
                if learner is None:  # pragma: no cover - a search always keeps its winner
                    raise RuntimeError("the search kept no learner")
                self.chosen.append(search.best.setting.label())
                for i in np.flatnonzero(folds == f).tolist():
                    imp = impressions[i]
                    probs[i] = _row(data, imp, _predict(learner, imp), greedy=self.greedy)
            finally:
                search.close()
        return check_probabilities(self.name, data, probs)


def quick_space(values: Sequence[float] = (0.1, 0.5)) -> SearchSpace:
    """A small space (two learning rates, two cb types, interactions on/off): for tests."""
    return SearchSpace(
        learning_rates=tuple(values), cb_types=("mtr", "ips"), interactions=INTERACTIONS,
        low_ranks=(0,), epsilons=(0.1,),
    )  # fmt: skip
