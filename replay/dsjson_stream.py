"""A DSJSON log too big for memory, replayed with trigger-level policies: read in batches of
lines, each batch a chunk of `replay.streaming_eval`'s passes.

Contexts are not kept (trigger-level candidates do not read them), so memory holds one batch.
A quick first pass collects the EventIds' 64-bit keys to find the repeated ones
(`replay.duplicates`); every pass then keeps the first decision of each id, as `load_dsjson`
does, so the numbers are `load_dsjson`'s (to the order of summation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson

from replay.chunked import LogChunk, chunks_of_logged, event_keys
from replay.dsjson import decision_batches, logged_batch
from replay.duplicates import FirstSeen, repeated_keys
from replay.sources import OnError
from replay.streaming_eval import ChunkSource
from replay.table_parts import ROWS_PER_CHUNK


def dsjson_source(
    path: Path | str,
    *,
    none_action: str | None,
    trigger_field: str | None = "trigger.id",
    on_error: OnError = "raise",
    lines_per_chunk: int = ROWS_PER_CHUNK,
) -> ChunkSource:
    """Chunks of the DSJSON file at ``path`` (one per batch of lines), duplicates dropped."""
    path = Path(path)
    repeated = repeated_keys(_event_keys(path, lines_per_chunk))

    def chunks() -> Iterator[LogChunk]:
        first_seen = FirstSeen(repeated)
        offset = 0
        batches = decision_batches(path, trigger_field, on_error, lines_per_batch=lines_per_chunk)
        for decisions, skipped, _ in batches:
            if not decisions:
                yield _empty(offset, skipped)
                continue
            data = logged_batch(decisions, none_action, str(path))
            (chunk,) = chunks_of_logged(data, data.n)
            chunk = replace(chunk, rows=chunk.rows + offset, skipped=skipped)
            offset += data.n
            yield first_seen(chunk)

    return chunks


def _event_keys(path: Path, lines: int) -> Iterator[np.ndarray]:
    """The keys of every line's EventId (a superset of the decisions'), a batch at a time."""
    ids: list[str] = []
    with open(path, "rb") as fh:
        for line in fh:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            event_id = doc.get("EventId") if isinstance(doc, dict) else None
            if event_id is not None:
                ids.append(str(event_id))
            if len(ids) >= lines:
                yield event_keys(np.asarray(ids, dtype=object))
                ids = []
    if ids:
        yield event_keys(np.asarray(ids, dtype=object))


def _empty(offset: int, skipped: object) -> LogChunk:
    """A chunk of no decisions that carries its lines' skip counts."""
    none = np.zeros(0, dtype=np.int64)
    return LogChunk(
        rows=none, event_ids=np.zeros(0, dtype=object), triggers=np.zeros(0, dtype=object),
        patterns=(), pattern=none, position=none, pscore=np.zeros(0), reward=np.zeros(0),
        pmf=None, skipped=skipped,  # type: ignore[arg-type]
    )  # fmt: skip
