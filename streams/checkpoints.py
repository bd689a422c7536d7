"""Atomic checkpoints: models, join state, offsets and stats saved together or not at all.

Each checkpoint is a directory `ckpt-<sequence>` written under a temporary name, fsynced and
renamed; the `CURRENT` file naming the newest is replaced atomically last. A `kill -9` at any
moment leaves either the old or the new checkpoint current, never a mix. Model files carry a
sha256 in `state.json` that is checked on load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bandit.errors import CheckpointError

FORMAT_VERSION = 1
_CURRENT = "CURRENT"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything a consumer needs to resume exactly where it was."""

    sequence: int
    offsets: dict[str, int]  # "topic/partition" -> next offset to read
    join_state: dict[str, Any]
    stats: dict[str, Any]
    models: dict[str, bytes]  # policy scope -> VW model bytes
    vw_arguments: str


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class CheckpointStore:
    """A directory of checkpoints; keeps the newest `keep`."""

    def __init__(self, directory: Path, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def save(self, ckpt: Checkpoint) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"ckpt-{ckpt.sequence:09d}"
        tmp = self.directory / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "models").mkdir(parents=True)
        model_files: dict[str, dict[str, str]] = {}
        for i, (scope, model) in enumerate(sorted(ckpt.models.items())):
            fname = f"models/policy-{i:04d}.vw"
            _write(tmp / fname, model)
            model_files[scope] = {"file": fname, "sha256": hashlib.sha256(model).hexdigest()}
        state = {
            "format": FORMAT_VERSION,
            "sequence": ckpt.sequence,
            "created_at": time.time(),
            "offsets": ckpt.offsets,
            "join": ckpt.join_state,
            "stats": ckpt.stats,
            "models": model_files,
            "vw_arguments": ckpt.vw_arguments,
        }
        _write(tmp / "state.json", orjson.dumps(state))
        _fsync_dir(tmp / "models")
        _fsync_dir(tmp)
        final = self.directory / name
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(self.directory)
        _write(self.directory / f".{_CURRENT}.tmp", name.encode())
        os.replace(self.directory / f".{_CURRENT}.tmp", self.directory / _CURRENT)
        _fsync_dir(self.directory)
        self._prune(keep_name=name)
        return final

    def _prune(self, keep_name: str) -> None:
        names = sorted(p.name for p in self.directory.glob("ckpt-*") if p.is_dir())
        for old in names[: max(0, len(names) - self.keep)]:
            if old != keep_name:
                shutil.rmtree(self.directory / old, ignore_errors=True)
        for tmp in self.directory.glob(".tmp-ckpt-*"):
            shutil.rmtree(tmp, ignore_errors=True)

    def latest(self) -> Checkpoint | None:
        """The current checkpoint, or None when there is none yet."""
        current = self.directory / _CURRENT
        if not current.exists():
            return None
        name = current.read_text().strip()
        return self.load(self.directory / name)

    def load(self, path: Path) -> Checkpoint:
        try:
            state = orjson.loads((path / "state.json").read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable state.json ({exc})") from exc
        if state.get("format") != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: checkpoint format {state.get('format')!r}, this version reads {FORMAT_VERSION}"
            )
        models: dict[str, bytes] = {}
        for scope, meta in state["models"].items():
            try:
                data = (path / meta["file"]).read_bytes()
            except OSError as exc:
                raise CheckpointError(
                    f"{path / meta['file']}: unreadable model file ({exc})"
                ) from exc
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise CheckpointError(
                    f"{path / meta['file']}: sha256 mismatch, the model file is corrupt"
                )
            models[scope] = data
        return Checkpoint(
            sequence=int(state["sequence"]),
            offsets={k: int(v) for k, v in state["offsets"].items()},
            join_state=state["join"],
            stats=state["stats"],
            models=models,
            vw_arguments=state["vw_arguments"],
        )
