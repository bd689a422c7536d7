"""Replay from Python (a notebook, a script): logs in, policy specs in, a `ReplayResult` out.

`evaluate` is ``nudge replay`` as a function: it reads a DataFrame, a file (our events, DSJSON,
CSV or Parquet, as the command reads them) or a `LoggedData`, builds the candidates named by
the same specs as ``--policy`` (the default set and its gains when none are given) and runs
`replay.evaluation.evaluate`, so its result is the one the command prints (``to_json()`` is
its ``--json``), with ``to_frame()``, ``gains_frame()`` and ``plot()`` for a notebook.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import orjson
import pandas as pd

from replay.evaluation import ESTIMATORS, Gain, Interval
from replay.evaluation import evaluate as evaluate_logged
from replay.logged import LoggedData
from replay.planned_candidates import streamable
from replay.policy_specs import build_policies
from replay.progress import Progress, ProgressPrinter
from replay.results import ReplayResult
from replay.sources import OnError

if TYPE_CHECKING:
    from bandit.config import Config

LogFormat = Literal["events", "dsjson", "table"]
Logs = pd.DataFrame | LoggedData | Path | str
_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def evaluate(
    logs: Logs,
    policies: Sequence[str] | str | None = None,
    *,
    gains: Sequence[Gain | tuple[str, str, str]] = (),
    estimators: Sequence[str] | str = tuple(ESTIMATORS),
    confidence: float = 0.95,
    interval: Interval = "normal",
    n_boot: int = 200,
    seed: int = 0,
    clip: float | None = None,
    folds: int = 2,
    by_trigger: bool = True,
    effects: bool = True,
    config: Config | Path | str | None = None,
    none_action: str | None = None,
    format: LogFormat | None = None,
    skip_invalid: bool = False,
    progress: bool | Progress = False,
) -> ReplayResult:
    """Estimate what each candidate policy would have earned on ``logs``.

    ``logs``: a DataFrame (the table columns of `replay.tables`), a path (see `load_logs`) or
    `LoggedData`. ``policies``: ``--policy`` specs (`replay.policy_specs`; one spec or a list;
    None: the default set, with the personalization and targeting gains). ``gains``: more
    paired contrasts, ``(name, first, second)``. ``estimators``: names or "IPS,DR" text.
    ``interval``: "normal" (analytic) or "bootstrap" (``n_boot`` resamples from ``seed``).
    ``config``: a `Config`, a path to config.yaml, or None for the built-in defaults (the
    learner of VW policies, the event rules, the send-nothing action unless ``none_action``).
    ``progress``: True reports on stderr, as the command does.
    """
    settings = _config(config)
    names = _estimator_names(estimators)
    _check(confidence, clip, folds, n_boot)
    reporter = _progress(progress)
    specs = [policies] if isinstance(policies, str) else policies
    extra = [g if isinstance(g, Gain) else Gain(*g) for g in gains]
    if _is_table(logs, format) and streamable(list(specs or ())):
        # as `nudge replay --table`: read in chunks, in bounded memory (`replay.table_stream`)
        from replay.table_stream import evaluate_table

        table = logs if isinstance(logs, pd.DataFrame) else Path(cast(Path | str, logs))
        return evaluate_table(
            table, list(specs or ()),
            [(g.name, g.first, g.second) for g in extra],
            none_action=none_action or settings.rewards.none_action,
            none_action_given=none_action is not None,
            on_error="skip" if skip_invalid else "raise", estimators=names, clip=clip,
            confidence=confidence, interval=interval, n_boot=n_boot, seed=seed,
            by_trigger=by_trigger, effects=effects, folds=folds, progress=reporter,
        )  # fmt: skip
    data = load_logs(
        logs, config=settings, none_action=none_action, format=format,
        skip_invalid=skip_invalid, progress=reporter,
    )  # fmt: skip
    built = build_policies(specs, data, settings, folds=folds, progress=reporter)
    return evaluate_logged(
        data, built.candidates,
        estimators=names, clip=clip, confidence=confidence, interval=interval, n_boot=n_boot,
        seed=seed, by_trigger=by_trigger, gains=[*built.gains, *extra], effects=effects,
        progress=reporter,
    )  # fmt: skip


def load_logs(
    logs: Logs,
    *,
    config: Config | Path | str | None = None,
    none_action: str | None = None,
    format: LogFormat | None = None,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> LoggedData:
    """``logs`` as `LoggedData`, read as ``nudge replay`` reads them.

    A path's format comes from ``format`` or its suffix: .csv, .parquet, .pq are tables,
    .dsjson is DSJSON, and any other file is our events unless its first line is a JSON object
    without a ``type`` (then DSJSON, as Personalizer's .json exports are). ``none_action``
    (default: the config's) names the send-nothing action.
    """
    if isinstance(logs, LoggedData):
        return logs
    settings = _config(config)
    none = none_action or settings.rewards.none_action
    on_error: OnError = "skip" if skip_invalid else "raise"
    if isinstance(logs, pd.DataFrame):
        from replay.tables import load_table

        return load_table(logs, none_action=none, on_error=on_error)
    path = Path(logs)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; pass one log file")
    kind = format or _format_of(path)
    if kind == "table":
        from replay.tables import load_table

        return load_table(path, none_action=none, on_error=on_error)
    if kind == "dsjson":
        from replay.dsjson import load_dsjson

        return load_dsjson(path, none_action=none, on_error=on_error, progress=progress)
    if kind == "events":
        from replay.sources import load_events

        rewards = settings.rewards.model_copy(update={"none_action": none})
        events_config = settings.model_copy(update={"rewards": rewards})
        return load_events(path, events_config, on_error=on_error, progress=progress)
    raise ValueError(f"format must be 'events', 'dsjson' or 'table'; got {kind!r}")


def _is_table(logs: Logs, format: LogFormat | None) -> bool:
    """Whether ``logs`` is a table (a DataFrame, or a CSV / Parquet file)."""
    if isinstance(logs, pd.DataFrame):
        return True
    if isinstance(logs, LoggedData):
        return False
    path = Path(logs)
    return (format or (_format_of(path) if path.is_file() else None)) == "table"


def _format_of(path: Path) -> LogFormat:
    """The format a path's suffix names, or (for JSON lines) its first line shows."""
    suffix = path.suffix.lower()
    if suffix in _TABLE_SUFFIXES:
        return "table"
    if suffix == ".dsjson":
        return "dsjson"
    with path.open("rb") as fh:
        first = next((line for line in fh if line.strip()), b"")
    try:
        doc = orjson.loads(first)
    except orjson.JSONDecodeError:
        return "events"  # the events reader names the line and what is wrong with it
    return "dsjson" if isinstance(doc, dict) and "type" not in doc else "events"


def _config(config: Config | Path | str | None) -> Config:
    from bandit.config import Config, load_config

    return config if isinstance(config, Config) else load_config(config)


def _estimator_names(estimators: Sequence[str] | str) -> tuple[str, ...]:
    """Names from a sequence or comma-separated text; unknown names are a ValueError."""
    items = estimators.split(",") if isinstance(estimators, str) else estimators
    names = tuple(name.strip() for name in items if name.strip())
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown or not names:
        raise ValueError(
            f"unknown estimator(s) {unknown or list(names)}; choose from {list(ESTIMATORS)}"
        )
    return names


def _check(confidence: float, clip: float | None, folds: int, n_boot: int) -> None:
    """The CLI's argument checks, for callers that do not go through it."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a finite number > 0, got {clip}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")


def _progress(progress: bool | Progress) -> Progress | None:
    if progress is True:
        return ProgressPrinter()
    return progress or None
