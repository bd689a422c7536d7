"""Repeated event ids across the chunks of a log, found in memory bounded by one bucket.

The table loader keeps the first row of an event id and counts the others as duplicates; across
chunks that needs every id seen before. Rather than hold them all (8 bytes or more per event),
`repeated_keys` spills each row's 64-bit key (`replay.chunked.event_keys`) to one of `BUCKETS`
files by its top bits and finds the repeated keys one bucket at a time. `FirstSeen` then drops,
in each pass over the chunks, every row after the first of the few ids whose key repeats,
comparing the ids themselves, so that a hash collision drops nothing.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from bandit.events import Reason
from replay.chunked import LogChunk

BUCKET_BITS = 6
BUCKETS = 1 << BUCKET_BITS


def repeated_keys(
    key_chunks: Iterable[np.ndarray], directory: Path | str | None = None
) -> np.ndarray:
    """Sorted uint64 keys that occur more than once in ``key_chunks``, spilled to temporary
    files under ``directory`` (the system's temporary directory by default)."""
    with (
        tempfile.TemporaryDirectory(prefix="nudge-keys-", dir=directory) as tmp,
        ExitStack() as stack,
    ):
        paths = [Path(tmp) / f"{b:03d}.u64" for b in range(BUCKETS)]
        files = [stack.enter_context(open(p, "wb")) for p in paths]
        for keys in key_chunks:
            keys = np.asarray(keys, dtype=np.uint64)
            bucket = (keys >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)
            order = np.argsort(bucket, kind="stable")
            counts = np.bincount(bucket, minlength=BUCKETS)
            ends = np.cumsum(counts)
            for b in np.flatnonzero(counts).tolist():
                keys[order[ends[b] - counts[b] : ends[b]]].tofile(files[b])
        stack.close()
        found = [_repeats(np.fromfile(p, dtype=np.uint64)) for p in paths]
    return np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)


def _repeats(keys: np.ndarray) -> np.ndarray:
    keys.sort()
    same = keys[1:] == keys[:-1]
    return np.unique(keys[1:][same])


class FirstSeen:
    """One pass's filter: among rows whose key is in ``repeated``, keeps the first row of each
    event id and counts the others as duplicate impressions (as `replay.tables` does)."""

    def __init__(self, repeated: np.ndarray) -> None:
        self.repeated = np.asarray(repeated, dtype=np.uint64)
        self._seen: set[str] = set()

    def __call__(self, chunk: LogChunk) -> LogChunk:
        if self.repeated.size == 0 or chunk.n == 0:
            return chunk
        suspects = np.flatnonzero(np.isin(chunk.keys(), self.repeated))
        keep = np.ones(chunk.n, dtype=bool)
        for row in suspects.tolist():
            event_id = str(chunk.event_ids[row])
            if event_id in self._seen:
                keep[row] = False
            else:
                self._seen.add(event_id)
        dropped = int((~keep).sum())
        if not dropped:
            return chunk
        return chunk.subset(keep, Counter({Reason.DUPLICATE_IMPRESSION.value: dropped}))
