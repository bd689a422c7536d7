"""Unit tests of the atomic version directories (`bandit.atomic_dir`) shared by checkpoints and
snapshots: a crash at any step leaves the pointer on a whole version."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bandit.atomic_dir import AtomicDirectories, FileOps

V1 = {"models/a.bin": b"first model", "state.json": b'{"n": 1}'}
V2 = {"models/a.bin": b"second model, longer", "state.json": b'{"n": 2}'}


class Crash(BaseException):
    """The writing process died here."""


class CountingOps(FileOps):
    """Real steps, counted; the `crash_at`-th step (from 1) dies before it runs or, for a
    file write, after writing half of the bytes unsynced."""

    def __init__(self, crash_at: int | None = None, torn: bool = False) -> None:
        self.crash_at = crash_at
        self.torn = torn
        self.steps: list[str] = []

    def _step(
        self, name: str, action: Callable[[], object], half: Callable[[], object] | None = None
    ) -> None:
        self.steps.append(name)
        if len(self.steps) == self.crash_at:
            if self.torn and half is not None:
                half()
            raise Crash(name)
        action()

    def make_dir(self, path: Path) -> None:
        self._step(f"make_dir {path.name}", lambda: super(CountingOps, self).make_dir(path))

    def write_file(self, path: Path, data: bytes) -> None:
        self._step(
            f"write_file {path.name}",
            lambda: super(CountingOps, self).write_file(path, data),
            lambda: path.write_bytes(data[: len(data) // 2]),
        )

    def fsync_dir(self, path: Path) -> None:
        self._step(f"fsync_dir {path.name}", lambda: super(CountingOps, self).fsync_dir(path))

    def rename(self, source: Path, target: Path) -> None:
        self._step("rename", lambda: super(CountingOps, self).rename(source, target))

    def replace(self, source: Path, target: Path) -> None:
        self._step("replace", lambda: super(CountingOps, self).replace(source, target))

    def remove_tree(self, path: Path) -> None:
        self._step(f"remove_tree {path.name}", lambda: super(CountingOps, self).remove_tree(path))


def contents(version: Path) -> dict[str, bytes]:
    return {
        p.relative_to(version).as_posix(): p.read_bytes() for p in version.rglob("*") if p.is_file()
    }


def current(store: AtomicDirectories) -> dict[str, bytes]:
    pointer = store.read_pointer()
    assert pointer is not None
    return contents(store.directory / pointer.decode())


def test_publish_writes_the_files_and_points_at_them(tmp_path: Path) -> None:
    store = AtomicDirectories(tmp_path / "store", "v", "CURRENT", keep=2)

    path = store.publish("v-001", V1, b"v-001")

    assert path == tmp_path / "store" / "v-001"
    assert contents(path) == V1
    assert store.read_pointer() == b"v-001"
    assert sorted(p.name for p in store.directory.iterdir()) == ["CURRENT", "v-001"]


def test_no_pointer_before_the_first_publish(tmp_path: Path) -> None:
    store = AtomicDirectories(tmp_path / "missing", "v", "CURRENT", keep=1)
    assert store.read_pointer() is None
    assert store.version_names() == []


def test_keep_prunes_the_oldest_but_never_the_version_just_published(tmp_path: Path) -> None:
    store = AtomicDirectories(tmp_path, "v", "CURRENT", keep=2)
    for n in (3, 4, 5):
        store.publish(f"v-{n:03d}", V1, f"v-{n:03d}".encode())
    assert store.version_names() == ["v-004", "v-005"]

    store.publish("v-001", V2, b"v-001")  # sorts first, yet it is the current one

    assert store.version_names() == ["v-001", "v-005"]
    assert current(store) == V2


def test_the_steps_of_a_publish_in_order(tmp_path: Path) -> None:
    store = AtomicDirectories(tmp_path, "v", "CURRENT", keep=1)
    store.publish("v-001", V1, b"v-001")
    ops = CountingOps()
    store.ops = ops

    store.publish("v-002", V2, b"v-002")

    tmp = f".tmp-v-002-{os.getpid()}"
    assert ops.steps == [
        f"make_dir {tmp_path.name}",
        f"remove_tree {tmp}",
        f"make_dir {tmp}",
        "make_dir models",
        "write_file a.bin",
        "write_file state.json",
        "fsync_dir models",  # deepest first, then the version's own directory
        f"fsync_dir {tmp}",
        "remove_tree v-002",
        "rename",
        f"fsync_dir {tmp_path.name}",
        "write_file .CURRENT.tmp",
        "replace",
        f"fsync_dir {tmp_path.name}",
        "remove_tree v-001",
    ]


STEPS = 15  # of a publish that prunes one old version (the list above)


@pytest.mark.parametrize("torn", [False, True], ids=["before", "torn"])
@pytest.mark.parametrize("crash_at", range(1, STEPS + 1))
def test_a_crash_at_any_step_leaves_the_pointer_on_a_whole_version(
    tmp_path: Path, crash_at: int, torn: bool
) -> None:
    store = AtomicDirectories(tmp_path, "v", "CURRENT", keep=1)
    store.publish("v-001", V1, b"v-001")
    store.ops = CountingOps(crash_at, torn)

    with pytest.raises(Crash):
        store.publish("v-002", V2, b"v-002")

    assert current(store) in (V1, V2)  # never a mix, never half a file
    restarted = AtomicDirectories(tmp_path, "v", "CURRENT", keep=1)
    restarted.publish("v-002", V2, b"v-002")  # a new process tries again
    assert current(restarted) == V2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", "v-002"]


def test_a_temporary_directory_left_by_another_crashed_writer_is_removed(tmp_path: Path) -> None:
    store = AtomicDirectories(tmp_path, "v", "CURRENT", keep=1)
    leftover = tmp_path / ".tmp-v-007-424242"
    leftover.mkdir()
    (leftover / "state.json").write_bytes(b"half")

    store.publish("v-001", V1, b"v-001")

    assert not leftover.exists()


@pytest.mark.parametrize(
    ("name", "files", "message"),
    [
        ("w-001", V1, "must look like v-<number>"),
        ("v-001/x", V1, "must look like v-<number>"),
        ("v-001", {"../escape": b""}, "relative path inside"),
        ("v-001", {"/etc/passwd": b""}, "relative path inside"),
    ],
)
def test_bad_version_names_and_file_paths_are_refused(
    tmp_path: Path, name: str, files: dict[str, bytes], message: str
) -> None:
    store = AtomicDirectories(tmp_path, "v", "CURRENT", keep=1)
    with pytest.raises(ValueError, match=message):
        store.publish(name, files, b"x")
    assert list(tmp_path.iterdir()) == []


def test_keep_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="keep must be at least 1"):
        AtomicDirectories(Path("x"), "v", "CURRENT", keep=0)
