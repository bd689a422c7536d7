"""Disks that fill up or turn read-only under a consumer left alone for months (issue 11): a
directory the consumer cannot write fails at start in one line; a checkpoint the disk refuses
is one line naming the directory and the reason, the previous checkpoint stays current and
whole, and no temporary directory is left.

The real-disk cases mount a tmpfs (a tiny one for "disk full", one remounted read-only), which
needs root; they skip with the reason elsewhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from consumer_fixtures import BOUNDED, Stream, make_stream
from test_consumer_restarts import StoppingSource

from bandit.atomic_dir import FileOps
from bandit.errors import StorageError
from bandit.snapshots import SnapshotStore
from streams.checkpoints import CheckpointStore
from streams.memory import ManualClock

Mount = Callable[[Path, str], Path]


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """Mounts a tmpfs of a given size on a directory (unmounted after the test)."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip()}): needs root")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def _temporaries(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".tmp-")]


class RefusingOps(FileOps):
    """Real steps, but after `after` checkpoints the disk refuses every file write under
    `root` with `code`, as `write()` does: an OSError without a file name."""

    def __init__(self, root: Path, code: int, after: int = 2) -> None:
        self.root = root
        self.code = code
        self.after = after
        self.pointers = 0

    def write_file(self, path: Path, data: bytes) -> None:
        if path.is_relative_to(self.root):
            if self.pointers >= self.after:
                raise OSError(self.code, os.strerror(self.code))
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                self.pointers += 1
        super().write_file(path, data)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "No space left on device (ENOSPC)"),
        (errno.EDQUOT, "Disk quota exceeded (EDQUOT)"),
        (errno.EROFS, "Read-only file system (EROFS)"),
        (errno.EACCES, "Permission denied (EACCES)"),
        (errno.EIO, "Input/output error (EIO)"),
    ],
    ids=["ENOSPC", "EDQUOT", "EROFS", "EACCES", "EIO"],
)
def test_a_checkpoint_the_disk_refuses_is_one_line_and_the_previous_one_stays_current(
    tmp_path: Path, code: int, words: str
) -> None:
    stream = make_stream(tmp_path)
    directory = stream.config.checkpoint.directory

    with pytest.raises(StorageError) as caught:
        stream.consumer(file_ops=RefusingOps(directory, code)).run(BOUNDED)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint.directory {directory}: could not write ckpt-")
    assert words in message
    assert "CURRENT is unchanged: the previous version stays current and whole" in message
    latest = CheckpointStore(directory).latest()
    assert latest is not None and latest.sequence == 2
    assert _temporaries(directory) == []
    final = stream.consumer().run(BOUNDED)  # once the disk is fixed, nothing is lost
    assert final.ledger == stream.expected_ledger()


def test_a_snapshot_the_disk_refuses_names_the_snapshot_directory(tmp_path: Path) -> None:
    stream = make_stream(tmp_path)
    directory = stream.config.snapshots.directory

    with pytest.raises(StorageError) as caught:
        stream.consumer(file_ops=RefusingOps(directory, errno.ENOSPC)).run(BOUNDED)

    assert str(caught.value).startswith(f"{directory}: could not write snap-")
    assert "No space left on device (ENOSPC)" in str(caught.value)
    assert SnapshotStore(directory).load_latest() is not None
    assert _temporaries(directory) == []


class FillingOps(FileOps):
    """Real steps; just before the first file of the third checkpoint, fills the file system
    of `root` to the last byte, so that the write itself fails with the kernel's ENOSPC."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pointers = 0
        self.filler = root.parent / "filler"

    def write_file(self, path: Path, data: bytes) -> None:
        if path.is_relative_to(self.root):
            if self.pointers == 2 and not self.filler.exists():
                with open(self.filler, "wb", buffering=0) as fh:
                    try:
                        while True:
                            fh.write(b"\0" * 4096)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC
            if path.name == ".CURRENT.tmp":
                self.pointers += 1
        super().write_file(path, data)


def test_a_full_disk_during_a_checkpoint_is_one_line_and_cleans_up(
    tmp_path: Path, tmpfs: Mount
) -> None:
    disk = tmpfs(tmp_path / "disk", "16m")
    stream = make_stream(tmp_path, checkpoint={"directory": str(disk / "checkpoints")})
    directory = stream.config.checkpoint.directory
    filling = FillingOps(directory)

    with pytest.raises(StorageError) as caught:
        stream.consumer(file_ops=filling).run(BOUNDED)

    message = str(caught.value)
    assert message.startswith(f"checkpoint.directory {directory}: could not write ckpt-000000003")
    assert "No space left on device (ENOSPC)" in message
    latest = CheckpointStore(directory).latest()
    assert latest is not None and latest.sequence == 2
    assert _temporaries(directory) == []
    filling.filler.unlink()  # space is back: a restart finishes the stream exactly once
    assert stream.consumer().run(BOUNDED).ledger == stream.expected_ledger()


def _stopped_midway(tmp_path: Path, **sections: dict[str, object]) -> Stream:
    stream = make_stream(tmp_path, **sections)
    clock = ManualClock()
    source = StoppingSource(stream, clock, stop_at=6)
    first = stream.consumer(clock, source=source)
    source.learner = first
    first.run(BOUNDED)
    return stream


def test_a_read_only_checkpoint_directory_fails_at_start_not_at_the_first_checkpoint(
    tmp_path: Path, tmpfs: Mount
) -> None:
    disk = tmpfs(tmp_path / "disk", "16m")
    stream = _stopped_midway(tmp_path, checkpoint={"directory": str(disk / "checkpoints")})
    _remount_read_only(disk)

    with pytest.raises(StorageError) as caught:
        stream.consumer()

    assert str(caught.value) == (
        f"checkpoint.directory {disk / 'checkpoints'}: cannot write there: Read-only file "
        "system (EROFS); give it a writable directory with free space"
    )


def test_a_read_only_snapshot_directory_fails_at_start(tmp_path: Path, tmpfs: Mount) -> None:
    disk = tmpfs(tmp_path / "disk", "64k")
    _remount_read_only(disk)
    stream = make_stream(tmp_path, snapshots={"directory": str(disk / "snapshots")})

    with pytest.raises(StorageError) as caught:
        stream.consumer()

    assert str(caught.value).startswith(f"snapshots.directory {disk / 'snapshots'}: cannot write")
    assert "Read-only file system (EROFS)" in str(caught.value)


def test_a_file_where_the_checkpoint_directory_belongs_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file")
    stream = make_stream(tmp_path, checkpoint={"directory": str(tmp_path / "not-a-dir")})

    with pytest.raises(StorageError, match=r"checkpoint\.directory .*not-a-dir: cannot write"):
        stream.consumer()


def test_the_write_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    stream = make_stream(tmp_path)
    stream.consumer().run(BOUNDED)

    names = sorted(p.name for p in stream.config.checkpoint.directory.iterdir())
    assert names[:2] == ["CURRENT", "LOCK"] and len(names) == 3  # and the one checkpoint
    assert not [p for p in stream.config.snapshots.directory.iterdir() if p.name.startswith(".")]
