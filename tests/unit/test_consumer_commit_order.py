"""The consumer's order of durable effects, on in-memory I/O and real VW: dead letters are
durable before the checkpoint that counts them becomes current, and offsets are committed
only after the checkpoint that covers them is."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import orjson
from consumer_fixtures import BOUNDED, MAX_POLL_RECORDS, Stream, distinct_reasons, make_stream

from bandit.atomic_dir import FileOps
from streams.checkpoints import CheckpointStore
from streams.memory import ManualClock, MemorySource


class CheckingSource(MemorySource):
    """Notes, at each commit, the offsets of the checkpoint that is current at that moment."""

    def __init__(self, stream: Stream, clock: ManualClock) -> None:
        super().__init__(
            stream.broker, stream.topics, max_poll_records=MAX_POLL_RECORDS, clock=clock
        )
        self.store = CheckpointStore(stream.config.checkpoint.directory)
        self.current_at_commit: list[dict[str, int] | None] = []

    def commit(self, offsets: Mapping[str, int]) -> None:
        ckpt = self.store.latest()
        self.current_at_commit.append(dict(ckpt.offsets) if ckpt else None)
        super().commit(offsets)


class PointerWatch(FileOps):
    """At each move of the checkpoint pointer, compares the dead letters durable on the broker
    with those the checkpoint about to become current has counted."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.seen: list[tuple[dict[str, int], dict[str, int]]] = []  # (counted, durable)

    def replace(self, source: Path, target: Path) -> None:
        if target == self.stream.config.checkpoint.directory / "CURRENT":
            name = source.read_text()
            state = orjson.loads((target.parent / name / "state.json").read_bytes())
            durable = Counter(reason for _, reason in self.stream.dead_letters())
            self.seen.append((state["stats"]["dead_letters_by_reason"], dict(durable)))
        super().replace(source, target)


def test_offsets_are_committed_only_once_the_checkpoint_covering_them_is_current(
    tmp_path: Path,
) -> None:
    stream = make_stream(tmp_path)
    clock = ManualClock()
    source = CheckingSource(stream, clock)

    stats = stream.consumer(clock, source=source).run(BOUNDED)

    assert len(source.commits) == stats.checkpoints >= 4
    assert source.current_at_commit == source.commits
    assert stream.broker.committed(source.group) == source.commits[-1]
    assert source.commits[-1] == stream.end_offsets()


def test_dead_letters_are_durable_before_the_checkpoint_that_counts_them_becomes_current(
    tmp_path: Path,
) -> None:
    stream = make_stream(tmp_path)
    watch = PointerWatch(stream)

    stats = stream.consumer(file_ops=watch).run(BOUNDED)

    assert len(watch.seen) == stats.checkpoints
    assert any(counted for counted, _ in watch.seen[:-1])  # dead letters before the last one
    for counted, durable in watch.seen:
        assert durable == counted
    assert distinct_reasons(stream.dead_letters()) == stream.truth.expected_dead_letters
