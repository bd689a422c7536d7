"""Logged decisions from a table (pandas DataFrame, CSV or Parquet) as `LoggedData`, and back.

One row per decision:

===============  ========  ============================================================
column           required  meaning
===============  ========  ============================================================
``event_id``     yes       the decision's id (a repeated id is counted as a duplicate
                           and its first row kept)
``trigger``      yes       the trigger (decision point) it was made at
``actions``      yes       the candidate action ids: a list, or ``|``-separated in CSV
``chosen``       yes       the action id that was taken; one of ``actions``
``probability``  yes       the logged probability of ``chosen``, in (0, 1]
``reward``       yes       the reward observed for it (a finite number)
``pmf``          no        the logging distribution aligned with ``actions`` (a list, or
                           ``|``-separated), summing to 1 and giving ``chosen`` its
                           ``probability`` (both ±1e-6); used only if every row has one
``learner_id``   no        who the decision was for
``timestamp``    no        epoch seconds, or RFC 3339 text (UTC when it has no offset)
``label``        no        the outcome label, e.g. helpful / not_helpful / ignored
===============  ========  ============================================================

Errors name the row and the column: "row N" of a DataFrame or Parquet file (1-based data row),
"line N" of a CSV file (the header is line 1). A table has no contexts (``impressions`` is
None), so it can be replayed by policies that depend only on the trigger.

`read_table_chunks` reads a table too big for memory as validated `LogChunk`s (Parquet by row
groups, CSV by blocks of lines) with the same checks; repeated event ids across chunks are left
to `replay.duplicates`, which needs the whole file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bandit.errors import ReplayInputError
from bandit.events import Reason
from replay.chunked import LogChunk
from replay.logged import PMF_TOLERANCE, LoggedData
from replay.sources import OnError, check_on_error

REQUIRED = ("event_id", "trigger", "actions", "chosen", "probability", "reward")
OPTIONAL = ("pmf", "learner_id", "timestamp", "label")
SEPARATOR = "|"
_TEXT = ("event_id", "trigger", "chosen", "learner_id", "label")
ROW_HINT = "fix the row or pass --skip-invalid"


@dataclass(frozen=True)
class _Table:
    """The columns read, and how to name a row in an error."""

    frame: pd.DataFrame
    name: str
    where: Callable[[int], str]  # 0-based data row -> "events.csv line 3"


class _Rows:
    """Row validity as checks run: raise at the first bad row, or count and drop bad rows."""

    def __init__(self, table: _Table, on_error: OnError) -> None:
        self.table = table
        self.on_error = on_error
        self.valid = np.ones(len(table.frame), dtype=bool)
        self.skipped: Counter[str] = Counter()

    def reject(
        self, bad: np.ndarray, reason: str, column: str, problem: Callable[[int], str]
    ) -> None:
        """Rows where `bad` holds fail a check; `problem(row)` says why for the first one."""
        bad = bad & self.valid
        if not bad.any():
            return
        if self.on_error == "raise":
            row = int(np.argmax(bad))
            raise ReplayInputError(
                self.table.where(row), column, f"{problem(row)} [{reason}]; {ROW_HINT}"
            )
        self.skipped[reason] += int(bad.sum())
        self.valid &= ~bad


def load_table(
    table: pd.DataFrame | Path | str,
    *,
    none_action: str | None,
    on_error: OnError = "raise",
) -> LoggedData:
    """Validate and load a table of logged decisions (columns in the module docstring)."""
    check_on_error(on_error)
    t = _read(table)
    _check_columns(t.name, list(t.frame.columns))
    if t.frame.empty:
        raise ReplayInputError(t.name, "rows", "the table has no rows")
    checked = _check_rows(t, on_error)
    _drop_duplicates(_required_text(checked.text, "event_id"), checked.rows)
    return _logged(checked, none_action, t.name)


def read_table_chunks(
    table: pd.DataFrame | Path | str, *, on_error: OnError = "raise", rows_per_chunk: int = 1 << 17
) -> Iterator[LogChunk]:
    """The table (a file, or a DataFrame: the same chunks as its Parquet file of one row group)
    as validated chunks of at most ``rows_per_chunk`` rows, with the checks of `load_table` and
    errors naming the row of the file; rows with a repeated event id are all kept (see the
    module docstring). Raises on a table without rows."""
    check_on_error(on_error)
    total = 0
    for t, start in _frames(table, rows_per_chunk):
        _check_columns(t.name, list(t.frame.columns))
        total += len(t.frame)
        if not t.frame.empty:
            yield _chunk(_check_rows(t, on_error), start)
    if total == 0:
        raise ReplayInputError(table_name(table), "rows", "the table has no rows")


def table_name(table: pd.DataFrame | Path | str) -> str:
    """How errors and results name a table: its file name, or "table" for a DataFrame."""
    return "table" if isinstance(table, pd.DataFrame) else Path(table).name


def read_event_ids(
    table: pd.DataFrame | Path | str, rows_per_chunk: int = 1 << 17
) -> Iterator[np.ndarray]:
    """The ``event_id`` column as the row checks read it (text), chunk by chunk, without the
    other columns (nothing when the column or the file cannot be read: the full read reports
    that)."""
    if isinstance(table, pd.DataFrame):
        if "event_id" in table.columns:
            for start in range(0, len(table), rows_per_chunk):
                yield _text(table["event_id"].iloc[start : start + rows_per_chunk])
        return
    path = Path(table)
    try:
        if path.suffix.lower() == ".csv":
            reader = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], usecols=["event_id"],
                chunksize=rows_per_chunk,
            )  # fmt: skip
            with reader:
                for frame in reader:
                    yield _text(frame["event_id"])
            return
        parquet = pq.ParquetFile(path)
        if "event_id" not in parquet.schema_arrow.names:
            return
        for batch in _parquet_batches(parquet, rows_per_chunk, ["event_id"]):
            yield _text(batch.to_pandas()["event_id"])
    except (ValueError, UnicodeDecodeError, OSError, pa.ArrowException):
        return


def table_rows(table: pd.DataFrame | Path | str) -> int | None:
    """Rows of a DataFrame, or of a file when its metadata says (Parquet), else None."""
    if isinstance(table, pd.DataFrame):
        return len(table)
    path = Path(table)
    if path.suffix.lower() not in (".parquet", ".pq"):
        return None
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (pa.ArrowException, OSError):
        return None


def _check_columns(name: str, columns: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ReplayInputError(
            name, missing[0], f"required column missing; the table has {columns}"
        )


@dataclass(frozen=True)
class _Checked:
    """The columns of a table (or chunk) after the row checks; ``rows.valid`` marks the kept."""

    rows: _Rows
    text: dict[str, np.ndarray | None]
    lists: _ActionLists
    position: np.ndarray
    probability: np.ndarray
    reward: np.ndarray
    pmf: np.ndarray | None  # (n, L) aligned with each row's actions, nan-padded
    has_pmf: np.ndarray  # (n,) bool
    timestamps: np.ndarray


def _check_rows(t: _Table, on_error: OnError) -> _Checked:
    """Every row check of the module docstring (duplicates aside), column by column."""
    frame = t.frame
    rows = _Rows(t, on_error)
    for column in REQUIRED:
        rows.reject(_missing(frame[column]), Reason.MISSING_FIELD, column, lambda _: "no value")
    text = {c: _text(frame[c]) if c in frame.columns else None for c in _TEXT}
    probability = _numbers(frame["probability"], rows, "probability")
    rows.reject(
        ~((probability > 0.0) & (probability <= 1.0)),
        Reason.PROBABILITY_OUT_OF_RANGE,
        "probability",
        lambda r: f"must be in (0, 1], got {probability[r]}",
    )
    reward = _numbers(frame["reward"], rows, "reward")
    lists = _ActionLists.of(frame["actions"], rows)
    position = lists.position(_required_text(text, "chosen"), rows)
    pmf, has_pmf = None, np.zeros(len(frame), dtype=bool)
    if "pmf" in frame.columns:
        pmf, has_pmf = _pmf(frame, lists, position, probability, rows)
    timestamps = _timestamps(frame, rows)
    return _Checked(rows, text, lists, position, probability, reward, pmf, has_pmf, timestamps)


def _chunk(checked: _Checked, start: int) -> LogChunk:
    """The kept rows of one checked chunk, their candidate lists coded per chunk."""
    keep = np.flatnonzero(checked.rows.valid)
    used, codes = np.unique(checked.lists.codes[keep], return_inverse=True)
    pmf = None
    if checked.pmf is not None and checked.has_pmf[keep].any():
        pmf = np.where(checked.has_pmf[keep, None], checked.pmf[keep], np.nan)
    return LogChunk(
        rows=start + keep,
        event_ids=_required_text(checked.text, "event_id")[keep],
        triggers=_required_text(checked.text, "trigger")[keep],
        patterns=tuple(checked.lists.lists[u] for u in used.tolist()),
        pattern=codes.astype(np.int64),
        position=checked.position[keep],
        pscore=checked.probability[keep],
        reward=checked.reward[keep],
        pmf=pmf,
        skipped=checked.rows.skipped,
    )


# ---- reading ------------------------------------------------------------------------------


def _read(table: pd.DataFrame | Path | str) -> _Table:
    if isinstance(table, pd.DataFrame):
        return _Table(table, "table", lambda r: f"row {r + 1}")
    path = Path(table)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # Everything as text: ids such as "NA" or "none" must stay ids, not become missing.
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise _unreadable_csv(path.name, exc) from None
        return _Table(frame, path.name, lambda r: f"{path.name} line {r + 2}")
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except pa.ArrowException as exc:
            raise unreadable_parquet(path.name, exc) from None
        return _Table(frame, path.name, lambda r: f"{path.name} row {r + 1}")
    raise ReplayInputError(path.name, "suffix", "a table must be .csv or .parquet")


def _frames(table: pd.DataFrame | Path | str, rows_per_chunk: int) -> Iterator[tuple[_Table, int]]:
    """The table's rows as frames of at most ``rows_per_chunk`` rows, read as `_read` reads
    the whole file, each with its first row's index in the table."""
    if isinstance(table, pd.DataFrame):
        for start in range(0, len(table), rows_per_chunk):
            part = table.iloc[start : start + rows_per_chunk]
            yield _Table(part, "table", _namer("row", start + 1)), start
        if table.empty:
            yield _Table(table, "table", _namer("row", 1)), 0
        return
    path = Path(table)
    suffix = path.suffix.lower()
    start = 0
    if suffix == ".csv":
        try:
            reader = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], chunksize=rows_per_chunk
            )
            with reader:
                for frame in reader:
                    first = start
                    yield _Table(frame, path.name, _namer(f"{path.name} line", first + 2)), first
                    start += len(frame)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise _unreadable_csv(path.name, exc) from None
        return
    if suffix not in (".parquet", ".pq"):
        raise ReplayInputError(path.name, "suffix", "a table must be .csv or .parquet")
    try:
        parquet = pq.ParquetFile(path)
        if parquet.metadata.num_rows == 0:  # no batch to show the columns: check them here
            _check_columns(path.name, list(parquet.schema_arrow.names))
        for batch in _parquet_batches(parquet, rows_per_chunk):
            # List cells stay Arrow lists: no Python object per cell.
            frame = pa.Table.from_batches([batch]).to_pandas(types_mapper=_arrow_lists)
            first = start
            yield _Table(frame, path.name, _namer(f"{path.name} row", first + 1)), first
            start += len(frame)
    except pa.ArrowException as exc:
        raise unreadable_parquet(path.name, exc) from None


def _parquet_batches(
    parquet: pq.ParquetFile, rows_per_chunk: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches of at most ``rows_per_chunk``, read by runs of consecutive
    row groups of about that many rows: one batch reader over the whole file holds on to
    memory as it goes (pyarrow 26: +130 MB over 5M rows), a reader per run releases it."""
    for run, _ in parquet_runs(parquet.metadata, rows_per_chunk):
        yield from parquet.iter_batches(
            batch_size=rows_per_chunk, row_groups=list(run), columns=columns
        )


def parquet_runs(
    metadata: pq.FileMetaData, rows_per_chunk: int
) -> Iterator[tuple[tuple[int, ...], int]]:
    """(row groups, rows) of each run of consecutive row groups of about ``rows_per_chunk``
    rows: the unit the chunked reading reads at once (`replay.table_parts` too)."""
    run: list[int] = []
    rows = 0
    for group in range(metadata.num_row_groups):
        run.append(group)
        rows += metadata.row_group(group).num_rows
        if rows >= rows_per_chunk or group == metadata.num_row_groups - 1:
            yield tuple(run), rows
            run, rows = [], 0


def read_run_chunks(
    path: Path | str,
    row_groups: Sequence[int],
    first_row: int,
    first_in_file: int,
    *,
    on_error: OnError = "raise",
    rows_per_chunk: int = 1 << 17,
) -> Iterator[LogChunk]:
    """One run of a Parquet file's row groups as `read_table_chunks` reads it (the same
    batches, checks and errors naming the row of the file); ``first_row`` is the run's first
    row in the whole log, ``first_in_file`` in its file."""
    path = Path(path)
    try:
        parquet = pq.ParquetFile(path)
        _check_columns(path.name, list(parquet.schema_arrow.names))
        at = first_in_file
        for batch in parquet.iter_batches(batch_size=rows_per_chunk, row_groups=list(row_groups)):
            frame = pa.Table.from_batches([batch]).to_pandas(types_mapper=_arrow_lists)
            t = _Table(frame, path.name, _namer(f"{path.name} row", at + 1))
            if not frame.empty:
                yield _chunk(_check_rows(t, on_error), first_row + at - first_in_file)
            at += len(frame)
    except pa.ArrowException as exc:
        raise unreadable_parquet(path.name, exc) from None


def read_run_event_ids(
    path: Path | str, row_groups: Sequence[int], rows_per_chunk: int = 1 << 17
) -> Iterator[np.ndarray]:
    """The ``event_id`` column of one run, as `read_event_ids` reads it."""
    parquet = pq.ParquetFile(path)
    if "event_id" not in parquet.schema_arrow.names:
        return
    for batch in parquet.iter_batches(
        batch_size=rows_per_chunk, row_groups=list(row_groups), columns=["event_id"]
    ):
        yield _text(batch.to_pandas()["event_id"])



def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unreadable_parquet(name: str, exc: BaseException) -> ReplayInputError:
    """The one-line error of a Parquet file pyarrow cannot read."""
    return ReplayInputError(name, "format", f"not a readable Parquet file ({_first_line(exc)})")


def _unreadable_csv(name: str, exc: BaseException) -> ReplayInputError:
    """The one-line error of a CSV file pandas cannot read (not UTF-8, or malformed)."""
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start : exc.start + 1].hex()
        return ReplayInputError(
            name, "encoding", f"not UTF-8 text (a byte 0x{bad}); save the table as UTF-8 CSV"
        )
    return ReplayInputError(name, "format", f"not a readable CSV ({_first_line(exc)})")

def _namer(prefix: str, offset: int) -> Callable[[int], str]:
    """Names data row r of a chunk as ``prefix`` and its number in the file."""
    return lambda r: f"{prefix} {offset + r}"


def _arrow_lists(dtype: pa.DataType) -> pd.ArrowDtype | None:
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return pd.ArrowDtype(dtype)
    return None


def _missing(column: pd.Series) -> np.ndarray:
    """Null or blank cells (an empty list is not missing: that is another check)."""
    null = column.isna().to_numpy(dtype=bool)
    if pd.api.types.is_string_dtype(column):
        return null | column.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
    if column.dtype == object:  # text mixed with lists or numbers
        blank = (isinstance(v, str) and not v.strip() for v in column)
        return null | np.fromiter(blank, bool, len(column))
    return null


def _text(column: pd.Series) -> np.ndarray:
    """Text cells as str (missing ones as "")."""
    values = np.array(column.astype(str).to_numpy(dtype=object))
    values[column.isna().to_numpy(dtype=bool)] = ""
    return values


def _floats(values: pd.Series | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 of numbers or numeric text; nan where a cell is missing or not a number."""
    if isinstance(values, pd.Series):
        if not pd.api.types.is_string_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce")
            return np.array(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
        values = pa.Array.from_pandas(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        try:  # Arrow's cast is fast; pandas finds the bad cells when there are some
            values = pc.cast(values, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            numbers = pd.to_numeric(values.to_pandas(), errors="coerce")
            return np.array(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    filled = pc.fill_null(pc.cast(values, pa.float64()), np.nan)
    return np.array(filled.to_numpy(zero_copy_only=False))  # a writable copy


def _numbers(column: pd.Series, rows: _Rows, name: str) -> np.ndarray:
    """Finite floats; any other value is a wrong-type row."""
    values = _floats(column)
    rows.reject(
        ~np.isfinite(values),
        Reason.WRONG_TYPE,
        name,
        lambda r: f"must be a finite number, got {column.iloc[r]!r}",
    )
    return values


def _lists(column: pd.Series) -> pa.Array:
    """A column of list cells (lists / arrays, or `|`-separated text) as an Arrow list array;
    missing cells are null lists."""
    if isinstance(column.dtype, pd.ArrowDtype):
        lists = pa.array(column.array)
    elif pd.api.types.is_string_dtype(column):
        lists = pc.split_pattern(pa.Array.from_pandas(column), SEPARATOR)
    else:
        try:
            lists = pa.array(column.to_numpy(dtype=object), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed cells: text, lists, numbers
            cells = [None if _is_null(v) else [str(x) for x in _parts(v)] for v in column]
            lists = pa.array(cells, type=pa.list_(pa.string()))
    return lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _parts(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        return tuple(value.split(SEPARATOR))
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(value)
    return (value,)


@dataclass(frozen=True)
class _ActionLists:
    """The distinct candidate lists: each row's list is `lists[codes[row]]`."""

    codes: np.ndarray  # (n,) int64
    lists: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, column: pd.Series, rows: _Rows) -> _ActionLists:
        # Few distinct lists, many rows: work per distinct list, not per row.
        ids = pc.cast(_lists(column), pa.list_(pa.string()))
        keys = pc.fill_null(pc.binary_join(ids, SEPARATOR), "")
        encoded = pc.dictionary_encode(keys)
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        lists = tuple(
            tuple(key.split(SEPARATOR)) if key else () for key in encoded.dictionary.to_pylist()
        )
        empty = np.array([not ids or "" in ids for ids in lists])
        rows.reject(
            empty[codes],
            Reason.EMPTY_ACTIONS,
            "actions",
            lambda r: f"needs non-empty action ids, got {column.iloc[r]!r}",
        )
        dupes = np.array([len(set(ids)) != len(ids) for ids in lists])
        rows.reject(
            dupes[codes],
            Reason.DUPLICATE_ACTION_ID,
            "actions",
            lambda r: f"repeats an action id: {column.iloc[r]!r}",
        )
        return cls(codes, lists)

    @property
    def sizes(self) -> np.ndarray:
        """(n,) number of candidates of each row."""
        return np.array([len(ids) for ids in self.lists], dtype=np.int64)[self.codes]

    def position(self, chosen: np.ndarray, rows: _Rows) -> np.ndarray:
        """(n,) index of `chosen` in each row's list; -1 (and a rejected row) when absent."""
        chosen_codes, chosen_ids = pd.factorize(pd.Series(chosen, dtype=object))
        table = np.full((len(self.lists), len(chosen_ids)), -1, dtype=np.int64)
        for u, ids in enumerate(self.lists):
            where = {a: j for j, a in enumerate(ids)}
            for c, action in enumerate(chosen_ids):
                table[u, c] = where.get(action, -1)
        position = table[self.codes, chosen_codes]
        rows.reject(
            position < 0,
            Reason.CHOSEN_NOT_IN_ACTIONS,
            "chosen",
            lambda r: f"{chosen[r]!r} is not one of {list(self.lists[self.codes[r]])}",
        )
        return position


def _pmf(
    frame: pd.DataFrame,
    lists: _ActionLists,
    position: np.ndarray,
    probability: np.ndarray,
    rows: _Rows,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, L) pmf aligned with each row's actions (nan-padded) and (n,) which rows have one;
    rows with a pmf are checked (LoggedData's logging pmf is all rows or none)."""
    column = frame["pmf"]
    cells = _lists(column)
    lengths = pc.fill_null(pc.list_value_length(cells), 0).to_numpy().astype(np.int64)
    has = lengths > 0
    flat = _floats(pc.list_flatten(cells))
    n = len(column)
    width = max(int(lengths.max()), 1)
    matrix = np.full((n, width), np.nan)
    row_of = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    matrix[row_of, np.arange(len(flat)) - starts[row_of]] = flat
    filled = np.arange(width)[None, :] < lengths[:, None]
    rows.reject(
        has & np.where(filled, np.isnan(matrix), False).any(axis=1),
        Reason.WRONG_TYPE,
        "pmf",
        lambda r: f"must hold numbers, got {column.iloc[r]!r}",
    )
    sizes = lists.sizes
    rows.reject(
        has & (lengths != sizes),
        Reason.PMF_INVALID,
        "pmf",
        lambda r: f"has {lengths[r]} entries for {sizes[r]} actions",
    )
    in_range = np.where(filled, (matrix >= 0.0) & (matrix <= 1.0), True).all(axis=1)
    total = np.where(filled, matrix, 0.0).sum(axis=1)
    rows.reject(
        has & (~in_range | (np.abs(total - 1.0) > PMF_TOLERANCE)),
        Reason.PMF_INVALID,
        "pmf",
        lambda r: f"must be probabilities summing to 1, got {column.iloc[r]!r}",
    )
    at_chosen = matrix[np.arange(n), np.clip(position, 0, width - 1)]
    rows.reject(
        has & (np.abs(at_chosen - probability) > PMF_TOLERANCE),
        Reason.PMF_INVALID,
        "pmf",
        lambda r: f"gives the chosen action {at_chosen[r]}, probability says {probability[r]}",
    )
    return matrix, has


def _timestamps(frame: pd.DataFrame, rows: _Rows) -> np.ndarray:
    """Epoch seconds from numbers or RFC 3339 text; nan where there is none."""
    n = len(frame)
    if "timestamp" not in frame.columns:
        return np.full(n, np.nan)
    column = frame["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(column):
        return _epoch(pd.to_datetime(column, utc=True))
    numbers = _floats(column)
    texts = np.isnan(numbers) & ~_missing(column)
    if texts.any():
        parsed = pd.to_datetime(column[texts], utc=True, errors="coerce", format="ISO8601")
        numbers[texts] = _epoch(parsed)
    rows.reject(
        texts & np.isnan(numbers),
        Reason.BAD_TIMESTAMP,
        "timestamp",
        lambda r: f"must be epoch seconds or RFC 3339 text, got {column.iloc[r]!r}",
    )
    return numbers


def _epoch(parsed: pd.Series) -> np.ndarray:
    """Epoch seconds of UTC datetimes, rounded like `datetime.timestamp()` (whole microseconds
    over 1e6), so text and numbers of the same instant give the same float."""
    naive = parsed.dt.tz_convert(None) if parsed.dt.tz is not None else parsed
    micros = naive.to_numpy().astype("datetime64[us]").astype(np.int64)
    return np.where(naive.isna().to_numpy(), np.nan, micros / 1e6)


def _drop_duplicates(event_ids: np.ndarray, rows: _Rows) -> None:
    """Repeated event ids are stream hygiene, as in the join: counted and dropped, never raised."""
    kept = np.flatnonzero(rows.valid)
    repeated = kept[pd.Series(event_ids[kept]).duplicated(keep="first").to_numpy()]
    if repeated.size:
        rows.skipped[Reason.DUPLICATE_IMPRESSION.value] += int(repeated.size)
        rows.valid[repeated] = False


def _required_text(text: dict[str, np.ndarray | None], column: str) -> np.ndarray:
    """A required column's text values (present: `REQUIRED` was checked before)."""
    values = text[column]
    if values is None:
        raise ReplayInputError("table", column, "required column missing")
    return values


def _logged(checked: _Checked, none_action: str | None, name: str) -> LoggedData:
    rows, text, lists, position = checked.rows, checked.text, checked.lists, checked.position
    keep = np.flatnonzero(rows.valid)
    # LoggedData's logging pmf is all rows or none.
    pmf = checked.pmf if checked.pmf is not None and checked.has_pmf[keep].all() else None
    if keep.size == 0:
        raise ReplayInputError(name, "rows", f"no usable row (skipped: {dict(rows.skipped)})")
    codes = lists.codes[keep]
    used, first = np.unique(codes, return_index=True)
    vocabulary: dict[str, int] = {}
    for u in used[np.argsort(first)]:  # first appearance, as `from_joined` orders actions
        for action in lists.lists[u]:
            vocabulary.setdefault(action, len(vocabulary))
    columns = np.zeros((len(lists.lists), len(vocabulary)), dtype=np.int64)
    masks = np.zeros((len(lists.lists), len(vocabulary)), dtype=bool)
    for u in used:
        cols = [vocabulary[a] for a in lists.lists[u]]
        columns[u, : len(cols)] = cols
        masks[u, cols] = True
    chosen = columns[codes, position[keep]]
    logging_pmf = None
    if pmf is not None:
        logging_pmf = np.zeros((keep.size, len(vocabulary)))
        for u in used:
            at = np.flatnonzero(codes == u)
            cols = [vocabulary[a] for a in lists.lists[u]]
            logging_pmf[at[:, None], cols] = pmf[keep[at], : len(cols)]
    n = keep.size

    def strings(name: str) -> np.ndarray:
        values = text[name]
        return np.full(n, "", dtype=object) if values is None else values[keep]

    return LoggedData(
        event_ids=strings("event_id"),
        triggers=strings("trigger"),
        learners=strings("learner_id"),
        timestamps=checked.timestamps[keep],
        actions=tuple(vocabulary),
        mask=masks[codes],
        chosen=chosen,
        pscore=checked.probability[keep],
        logging_pmf=logging_pmf,
        reward=checked.reward[keep],
        labels=strings("label"),
        none_action=none_action if none_action in vocabulary else None,
        impressions=None,
        skipped=rows.skipped,
        source=name,
    )


# ---- writing ------------------------------------------------------------------------------


def write_table(data: LoggedData, path: Path | str) -> int:
    """Write the decisions as CSV or Parquet (by suffix) in the columns `load_table` reads;
    candidates in the logged order when `data` has impressions. Returns the number of rows."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"write a table as .csv or .parquet, not {path.name!r}")
    lists = _row_actions(data)
    frame = pd.DataFrame(
        {
            "event_id": data.event_ids,
            "trigger": data.triggers,
            "actions": [list(ids) for ids in lists],
            "chosen": [data.actions[k] for k in data.chosen],
            "probability": data.pscore,
            "reward": data.reward,
            "learner_id": data.learners,
            "timestamp": data.timestamps,
            "label": data.labels,
        }
    )
    if data.logging_pmf is not None:
        index = {a: k for k, a in enumerate(data.actions)}
        frame.insert(
            6,
            "pmf",
            [[float(data.logging_pmf[i, index[a]]) for a in ids] for i, ids in enumerate(lists)],
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        for column in ("actions", "pmf"):
            if column in frame.columns:
                frame[column] = [SEPARATOR.join(map(_cell, v)) for v in frame[column]]
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return data.n


def _row_actions(data: LoggedData) -> Sequence[tuple[str, ...]]:
    if data.impressions is not None:
        return [imp.action_ids for imp in data.impressions]
    return [tuple(data.actions[k] for k in np.flatnonzero(row)) for row in data.mask]


def _cell(value: str | float) -> str:
    """Text of a list element; floats as repr, which reads back to the same float."""
    return repr(value) if isinstance(value, float) else value
