"""A Parquet log of one or more files cut into parts that any process can read on its own.

A part is a run of consecutive row groups of one file (`replay.tables.parquet_runs`, the unit
the chunked reader reads at once), with the index of its first row in the whole log. Reading
a part gives exactly the chunks `replay.tables.read_table_chunks` gives for those rows, so a
pass run part by part, here or on a cluster's workers, and merged in part order equals the
single-process pass bit for bit.

Repeated event ids: the loader keeps the first row of each id, in log order. `mark_duplicates`
finds the repeated ids from every part's ids (`replay.duplicates`, bounded memory), then the
rows of those few ids, and gives each part the rows it drops.
"""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bandit.errors import ReplayInputError
from bandit.events import Reason
from replay.chunked import LogChunk, event_keys
from replay.duplicates import repeated_keys
from replay.sources import OnError
from replay.tables import (
    parquet_runs,
    read_run_chunks,
    read_run_event_ids,
    unreadable_parquet,
)

ROWS_PER_CHUNK = 1 << 17  # rows per chunk of every chunked table reading
MapParts = Callable[[Callable[["TablePart"], Any]], Iterable[Any]]  # f of each part, in order


@dataclass(frozen=True)
class TablePart:
    """Row groups ``row_groups`` of the Parquet file ``path``; ``first_row``: its first row's
    index in the whole log, ``first_in_file`` in its file; ``drop``: rows of the log in this
    part that repeat an event id seen earlier (dropped as the loader drops them)."""

    path: str
    row_groups: tuple[int, ...]
    first_row: int
    first_in_file: int
    rows: int
    drop: tuple[int, ...] = ()

    def chunks(
        self, on_error: OnError = "raise", rows_per_chunk: int = ROWS_PER_CHUNK
    ) -> Iterator[LogChunk]:
        """The part's validated chunks, its repeated rows dropped (counted as duplicates)."""
        drop = np.asarray(self.drop, dtype=np.int64)
        for chunk in read_run_chunks(
            self.path, self.row_groups, self.first_row, self.first_in_file,
            on_error=on_error, rows_per_chunk=rows_per_chunk,
        ):  # fmt: skip
            keep = ~np.isin(chunk.rows, drop) if drop.size else None
            if keep is None or keep.all():
                yield chunk
            else:
                dropped = Counter({Reason.DUPLICATE_IMPRESSION.value: int((~keep).sum())})
                yield chunk.subset(keep, dropped)

    def event_ids(self, rows_per_chunk: int = ROWS_PER_CHUNK) -> np.ndarray:
        """The part's event ids as text, one per row of the file (invalid rows included)."""
        parts = list(read_run_event_ids(self.path, self.row_groups, rows_per_chunk))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=object)


def table_files(pattern: str) -> list[str]:
    """The Parquet files a path or glob names, sorted (the log's order); an error naming the
    pattern when none matches or one is not Parquet."""
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths or not all(Path(p).is_file() for p in paths):
        raise ReplayInputError(pattern, "path", "no such file (no file matches the pattern)")
    wrong = [p for p in paths if Path(p).suffix.lower() not in (".parquet", ".pq")]
    if wrong:
        raise ReplayInputError(
            Path(wrong[0]).name, "suffix", "a log in parts is Parquet files (.parquet or .pq)"
        )
    return paths


def table_parts(files: Sequence[str], rows_per_chunk: int = ROWS_PER_CHUNK) -> list[TablePart]:
    """The files' runs of row groups as parts, in log order."""
    parts: list[TablePart] = []
    first = 0
    for path in files:
        try:
            metadata = pq.ParquetFile(path).metadata
        except (pa.ArrowException, OSError) as exc:
            raise unreadable_parquet(Path(path).name, exc) from None
        in_file = 0
        for groups, rows in parquet_runs(metadata, rows_per_chunk):
            parts.append(TablePart(path, groups, first, in_file, rows))
            first, in_file = first + rows, in_file + rows
    if first == 0:
        raise ReplayInputError(Path(files[0]).name, "rows", "the table has no rows")
    return parts


def local_map(parts: Sequence[TablePart]) -> MapParts:
    """`MapParts` in this process."""

    def map_parts(f: Callable[[TablePart], Any]) -> Iterator[Any]:
        return (f(part) for part in parts)

    return map_parts


def mark_duplicates(
    parts: Sequence[TablePart], map_parts: MapParts, on_error: OnError = "raise"
) -> list[TablePart]:
    """``parts`` with the rows each drops: every valid row after the first of its event id in
    log order. ``map_parts(f)`` yields ``f(part)`` for each part in order (here or on a
    cluster)."""
    repeated = repeated_keys(map_parts(part_keys))
    if repeated.size == 0:
        return list(parts)
    seen: set[str] = set()
    marked = []
    suspects: Iterable[list[tuple[int, str]]] = map_parts(SuspectRows(repeated, on_error))
    for part, rows in zip(parts, suspects, strict=True):
        drop = []
        for row, event_id in rows:
            if event_id in seen:
                drop.append(row)
            else:
                seen.add(event_id)
        marked.append(replace(part, drop=tuple(drop)))
    return marked


def part_keys(part: TablePart) -> np.ndarray:
    """The 64-bit key of each of the part's event ids."""
    return event_keys(part.event_ids())


@dataclass(frozen=True)
class SuspectRows:
    """(row of the log, event id) of the part's valid rows whose key repeats in the log (an
    invalid row is no first occurrence: the loader drops it before it looks at ids)."""

    repeated: np.ndarray
    on_error: OnError = "raise"

    def __call__(self, part: TablePart) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for chunk in part.chunks(self.on_error):
            hit = np.flatnonzero(np.isin(chunk.keys(), self.repeated))
            out += [(int(chunk.rows[i]), str(chunk.event_ids[i])) for i in hit.tolist()]
        return out
