"""An exclusive lock on a directory that only one process may write: `flock` on a lock file.

The kernel releases a `flock` when the process holding it dies, even by `kill -9`, so the
lock file a dead process leaves behind never blocks anyone. The file's text (pid, host, start
time) only tells a second process who holds the lock. Releasing keeps the file: deleting it
would let one process lock the old file and another a new one of the same name.
"""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import orjson

from bandit.atomic_dir import os_error_text
from bandit.errors import DirectoryInUse, StorageError

LOCK_FILE = "LOCK"


class DirectoryLock:
    """`flock(LOCK_EX | LOCK_NB)` on `<directory>/<file>` (`LOCK` unless given), holding
    `{"pid": ..., "host": ..., "started_at": ...}` while locked.

    `setting`: the config field naming the directory, for messages; `purpose`: what one
    process per directory means, for the message a second one gets.
    """

    def __init__(self, directory: Path, setting: str, purpose: str, file: str = LOCK_FILE) -> None:
        self.directory = Path(directory)
        self.setting = setting
        self.purpose = purpose
        self.file = file
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.file

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> Self:
        """Take the lock or raise `DirectoryInUse` naming the live holder; returns self."""
        if self._fd is not None:
            return self
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(
                f"{self.setting} {self.directory}: cannot create the lock file: "
                f"{os_error_text(exc)}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DirectoryInUse(
                f"{self.setting} {self.directory} is in use by {holder} (lock file "
                f"{self.path}): {self.purpose}; stop that process first, or give this one "
                f"its own {self.setting}"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StorageError(
                f"{self.setting} {self.directory}: cannot lock {self.path}: {os_error_text(exc)}"
            ) from exc
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, orjson.dumps(me) + b"\n", 0)
            os.fsync(fd)
        except OSError as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise StorageError(
                f"{self.setting} {self.directory}: cannot write {self.path}: {os_error_text(exc)}"
            ) from exc
        self._fd = fd
        return self

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it (True), else False; other failures raise."""
        try:
            self.acquire()
        except DirectoryInUse:
            return False
        return True

    def release(self) -> None:
        """Give the lock up; safe to call twice (the file stays, see the module docstring)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who the lock file says holds it: `pid 4242 on host web-1 since 2026-...`."""
    try:
        info = orjson.loads(os.pread(fd, 4096, 0))
        return f"pid {int(info['pid'])} on host {info['host']} since {info['started_at']}"
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return "another process"  # it is writing the file right now
