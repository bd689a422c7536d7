"""The streaming replay's passes on a Dask cluster: each worker reads its parts of the log.

`nudge replay --table 'logs/*.parquet' --dask SCHEDULER` cuts the log into parts
(`replay.table_parts`: runs of row groups), sends each pass's chunk function to the workers
once (scattered) and maps it over the parts; the client merges the per-chunk results in log
order, exactly as the single process merges them, so the estimates are the same numbers.
Only the passes' small sums travel back; the log itself is read where the workers run (a
path every worker can open: a shared disk, or the same files on each machine).

Dask is the fit for Parquet and pandas (the `cluster` extra: `dask[distributed]`); `SCHEDULER`
is a scheduler's address (`tcp://host:8786`) or `local:N`, a cluster of N worker processes
on this machine started for the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bandit.errors import UsageError
from replay.chunked import LogChunk
from replay.sources import OnError
from replay.streaming_eval import RunPass
from replay.table_parts import ROWS_PER_CHUNK, MapParts, TablePart

LOCAL = "local"
IN_FLIGHT = 64  # parts submitted ahead of the one being merged: results wait in order


def _pass_over_part(
    part: TablePart, f: Callable[[LogChunk], Any], on_error: OnError, rows_per_chunk: int
) -> list[tuple[Any, int, int]]:
    """On a worker: f of each chunk of the part, with its kept and skipped row counts."""
    return [
        (f(chunk), chunk.n, sum(chunk.skipped.values()))
        for chunk in part.chunks(on_error, rows_per_chunk)
    ]


def _apply(part: TablePart, f: Callable[[TablePart], Any]) -> Any:
    return f(part)


@contextmanager
def dask_client(scheduler: str) -> Iterator[Any]:
    """A client of the scheduler at ``scheduler``, or of a local cluster (``local[:N]``, N
    worker processes, one thread each) started for the run and closed after it."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            "--dask needs Dask: pip install 'nudgebandit[cluster]' (dask[distributed])"
        ) from None
    if scheduler == LOCAL or scheduler.startswith(f"{LOCAL}:"):
        workers = scheduler.partition(":")[2] or "2"
        if not workers.isdigit() or int(workers) < 1:
            raise UsageError(f"--dask {scheduler}: local:N needs a number of workers N >= 1")
        with (
            LocalCluster(
                n_workers=int(workers), threads_per_worker=1, processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            yield client
        return
    try:
        client = Client(scheduler, timeout=10)
    except OSError as exc:
        raise UsageError(f"--dask {scheduler}: cannot reach the scheduler ({exc})") from None
    try:
        yield client
    finally:
        client.close()


def dask_map(client: Any, parts: Sequence[TablePart]) -> MapParts:
    """`MapParts` on the cluster: results in part order, a bounded number in flight."""

    def map_parts(f: Callable[[TablePart], Any]) -> Iterator[Any]:
        [shipped] = client.scatter([f], broadcast=True)
        return _in_order(client, [(p,) for p in parts], _apply, {"f": shipped})

    return map_parts


def dask_passes(
    client: Any,
    parts: Sequence[TablePart],
    on_error: OnError = "raise",
    rows_per_chunk: int = ROWS_PER_CHUNK,
) -> RunPass:
    """`RunPass` on the cluster: the pass's function is sent once, each part read and passed
    on a worker, the chunks' results handed back in log order."""

    def run(f: Callable[[LogChunk], Any]) -> Iterator[tuple[Any, int, int]]:
        [shipped] = client.scatter([f], broadcast=True)
        options = {"f": shipped, "on_error": on_error, "rows_per_chunk": rows_per_chunk}
        for results in _in_order(client, [(p,) for p in parts], _pass_over_part, options):
            yield from results

    return run


def _in_order(
    client: Any, calls: Sequence[tuple[Any, ...]], fn: Callable[..., Any], options: dict[str, Any]
) -> Iterator[Any]:
    """fn(*call, **options) of each call on the cluster, yielded in call order, with at most
    `IN_FLIGHT` submitted ahead (the results of a 100M-event log do not pile up)."""
    futures: list[Any] = []
    submitted = 0
    for i in range(len(calls)):
        while submitted < len(calls) and submitted < i + IN_FLIGHT:
            futures.append(client.submit(fn, *calls[submitted], pure=False, **options))
            submitted += 1
        future, futures[i] = futures[i], None
        yield future.result()
        future.release()
