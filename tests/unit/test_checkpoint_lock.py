"""One consumer per checkpoint directory (issue 11): a second one exits saying who holds the
directory; the lock goes when its holder returns or dies (even by `kill -9`: the kernel
releases a `flock`), so a stale lock file never blocks a restart.

Two `nudge consume` processes against the real broker: tests/integration/test_checkpoint_lock.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from consumer_fixtures import BOUNDED, make_stream

from bandit.dir_lock import DirectoryLock
from bandit.errors import DirectoryInUse

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_consumer_on_one_checkpoint_directory_is_refused_naming_the_first(
    tmp_path: Path,
) -> None:
    stream = make_stream(tmp_path)
    directory = stream.config.checkpoint.directory
    first = stream.consumer()

    with pytest.raises(DirectoryInUse) as caught:
        stream.consumer()

    message = str(caught.value)
    assert message.startswith(f"checkpoint.directory {directory} is in use by pid {os.getpid()}")
    assert f"on host {socket.gethostname()} since 20" in message
    assert f"(lock file {directory / 'LOCK'})" in message
    assert "only one consumer may use a checkpoint directory" in message
    holder = orjson.loads((directory / "LOCK").read_bytes())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert holder["started_at"].endswith("+00:00")

    stats = first.run(BOUNDED)  # the first one is not disturbed...
    assert stats.ledger == stream.expected_ledger()
    again = stream.consumer()  # ...and releases the directory when it returns
    assert again.run(BOUNDED).starts == 2


def test_the_lock_is_released_when_a_run_fails(tmp_path: Path) -> None:
    stream = make_stream(tmp_path)
    consumer = stream.consumer()
    consumer.source.poll = None  # type: ignore[assignment,method-assign]

    with pytest.raises(TypeError):
        consumer.run(BOUNDED)

    stream.consumer().run(BOUNDED)  # not refused


HOLD = """
import sys, time
from pathlib import Path
from bandit.dir_lock import DirectoryLock
DirectoryLock(Path(sys.argv[1]), "checkpoint.directory", "one at a time").acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_lock_whose_holder_was_killed_does_not_block(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        lock = DirectoryLock(tmp_path, "checkpoint.directory", "one at a time")
        with pytest.raises(DirectoryInUse, match=f"in use by pid {holder.pid} on host"):
            lock.acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)

    assert orjson.loads((tmp_path / "LOCK").read_bytes())["pid"] == holder.pid  # stale file
    with lock:
        assert lock.held
        assert orjson.loads((tmp_path / "LOCK").read_bytes())["pid"] == os.getpid()
    assert not lock.held
    lock.release()  # twice is fine


def test_a_lock_file_being_written_names_another_process(tmp_path: Path) -> None:
    first = DirectoryLock(tmp_path, "checkpoint.directory", "one at a time").acquire()
    try:
        (tmp_path / "LOCK").write_bytes(b'{"pid": 12')  # the holder is mid-write
        with pytest.raises(DirectoryInUse, match="in use by another process"):
            DirectoryLock(tmp_path, "checkpoint.directory", "one at a time").acquire()
    finally:
        first.release()
