"""One chunk of a log too big for memory: validated decisions whose candidates are coded per chunk.

A chunk does not know the log's action vocabulary (a table reveals it only once read to the
end), so each row's candidate list is an index into the chunk's own distinct lists
(``patterns``) and the chosen action a position in that list. `LogChunk.logged` maps a chunk
onto the vocabulary once it is known, as the `LoggedData` that candidate policies and
estimators read. Chunks are plain values: functions of one chunk (`replay.chunk_scan`,
`replay.streaming_eval`) can run anywhere and their results merge.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from replay.logged import LoggedData


@dataclass(frozen=True)
class LogChunk:
    """n validated decisions (see the module docstring); row i of every array is decision i."""

    rows: np.ndarray  # (n,) int64 index of the decision in the whole log (0-based)
    event_ids: np.ndarray  # (n,) str
    triggers: np.ndarray  # (n,) str
    patterns: tuple[tuple[str, ...], ...]  # the chunk's distinct candidate lists
    pattern: np.ndarray  # (n,) int64 index into `patterns`
    position: np.ndarray  # (n,) int64 index of the chosen action in its list
    pscore: np.ndarray  # (n,) logged probability of the chosen action
    reward: np.ndarray  # (n,)
    pmf: np.ndarray | None  # (n, L) logging pmf aligned with each list, nan-padded; nan row:
    # no pmf logged; None: no row has one
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows left out

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])

    def has_pmf(self) -> np.ndarray:
        """(n,) True where the decision logged its whole pmf."""
        if self.pmf is None:
            return np.zeros(self.n, dtype=bool)
        return ~np.isnan(self.pmf[:, 0])

    def keys(self) -> np.ndarray:
        """(n,) uint64 hash of each event id: a row key that no chunking changes (duplicates,
        bootstrap weights)."""
        return event_keys(self.event_ids)

    def folds(self, k: int) -> np.ndarray:
        """(n,) fold in [0, k) of each row, as `LoggedData.folds` assigns it (by event id)."""
        if k < 2:
            raise ValueError(f"need at least 2 folds; got {k}")
        return np.fromiter(
            (zlib.crc32(str(e).encode()) % k for e in self.event_ids), np.int64, self.n
        )

    def subset(self, keep: np.ndarray, skipped: Counter[str] | None = None) -> LogChunk:
        """The rows where ``keep`` (bool) holds; ``skipped`` adds to the skip counts."""
        pmf = None if self.pmf is None else self.pmf[keep]
        return LogChunk(
            rows=self.rows[keep], event_ids=self.event_ids[keep], triggers=self.triggers[keep],
            patterns=self.patterns, pattern=self.pattern[keep], position=self.position[keep],
            pscore=self.pscore[keep], reward=self.reward[keep],
            pmf=None if pmf is None or np.isnan(pmf[:, 0]).all() else pmf,
            skipped=self.skipped + (skipped or Counter()),
        )  # fmt: skip

    def logged(
        self, columns: Mapping[tuple[str, ...], np.ndarray], actions: tuple[str, ...],
        none_action: str | None, source: str = "",
    ) -> LoggedData:  # fmt: skip
        """The chunk over the log's vocabulary ``actions``; ``columns`` maps each candidate list
        to its actions' columns. No contexts; skips stay with the chunk."""
        k = len(actions)
        cols = [np.asarray(columns[p], dtype=np.int64) for p in self.patterns]
        width = max(len(c) for c in cols)
        table = np.full((len(cols), width), -1, dtype=np.int64)
        masks = np.zeros((len(cols), k), dtype=bool)
        for u, c in enumerate(cols):
            table[u, : len(c)] = c
            masks[u, c] = True
        chosen = table[self.pattern, self.position]
        logging_pmf = None
        if self.pmf is not None and self.has_pmf().all():
            logging_pmf = np.zeros((self.n, k))
            lengths = np.array([len(c) for c in cols])[self.pattern]
            rows, at = np.nonzero(np.arange(self.pmf.shape[1])[None, :] < lengths[:, None])
            logging_pmf[rows, table[self.pattern[rows], at]] = self.pmf[rows, at]
        blank = np.full(self.n, "", dtype=object)
        return LoggedData(
            event_ids=self.event_ids, triggers=self.triggers, learners=blank,
            timestamps=np.full(self.n, np.nan), actions=actions, mask=masks[self.pattern],
            chosen=chosen, pscore=self.pscore, logging_pmf=logging_pmf, reward=self.reward,
            labels=blank, none_action=none_action if none_action in actions else None,
            source=source,
        )  # fmt: skip


def event_keys(event_ids: np.ndarray) -> np.ndarray:
    """(n,) uint64 64-bit hash of each event id (SipHash with pandas' fixed key: the same in
    every process and on every machine)."""
    ids = np.asarray(event_ids, dtype=object)
    if ids.shape[0] == 0:
        return np.zeros(0, dtype=np.uint64)
    return np.asarray(pd.util.hash_array(ids.astype(str).astype(object)), dtype=np.uint64)


def chunks_of_logged(data: LoggedData, rows_per_chunk: int) -> Iterator[LogChunk]:
    """``data`` (already validated and free of duplicates) as chunks of ``rows_per_chunk``
    rows: the streaming path on a log that fits in memory (tests, and the same numbers)."""
    if rows_per_chunk < 1:
        raise ValueError(f"rows_per_chunk must be >= 1; got {rows_per_chunk}")
    for start in range(0, data.n, rows_per_chunk):
        stop = min(start + rows_per_chunk, data.n)
        mask = data.mask[start:stop]
        unique, codes = np.unique(mask, axis=0, return_inverse=True)
        codes = codes.reshape(-1)
        patterns = tuple(tuple(data.actions[c] for c in np.flatnonzero(u)) for u in unique)
        chosen = data.chosen[start:stop]
        position = np.cumsum(mask, axis=1)[np.arange(stop - start), chosen] - 1
        pmf = None
        if data.logging_pmf is not None:
            width = max(len(p) for p in patterns)
            pmf = np.full((stop - start, width), np.nan)
            for u, row in enumerate(unique):
                at = np.flatnonzero(codes == u)
                cols = np.flatnonzero(row)
                pmf[at[:, None], np.arange(cols.size)] = data.logging_pmf[start:stop][at][:, cols]
        yield LogChunk(
            rows=np.arange(start, stop, dtype=np.int64),
            event_ids=data.event_ids[start:stop], triggers=data.triggers[start:stop],
            patterns=patterns, pattern=codes.astype(np.int64), position=position.astype(np.int64),
            pscore=data.pscore[start:stop], reward=data.reward[start:stop], pmf=pmf,
        )  # fmt: skip
