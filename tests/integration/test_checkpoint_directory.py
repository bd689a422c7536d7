"""`nudge consume` against the real broker on a checkpoint directory it must not or cannot
use (issue 11): a second consumer on one directory, a read-only directory, a full disk. Each
is exit 2 with one line saying what is wrong, never a traceback, and nothing is lost.

The read-only and full-disk cases mount a tmpfs (root only; they skip elsewhere).
"""

from __future__ import annotations

import errno
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.checkpoints import CheckpointStore

pytestmark = pytest.mark.kafka


def _error_line(stderr: str) -> str:
    """The one `nudge:` line; what comes before it is INFO logging."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("nudge: ")]
    assert len(lines) == 1, stderr
    assert stderr.rstrip().endswith(lines[0])
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs on tmp_path/disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip()}): needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_second_consumer_on_one_checkpoint_directory_exits_2_naming_the_first(deployment):
    dep = deployment()
    summary = dep.simulate("--events", "2000", "--seed", "3")
    lock = dep.config.checkpoint.directory / "LOCK"
    first = dep.popen("consume")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if lock.exists() and lock.read_bytes().startswith(b'{"pid":%d,' % first.pid):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the first consumer never took the lock")

        second = dep.nudge("consume", "--until-idle", "2")

        assert second.returncode == 2
        line = _error_line(second.stderr)
        assert line.startswith(
            f"nudge: checkpoint.directory {dep.config.checkpoint.directory} is in use by pid "
            f"{first.pid} on host "
        )
        assert "only one consumer may use a checkpoint directory" in line
        assert "consuming" not in second.stderr  # refused before reading anything
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0

    stats_path = dep.workdir / "stats.json"
    third = dep.nudge("consume", "--until-idle", "3", "--stats-json", str(stats_path))
    assert third.returncode == 0, third.stderr  # the first released the directory
    stats = orjson.loads(stats_path.read_bytes())
    assert stats["starts"] == 2
    assert stats["learned"] == summary["expected"]["learned"]  # type: ignore[index]


def test_a_read_only_checkpoint_directory_exits_2_at_start(deployment, tmpfs: Path):
    dep = deployment(checkpoint={"directory": str(tmpfs / "checkpoints")})
    dep.simulate("--events", "300", "--seed", "4")
    assert dep.nudge("consume", "--until-idle", "2").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)

    done = dep.nudge("consume", "--until-idle", "2")

    assert done.returncode == 2
    assert _error_line(done.stderr) == (
        f"nudge: checkpoint.directory {tmpfs / 'checkpoints'}: cannot write there: Read-only "
        "file system (EROFS); give it a writable directory with free space"
    )
    assert "consuming" not in done.stderr  # at start, not at the first checkpoint


def test_a_full_disk_exits_2_in_one_line_and_the_previous_checkpoint_stays(deployment, tmpfs: Path):
    dep = deployment(checkpoint={"directory": str(tmpfs / "checkpoints"), "keep": 1})
    directory = dep.config.checkpoint.directory
    dep.simulate("--events", "500", "--seed", "5")
    assert dep.nudge("consume", "--until-idle", "2").returncode == 0
    before = CheckpointStore(directory).latest()
    assert before is not None
    size = sum(p.stat().st_size for p in (directory / f"ckpt-{before.sequence:09d}").rglob("*"))
    filler = tmpfs / "filler"
    with open(filler, "wb", buffering=0) as fh:  # fill it, then leave two pages free:
        try:  # the start-up probe fits, a checkpoint does not
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(filler, "r+b") as fh:
        fh.truncate(filler.stat().st_size - 8192)
    assert size > 8192
    dep.simulate("--events", "500", "--seed", "6")

    done = dep.nudge("consume", "--until-idle", "2")

    assert done.returncode == 2
    line = _error_line(done.stderr)
    assert line.startswith(f"nudge: checkpoint.directory {directory}: could not write ckpt-")
    assert "No space left on device (ENOSPC)" in line
    assert CheckpointStore(directory).latest() == before  # still current, still whole
    assert not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]
    filler.unlink()
    assert dep.nudge("consume", "--until-idle", "2").returncode == 0
