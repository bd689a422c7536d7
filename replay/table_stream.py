"""`nudge replay --table` in bounded memory: the table read in chunks, passes of `streaming_eval`.

`table_source` is a `ChunkSource` for a CSV or Parquet file: one quick pass over the event ids
finds those that repeat (`replay.duplicates`); every later pass reads the file in chunks with
the checks of `replay.tables` and keeps the first row of each id, as `load_table` does.
`evaluate_table` runs the streaming evaluation on it with the trigger-level candidates that
policy specs name (`replay.planned_candidates`); other candidates need `load_table`.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd

from bandit.errors import UsageError
from replay.candidates import Candidate
from replay.chunk_scan import LogPlan
from replay.chunked import LogChunk, event_keys
from replay.duplicates import FirstSeen, repeated_keys
from replay.evaluation import Gain, Interval
from replay.planned_candidates import build_planned
from replay.progress import Progress
from replay.results import ReplayResult
from replay.sources import OnError
from replay.streaming_eval import ChunkSource, evaluate_stream
from replay.table_parts import (
    ROWS_PER_CHUNK,
    local_map,
    mark_duplicates,
    table_files,
    table_parts,
)
from replay.tables import read_event_ids, read_table_chunks, table_name, table_rows


def table_source(
    table: pd.DataFrame | Path | str,
    *,
    on_error: OnError = "raise",
    rows_per_chunk: int = ROWS_PER_CHUNK,
) -> ChunkSource:
    """Chunks of the table (a CSV or Parquet file, or a DataFrame), validated and without
    repeated event ids."""
    repeated = repeated_keys(event_keys(ids) for ids in read_event_ids(table, rows_per_chunk))

    def chunks() -> Iterator[LogChunk]:
        first_seen = FirstSeen(repeated)
        for chunk in read_table_chunks(table, on_error=on_error, rows_per_chunk=rows_per_chunk):
            yield first_seen(chunk)

    return chunks


def evaluate_table(
    table: pd.DataFrame | Path | str,
    specs: Sequence[str],
    gains: Sequence[tuple[str, str, str]] = (),
    *,
    none_action: str | None,
    none_action_given: bool = False,
    on_error: OnError = "raise",
    estimators: Sequence[str] = ("IPS", "SNIPS", "DM", "DR", "DRos"),
    clip: float | None = None,
    confidence: float = 0.95,
    interval: Interval = "normal",
    n_boot: int = 200,
    seed: int = 0,
    by_trigger: bool = True,
    effects: bool = True,
    folds: int = 2,
    rows_per_chunk: int = ROWS_PER_CHUNK,
    progress: Progress | None = None,
    dask: str | None = None,
    chunks: ChunkSource | None = None,
) -> ReplayResult:
    """`nudge replay --table` over chunks of a file (or of a DataFrame: the same numbers as
    its file when both are read in the same chunks): the candidates of ``specs`` (the default
    set when empty), ``gains`` as (name, first, second); problems with them, or a
    ``none_action`` the log does not have when it was given (``none_action_given``), are
    `UsageError`s worded as the command words them. A glob of Parquet files is one log, its
    files in name order; ``dask`` (a scheduler's address or ``local:N``) runs the passes on a
    Dask cluster (`replay.dask_passes`): the same numbers. ``chunks``: another reader's chunks
    of the log ``table`` names (a DSJSON file: `replay.dsjson_stream`)."""

    def policies(plan: LogPlan) -> Sequence[Candidate]:
        if none_action_given and plan.none_action is None:
            shown = ", ".join(plan.actions[:20]) + (", ..." if len(plan.actions) > 20 else "")
            raise UsageError(
                f"--none-action {none_action}: no action of the log has this id; its actions "
                f"are {shown}"
            )
        candidates = build_planned(specs, plan)  # a bad spec: `PolicySpecError` naming it
        names = [c.name for c in candidates]
        for name, first, second in gains:
            for missing in dict.fromkeys(n for n in (first, second) if n not in names):
                raise UsageError(
                    f"--gain {name} {first} {second}: {missing!r} is not a candidate policy; "
                    f"the candidates are {', '.join(names)}"
                )
        return candidates

    options: dict[str, Any] = {
        "none_action": none_action, "estimators": estimators, "clip": clip,
        "confidence": confidence, "interval": interval, "n_boot": n_boot, "seed": seed,
        "by_trigger": by_trigger, "gains": [Gain(*gain) for gain in gains], "effects": effects,
        "folds": folds, "progress": progress,
    }  # fmt: skip
    if dask is not None or (not isinstance(table, pd.DataFrame) and glob.has_magic(str(table))):
        return _evaluate_parts(str(table), policies, dask, on_error, rows_per_chunk, options)
    return evaluate_stream(
        chunks or table_source(table, on_error=on_error, rows_per_chunk=rows_per_chunk),
        policies, total_rows=table_rows(table), source_name=table_name(table), **options,
    )  # fmt: skip


def _evaluate_parts(
    pattern: str,
    policies: Callable[[LogPlan], Sequence[Candidate]],
    dask: str | None,
    on_error: OnError,
    rows_per_chunk: int,
    options: dict[str, Any],
) -> ReplayResult:
    """The Parquet files of ``pattern`` as parts (`replay.table_parts`), passed here or on
    the Dask cluster ``dask``."""
    parts = table_parts(table_files(pattern), rows_per_chunk)
    total = sum(p.rows for p in parts)
    with ExitStack() as stack:
        client = None
        if dask is not None:
            from replay.dask_passes import dask_client

            client = stack.enter_context(dask_client(dask))
        if client is None:
            parts = mark_duplicates(parts, local_map(parts), on_error)
            run = None
        else:
            from replay.dask_passes import dask_map, dask_passes

            parts = mark_duplicates(parts, dask_map(client, parts), on_error)
            run = dask_passes(client, parts, on_error, rows_per_chunk)

        def chunks() -> Iterator[LogChunk]:
            for part in parts:
                yield from part.chunks(on_error, rows_per_chunk)

        return evaluate_stream(
            chunks, policies, total_rows=total, source_name=_name(pattern), run_pass=run,
            **options,
        )  # fmt: skip


def _name(pattern: str) -> str:
    return Path(pattern).name
