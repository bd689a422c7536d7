"""The first pass over a chunked log: vocabulary, triggers and the sums behind the tabular
reward model and the best single actions, as statistics that merge across chunks.

`scan_chunk` summarises one chunk by block, a (candidate list, trigger) pair; `ScanStats.merge`
adds summaries, blocks in the order they first appear, so that merging chunks in log order
gives the vocabulary `replay.tables.load_table` gives (actions by first appearance). The sums
are those `fit_tabular` and `BestUniform` take over rows, by fold and chosen action:
decisions, ``sum 1/p`` and ``sum r/p``. `LogPlan.of` turns the merged statistics into what
the later passes need.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bandit.errors import ReplayInputError
from replay.chunked import LogChunk

Block = tuple[tuple[str, ...], str]  # (candidate list, trigger)


@dataclass(frozen=True)
class BlockSums:
    """Sums over one block's decisions by fold and position of the chosen action in the list."""

    count: np.ndarray  # (folds, L) decisions
    inverse: np.ndarray  # (folds, L) sum of 1 / p
    weighted: np.ndarray  # (folds, L) sum of r / p
    with_pmf: int  # decisions that logged their whole pmf

    def merge(self, other: BlockSums) -> BlockSums:
        return BlockSums(
            self.count + other.count,
            self.inverse + other.inverse,
            self.weighted + other.weighted,
            self.with_pmf + other.with_pmf,
        )


@dataclass(frozen=True)
class ScanStats:
    """The first pass's statistics of some chunks; `merge` is associative."""

    folds: int
    blocks: Mapping[Block, BlockSums] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)

    def merge(self, other: ScanStats) -> ScanStats:
        """Both summaries together, ``self``'s blocks first (``self`` comes earlier in the log)."""
        if other.folds != self.folds:
            raise ValueError(f"cannot merge scans of {self.folds} and {other.folds} folds")
        blocks = dict(self.blocks)
        for key, sums in other.blocks.items():
            blocks[key] = blocks[key].merge(sums) if key in blocks else sums
        return ScanStats(self.folds, blocks, self.skipped + other.skipped)

    @property
    def rows(self) -> int:
        return int(sum(int(b.count.sum()) for b in self.blocks.values()))


def scan_chunk(chunk: LogChunk, folds: int) -> ScanStats:
    """The `ScanStats` of one chunk (rows assigned to ``folds`` folds by event id)."""
    if chunk.n == 0:
        return ScanStats(folds, {}, Counter(chunk.skipped))
    trigger_code, trigger_names = pd.factorize(pd.Series(chunk.triggers, dtype=object))
    n_triggers = len(trigger_names)
    block = chunk.pattern * n_triggers + trigger_code
    width = max(len(p) for p in chunk.patterns)
    size = len(chunk.patterns) * n_triggers
    index = (block * folds + chunk.folds(folds)) * width + chunk.position
    inverse = 1.0 / chunk.pscore
    shape = (size, folds, width)
    count = np.bincount(index, minlength=size * folds * width).reshape(shape)
    inv = np.bincount(index, weights=inverse, minlength=size * folds * width).reshape(shape)
    weighted = np.bincount(
        index, weights=inverse * chunk.reward, minlength=size * folds * width
    ).reshape(shape)
    with_pmf = np.bincount(block, weights=chunk.has_pmf(), minlength=size)
    present, first = np.unique(block, return_index=True)
    blocks: dict[Block, BlockSums] = {}
    for b in present[np.argsort(first)].tolist():
        pattern = chunk.patterns[b // n_triggers]
        length = len(pattern)
        blocks[(pattern, str(trigger_names[b % n_triggers]))] = BlockSums(
            count[b, :, :length], inv[b, :, :length], weighted[b, :, :length], int(with_pmf[b])
        )
    return ScanStats(folds, blocks, Counter(chunk.skipped))


@dataclass(frozen=True)
class LogPlan:
    """What the first pass learned about the whole log, over its vocabulary (K actions) and
    sorted triggers (C cells); block b is a (candidate list, trigger) pair."""

    source: str
    folds: int
    actions: tuple[str, ...]
    triggers: tuple[str, ...]
    none_action: str | None
    columns: Mapping[tuple[str, ...], np.ndarray]  # candidate list -> its actions' columns
    block_cell: np.ndarray  # (blocks,) trigger index
    block_mask: np.ndarray  # (blocks, K) the block's candidates
    count: np.ndarray  # (blocks, folds, K) decisions by chosen action
    inverse: np.ndarray  # (blocks, folds, K) sum of 1 / p
    weighted: np.ndarray  # (blocks, folds, K) sum of r / p
    with_pmf: int
    skipped: Counter[str]

    @classmethod
    def of(
        cls,
        stats: ScanStats,
        *,
        none_action: str | None,
        source: str = "",
        actions: tuple[str, ...] | None = None,
    ) -> LogPlan:
        """The plan of a whole log's merged statistics; ``actions`` fixes the vocabulary's
        order (a `LoggedData`'s), else actions come in order of first appearance."""
        if stats.rows == 0:
            raise ReplayInputError(
                source or "the input", "rows", f"no usable row (skipped: {dict(stats.skipped)})"
            )
        vocabulary = {a: k for k, a in enumerate(actions or ())}
        for pattern, _trigger in stats.blocks:
            for action in pattern:
                if action not in vocabulary:
                    if actions is not None:
                        raise ValueError(f"action {action!r} is not in the given {actions}")
                    vocabulary.setdefault(action, len(vocabulary))
        k = len(vocabulary)
        triggers = tuple(sorted({t for _p, t in stats.blocks}))
        cell = {t: c for c, t in enumerate(triggers)}
        n_blocks = len(stats.blocks)
        shape = (n_blocks, stats.folds, k)
        count, inverse, weighted = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape)
        block_mask = np.zeros((n_blocks, k), dtype=bool)
        columns: dict[tuple[str, ...], np.ndarray] = {}
        for b, ((pattern, _trigger), sums) in enumerate(stats.blocks.items()):
            cols = columns.setdefault(pattern, np.array([vocabulary[a] for a in pattern], np.int64))
            block_mask[b, cols] = True
            count[b][:, cols] = sums.count
            inverse[b][:, cols] = sums.inverse
            weighted[b][:, cols] = sums.weighted
        return cls(
            source=source,
            folds=stats.folds,
            actions=tuple(vocabulary),
            triggers=triggers,
            none_action=none_action if none_action in vocabulary else None,
            columns=columns,
            block_cell=np.array([cell[t] for _p, t in stats.blocks], dtype=np.int64),
            block_mask=block_mask,
            count=count,
            inverse=inverse,
            weighted=weighted,
            with_pmf=sum(s.with_pmf for s in stats.blocks.values()),
            skipped=Counter({str(k): v for k, v in stats.skipped.items()}),  # no enums
        )

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def k(self) -> int:
        return len(self.actions)

    @property
    def has_pmf(self) -> bool:
        """Every decision logged its whole pmf (the logging policy can be a candidate)."""
        return self.with_pmf == self.n

    def none_column(self) -> int | None:
        return None if self.none_action is None else self.actions.index(self.none_action)

    def rows_without_none(self) -> int:
        """Decisions where sending nothing was not a candidate (all of them without one)."""
        none = self.none_column()
        if none is None:
            return self.n
        return int(self.count[~self.block_mask[:, none]].sum())

    def cell_codes(self, triggers: np.ndarray) -> np.ndarray:
        """(n,) index of each trigger in `triggers` (sorted, as `LoggedData.trigger_codes`)."""
        codes = np.searchsorted(np.array(self.triggers, dtype=object), triggers.astype(object))
        return np.asarray(codes, dtype=np.int64)

    def blocks_in(self, trigger: str | None = None, effect: int | None = None) -> np.ndarray:
        """(blocks,) bool: the blocks of ``trigger`` (all with None) where, with ``effect``, that
        message and the send-nothing action were both candidates."""
        selected = np.ones(len(self.block_cell), dtype=bool)
        if trigger is not None:
            selected &= self.block_cell == self.triggers.index(trigger)
        if effect is not None:
            none = self.none_column()
            if none is None:
                return np.zeros_like(selected)
            selected &= self.block_mask[:, effect] & self.block_mask[:, none]
        return selected

    def rows_in(self, blocks: np.ndarray) -> int:
        return int(self.count[blocks].sum())

    def tabular_sums(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cells, K) ``sum 1/p`` and ``sum r/p`` by trigger and chosen action over ``blocks``:
        what `replay.estimators.tabular_q` fits."""
        logged = np.zeros((len(self.triggers), self.k))
        total = np.zeros((len(self.triggers), self.k))
        np.add.at(logged, self.block_cell[blocks], self.inverse[blocks].sum(axis=1))
        np.add.at(total, self.block_cell[blocks], self.weighted[blocks].sum(axis=1))
        return logged, total
