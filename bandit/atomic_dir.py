"""Atomic directories: versions written whole under a temporary name, then a pointer moved to them.

Checkpoints and snapshots are both a directory of immutable versions (`ckpt-000000007`,
`snap-000000012`) plus one small pointer file naming the current one (`CURRENT`, `LATEST`).
`AtomicDirectories.publish` writes a version in the order that makes a crash at any moment
harmless:

1. every file is written under `.tmp-<name>-<pid>` and fsynced, then the directories holding
   them, so the rename below can only ever expose complete files;
2. the temporary directory is renamed to its final name and the store directory fsynced, so
   the new version exists on disk before anything points at it;
3. the pointer's bytes go to `.<POINTER>.tmp`, which replaces the pointer (`os.replace` is
   atomic), and the store directory is fsynced: readers see the old version or the new one;
4. all but `keep` versions (the new one and the newest others) and temporary directories
   left by a crashed writer are removed; only after the pointer moved, so never the current.

One writer per store directory: pruning removes every temporary directory it finds (the
consumer holds `bandit.dir_lock.DirectoryLock` on its checkpoint directory to make sure).
Every file-system step goes through a `FileOps`, which tests wrap to crash at any one step.
A step the disk refuses (full, read-only, no permission) ends the publish with a one-line
`StorageError` after the temporary directory is removed; the pointer still names the previous
version, which stays whole.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from bandit.errors import StorageError

_TMP = ".tmp-"
_PROBE = ".nudge-write-probe"


def os_error_text(exc: OSError) -> str:
    """What the system said, with the errno's name: `No space left on device (ENOSPC)`."""
    code = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc)
    return f"{reason} ({code})" if code else reason


def probe_writable(directory: Path, setting: str) -> None:
    """Create `directory` if needed, then create, fsync and delete a file in it, so that a
    directory the process cannot write fails at start, not at the first save.

    `setting`: the config field that names the directory, for the message.
    """
    probe = Path(directory) / _PROBE
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink(missing_ok=True)  # two starts may probe at once
    except OSError as exc:
        raise StorageError(
            f"{setting} {directory}: cannot write there: {os_error_text(exc)}; give it a "
            "writable directory with free space"
        ) from exc


class FileOps:
    """The file-system steps of a publish; each is durable (fsynced) when it returns."""

    def make_dir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def write_file(self, path: Path, data: bytes) -> None:
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, source: Path, target: Path) -> None:
        os.rename(source, target)

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)

    def remove_tree(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


class AtomicDirectories:
    """A directory of versions `<prefix>-<number>` and a pointer file naming the current one.

    `keep`: how many versions to keep: the one just published and the newest others.
    `ops`: the file-system steps (default: the real ones).
    """

    def __init__(
        self,
        directory: Path | str,
        prefix: str,
        pointer: str,
        keep: int,
        ops: FileOps | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (the current version), got {keep}")
        self.directory = Path(directory)
        self.prefix = prefix
        self.pointer = pointer
        self.keep = keep
        self.ops = ops or FileOps()

    def version_names(self) -> list[str]:
        """Names of the complete versions here, oldest first (numbers are zero-padded)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.glob(f"{self.prefix}-*") if p.is_dir())

    def read_pointer(self) -> bytes | None:
        """The pointer file's bytes, or None before the first publish."""
        try:
            return (self.directory / self.pointer).read_bytes()
        except FileNotFoundError:
            return None

    def publish(self, name: str, files: Mapping[str, bytes], pointer: bytes) -> Path:
        """Write `files` (relative path -> bytes, in this order) as version `name`, then make
        the pointer file hold `pointer`; returns the version's path."""
        if not name.startswith(f"{self.prefix}-") or "/" in name:
            raise ValueError(f"version name {name!r} must look like {self.prefix}-<number>")
        for rel in files:
            parts = PurePosixPath(rel).parts
            if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
                raise ValueError(f"file {rel!r} must be a relative path inside the version")
        tmp = self.directory / f"{_TMP}{name}-{os.getpid()}"
        try:
            return self._publish(name, files, pointer, tmp)
        except OSError as exc:
            self.ops.remove_tree(tmp)  # a full disk needs the space back
            try:
                moved = self.read_pointer() == pointer
            except OSError:
                moved = False
            after = (
                f"{self.pointer} already names it"
                if moved
                else f"{self.pointer} is unchanged: the previous version stays current and whole"
            )
            raise StorageError(
                f"{self.directory}: could not write {name}: {os_error_text(exc)}; {after}"
            ) from exc

    def _publish(self, name: str, files: Mapping[str, bytes], pointer: bytes, tmp: Path) -> Path:
        ops = self.ops
        ops.make_dir(self.directory)
        ops.remove_tree(tmp)  # left by an earlier attempt of this same process
        ops.make_dir(tmp)
        holders = {tmp}
        for rel, data in files.items():
            target = tmp / rel
            if target.parent not in holders:
                ops.make_dir(target.parent)
                holders.add(target.parent)
            ops.write_file(target, data)
        for holder in sorted(holders, key=lambda p: (-len(p.parts), str(p))):  # deepest first
            ops.fsync_dir(holder)
        final = self.directory / name
        ops.remove_tree(final)  # an earlier attempt that never became current
        ops.rename(tmp, final)
        ops.fsync_dir(self.directory)
        pointer_tmp = self.directory / f".{self.pointer}.tmp"
        ops.write_file(pointer_tmp, pointer)
        ops.replace(pointer_tmp, self.directory / self.pointer)
        ops.fsync_dir(self.directory)
        self._prune(keep_name=name)
        return final

    def _prune(self, keep_name: str) -> None:
        others = [n for n in self.version_names() if n != keep_name]
        for old in others[: max(0, len(others) - (self.keep - 1))]:
            self.ops.remove_tree(self.directory / old)
        for stale in sorted(self.directory.glob(f"{_TMP}{self.prefix}-*")):
            self.ops.remove_tree(stale)  # a writer crashed mid-publish
