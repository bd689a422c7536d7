"""A crash at any step of a checkpoint cycle, then a restart: every event learned exactly once.

A checkpoint cycle is a sequence of durable steps: flush the dead letters, write the
checkpoint (files, fsyncs, rename, the `CURRENT` pointer, pruning), commit the offsets, and
on publishing cycles write the snapshot the same way and send it to the snapshot topic. Each
test crashes one consumer at one step (before it, or halfway through a file write), drops it
as `kill -9` would (unflushed messages are lost, nothing else runs), starts a new consumer on
the same checkpoint directory and broker and runs it to the end of the input. The learned
ledger must be exactly the ledger of the valid events, and every message the simulator
corrupted, doubled or sent late must have its dead letter with its reason (at least once).

`CYCLE` lists the steps; `test_the_step_table_names_every_io_step_of_a_checkpoint_cycle`
fails when the consumer or a store gains a step the table does not name.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from consumer_fixtures import (
    BOUNDED,
    MAX_POLL_RECORDS,
    SNAPSHOT_TOPIC,
    Stream,
    distinct_reasons,
    make_stream,
)

from bandit.atomic_dir import FileOps
from bandit.snapshots import SnapshotStore, unpack_snapshot
from streams.checkpoints import CheckpointStore
from streams.memory import ManualClock, MemorySink, MemorySource


def _store_steps(store: str, files: tuple[str, ...], pointer: str) -> list[str]:
    """The steps of one `AtomicDirectories.publish` that prunes an older version (keep: 1)."""
    steps = [
        "make_dir .",
        "remove_tree <temp>",  # a leftover of an earlier attempt by this process
        "make_dir <temp>",
        "make_dir <temp>/models",
        *(f"write_file <temp>/{name}" for name in files),
        "fsync_dir <temp>/models",
        "fsync_dir <temp>",
        "remove_tree <new>",  # an earlier attempt that never became current
        "rename <temp> -> <new>",
        "fsync_dir .",
        f"write_file .{pointer}.tmp",
        f"replace .{pointer}.tmp -> {pointer}",
        "fsync_dir . #2",
        "remove_tree <old>",
    ]
    return [f"{store} {step}" for step in steps]


CYCLE: tuple[str, ...] = (
    "producer flush",
    *_store_steps(
        "checkpoint", ("models/policy-0000.vw", "state.json", "manifest.json"), "CURRENT"
    ),
    "source commit",
    *_store_steps(
        "snapshot",
        ("models/policy-0000.vw", "reactions.json", "arms.json", "pruning.json", "manifest.json"),
        "LATEST",
    ),
    "snapshot_sink send",
    "snapshot_sink flush",
)

Moment = Literal["before", "torn", "after"]


@dataclass(frozen=True)
class CrashPoint:
    """Where the process dies: before a step, halfway through a file write, or after a step."""

    moment: Moment
    step: str

    def __str__(self) -> str:
        return f"{self.moment} {self.step}"


CRASH_POINTS = [
    *(CrashPoint("before", step) for step in CYCLE),
    *(CrashPoint("torn", step) for step in CYCLE if " write_file " in step),
    CrashPoint("after", CYCLE[-1]),  # the whole cycle done, nothing after it
]


class SimulatedCrash(BaseException):
    """The process died here (not an Exception: nothing in the consumer may catch it)."""


class CrashPlan:
    """Names each I/O step of the checkpoint cycles as it happens; dies at `point`.

    A cycle is one call of the consumer's `checkpoint()`; steps outside one go to `outside`.
    The crash comes at the first occurrence of the step from the second cycle on, so there is
    a checkpoint to restart from. `die` runs first (it makes the sinks lose what was not
    flushed).
    """

    def __init__(self, point: CrashPoint | None, die: Callable[[], None]) -> None:
        self.point = point
        self.die = die
        self.cycles: list[list[str]] = []
        self.outside: list[str] = []
        self.in_cycle = False
        self.crashed_in_cycle: int | None = None

    def around_checkpoints(self, checkpoint: Callable[[bool], None]) -> Callable[[bool], None]:
        """`checkpoint` with each call recorded as one cycle."""

        def cycle(publish: bool = False) -> None:
            self.cycles.append([])
            self.in_cycle = True
            try:
                checkpoint(publish)
            finally:
                self.in_cycle = False

        return cycle

    def run(
        self, raw: str, action: Callable[[], object], torn: Callable[[], object] | None = None
    ) -> None:
        """Perform one step, dying before, halfway through (`torn`) or after it if planned."""
        cycle = self.cycles[-1] if self.in_cycle else self.outside
        repeat = sum(1 for s in cycle if s == raw or s.startswith(f"{raw} #"))
        name = raw if repeat == 0 else f"{raw} #{repeat + 1}"
        cycle.append(name)
        self._maybe_die(name, "before")
        if torn is not None and self._due(name, "torn"):
            torn()
            self._die()
        action()
        self._maybe_die(name, "after")

    def _due(self, name: str, moment: Moment) -> bool:
        return (
            self.crashed_in_cycle is None
            and self.point == CrashPoint(moment, name)
            and self.in_cycle
            and len(self.cycles) >= 2
        )

    def _maybe_die(self, name: str, moment: Moment) -> None:
        if self._due(name, moment):
            self._die()

    def _die(self) -> None:
        self.crashed_in_cycle = len(self.cycles)
        self.die()
        raise SimulatedCrash(str(self.point))


class SteppedOps(FileOps):
    """The real file-system steps, each named (relative to its store) and run through the plan."""

    def __init__(self, plan: CrashPlan, checkpoints: Path, snapshots: Path) -> None:
        self.plan = plan
        self.roots = {"checkpoint": checkpoints, "snapshot": snapshots}
        self._new = ""

    def _name(self, op: str, *paths: Path) -> str:
        store = next(s for s, root in self.roots.items() if paths[0].is_relative_to(root))
        return f"{store} {op} " + " -> ".join(self._describe(p, self.roots[store]) for p in paths)

    def _describe(self, path: Path, root: Path) -> str:
        parts = path.relative_to(root).parts
        if not parts:
            return "."
        head = parts[0]
        if head.startswith(".tmp-"):
            self._new = head.removeprefix(".tmp-").rsplit("-", 1)[0]
            head = "<temp>"
        elif head == self._new:
            head = "<new>"
        elif re.fullmatch(r"(ckpt|snap)-\d+", head):
            head = "<old>"
        return "/".join([head, *parts[1:]])

    def make_dir(self, path: Path) -> None:
        self.plan.run(self._name("make_dir", path), lambda: super(SteppedOps, self).make_dir(path))

    def write_file(self, path: Path, data: bytes) -> None:
        self.plan.run(
            self._name("write_file", path),
            lambda: super(SteppedOps, self).write_file(path, data),
            torn=lambda: path.write_bytes(data[: len(data) // 2]),  # in the page cache, unsynced
        )

    def fsync_dir(self, path: Path) -> None:
        self.plan.run(
            self._name("fsync_dir", path), lambda: super(SteppedOps, self).fsync_dir(path)
        )

    def rename(self, source: Path, target: Path) -> None:
        self.plan.run(
            self._name("rename", source, target),
            lambda: super(SteppedOps, self).rename(source, target),
        )

    def replace(self, source: Path, target: Path) -> None:
        self.plan.run(
            self._name("replace", source, target),
            lambda: super(SteppedOps, self).replace(source, target),
        )

    def remove_tree(self, path: Path) -> None:
        self.plan.run(
            self._name("remove_tree", path), lambda: super(SteppedOps, self).remove_tree(path)
        )


class SteppedSink:
    """A sink whose flush (and, for the snapshot sink, send) are steps of the plan."""

    def __init__(
        self, inner: MemorySink, plan: CrashPlan, name: str, sends_are_steps: bool
    ) -> None:
        self.inner = inner
        self.plan = plan
        self.name = name
        self.sends_are_steps = sends_are_steps

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if self.sends_are_steps:
            self.plan.run(f"{self.name} send", lambda: self.inner.send(topic, key, value, headers))
        else:
            self.inner.send(topic, key, value, headers)

    def flush(self, timeout_s: float = 60.0) -> None:
        self.plan.run(f"{self.name} flush", lambda: self.inner.flush(timeout_s))

    def close(self) -> None:
        self.inner.close()


class SteppedSource(MemorySource):
    """A source whose commit is a step of the plan."""

    def __init__(self, stream: Stream, clock: ManualClock, plan: CrashPlan) -> None:
        super().__init__(
            stream.broker, stream.topics, max_poll_records=MAX_POLL_RECORDS, clock=clock
        )
        self.plan = plan

    def commit(self, offsets: Mapping[str, int]) -> None:
        self.plan.run("source commit", lambda: super(SteppedSource, self).commit(offsets))


def run_with_plan(stream: Stream, point: CrashPoint | None) -> CrashPlan:
    """Run one consumer with every checkpoint-cycle step named; it dies at `point`, if any."""
    producer, snapshot_sink = MemorySink(stream.broker), MemorySink(stream.broker)

    def die() -> None:
        producer.crash()
        snapshot_sink.crash()

    plan = CrashPlan(point, die)
    clock = ManualClock()
    config = stream.config
    consumer = stream.consumer(
        clock,
        source=SteppedSource(stream, clock, plan),
        producer=SteppedSink(producer, plan, "producer", sends_are_steps=False),
        snapshot_sink=SteppedSink(snapshot_sink, plan, "snapshot_sink", sends_are_steps=True),
        file_ops=SteppedOps(plan, config.checkpoint.directory, config.snapshots.directory),
    )
    wrapped = plan.around_checkpoints(consumer.checkpoint)
    consumer.checkpoint = wrapped  # type: ignore[method-assign]
    if point is None:
        consumer.run(BOUNDED)
    else:
        with pytest.raises(SimulatedCrash):
            consumer.run(BOUNDED)
    return plan


def test_the_step_table_names_every_io_step_of_a_checkpoint_cycle(tmp_path: Path) -> None:
    stream = make_stream(tmp_path)

    plan = run_with_plan(stream, point=None)

    assert plan.outside == []
    for cycle in plan.cycles:  # each cycle is the table less what it had no need to do
        assert cycle == [step for step in CYCLE if step in cycle]
    assert {step for cycle in plan.cycles for step in cycle} == set(CYCLE)
    assert sum("snapshot_sink flush" in cycle for cycle in plan.cycles[1:-1]) >= 2


@pytest.mark.parametrize("point", CRASH_POINTS, ids=str)
def test_crash_at_any_step_of_a_checkpoint_cycle_then_restart_learns_every_event_exactly_once(
    tmp_path: Path, point: CrashPoint
) -> None:
    stream = make_stream(tmp_path)
    config = stream.config

    plan = run_with_plan(stream, point)
    assert plan.crashed_in_cycle is not None and plan.crashed_in_cycle >= 2

    restarted = stream.consumer()
    stats = restarted.run(BOUNDED)

    truth = stream.truth
    assert stats.starts == 2
    assert stats.consumed == len(truth.messages)
    assert stats.learned == truth.impressions
    assert stats.ledger == stream.expected_ledger()
    assert dict(stats.dead_letters_by_reason) == dict(truth.expected_dead_letters)
    assert distinct_reasons(stream.dead_letters()) == truth.expected_dead_letters
    assert stream.broker.committed("nudge-learner") == stream.end_offsets()
    # Both stores are whole again: current version loads, no temporary directory is left.
    assert CheckpointStore(config.checkpoint.directory).latest() is not None
    published = SnapshotStore(config.snapshots.directory).load_latest()
    for directory in (config.checkpoint.directory, config.snapshots.directory):
        assert not [p.name for p in directory.iterdir() if p.name.startswith(".tmp-")]
    # The snapshot topic ends with the newest snapshot.
    last = stream.broker.records(SNAPSHOT_TOPIC)[-1].value
    assert last is not None
    assert unpack_snapshot(last, SnapshotStore(tmp_path / "mirror")) == published.name


def test_the_crash_points_cover_both_stores_and_every_moment() -> None:
    kinds = Counter(p.step.split(" ")[0] for p in CRASH_POINTS)
    assert kinds["checkpoint"] >= 15 and kinds["snapshot"] >= 18
    assert {p.moment for p in CRASH_POINTS} == {"before", "torn", "after"}
