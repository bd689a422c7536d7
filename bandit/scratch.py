"""A private scratch directory per process, for the model files Vowpal Wabbit insists on (it
loads and saves models only through paths), swept once its process is gone.

A process makes `<tmp>/nudge-vw-<random>/` on first need and `flock`s the `lock` file in it
for the rest of its life; the directory is made under a hidden name and renamed only once
locked, so no one ever sees it unlocked. Model files live there only while VW reads or
writes them. The process removes its directory at exit; one killed (`kill -9`) leaves it
behind, and the next process to make its own removes every `nudge-vw-*` whose lock it can
take: the kernel released the lock when the owner died.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

PREFIX = "nudge-vw-"
_STAGING = ".nudge-vw-new-"
_STAGING_STALE_S = 60.0  # a staging directory lives microseconds; older ones were left by a kill
_LOCK = "lock"


class ScratchDir:
    """One process's scratch directory, locked by `fd` while the process lives."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.owner = os.getpid()
        self._fd: int | None = fd

    @classmethod
    def create(cls, root: Path) -> ScratchDir:
        """A new locked directory under `root`, after sweeping those of dead processes."""
        sweep(root)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=root))
        fd = os.open(staging / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = root / f"{PREFIX}{staging.name.removeprefix(_STAGING)}"
        os.rename(staging, path)
        return cls(path, fd)

    def new_file(self, prefix: str, data: bytes | None = None) -> Path:
        """A new empty (or `data`) `.vw` file here; the caller deletes it when VW is done."""
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".vw", dir=self.path)
        with os.fdopen(fd, "wb") as fh:
            if data is not None:
                fh.write(data)
        return Path(name)

    def remove(self) -> None:
        """Delete the directory and give up the lock (only in the process that made it)."""
        if self._fd is None or os.getpid() != self.owner:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)
        self._fd = None


def sweep(root: Path) -> list[Path]:
    """Remove the scratch directories under `root` whose process is gone; returns them."""
    removed: list[Path] = []
    now = time.time()
    for path in sorted(root.glob(f"{PREFIX}*")) + sorted(root.glob(f"{_STAGING}*")):
        if not path.is_dir() or path.is_symlink():
            continue
        if path.name.startswith(_STAGING):
            try:
                if now - path.stat().st_mtime < _STAGING_STALE_S:
                    continue  # being made right now
            except OSError:
                continue
        if _unowned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _unowned(path: Path) -> bool:
    """True when no live process holds the directory's lock."""
    try:
        fd = os.open(path / _LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # its owner is removing it, or died before locking (staging)
    except OSError:
        return False  # another user's: not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


_current: ScratchDir | None = None
_guard = threading.Lock()


def scratch_dir() -> ScratchDir:
    """This process's scratch directory under the system's temporary directory, made on
    first use (a forked child makes its own)."""
    global _current
    with _guard:
        if _current is None or _current.owner != os.getpid():
            _current = ScratchDir.create(Path(tempfile.gettempdir()))
            atexit.register(_current.remove)
        return _current
