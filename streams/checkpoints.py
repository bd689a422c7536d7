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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bandit.errors import CheckpointError
from bandit.state import LearnerState

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # format 1 had no outcome model, catalogue, reactions or masks
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
    outcome_model: bytes | None = None
    catalogue: dict[str, Any] = field(default_factory=dict)
    reactions: dict[str, int] = field(default_factory=dict)
    masks: dict[str, bytes] = field(default_factory=dict)  # scope -> VW --feature_mask model
    policy_arguments: dict[str, str] = field(default_factory=dict)  # scope -> VW arguments
    arms: dict[str, Any] = field(default_factory=dict)
    pruning: dict[str, Any] = field(default_factory=dict)

    def learner_state(self) -> LearnerState:
        """What the learner resumes from."""
        return LearnerState(
            models=dict(self.models),
            outcome_model=self.outcome_model,
            catalogue=self.catalogue,
            reactions=self.reactions,
            masks=dict(self.masks),
            arguments=dict(self.policy_arguments)
            or {scope: self.vw_arguments for scope in self.models},
            arms=self.arms,
            pruning=self.pruning,
        )


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
        model_files = _write_models(tmp, "policy", ckpt.models)
        mask_files = _write_models(tmp, "mask", ckpt.masks)
        outcome_files = _write_models(
            tmp, "outcomes", {"outcomes": ckpt.outcome_model} if ckpt.outcome_model else {}
        )
        state = {
            "format": FORMAT_VERSION,
            "sequence": ckpt.sequence,
            "created_at": time.time(),
            "offsets": ckpt.offsets,
            "join": ckpt.join_state,
            "stats": ckpt.stats,
            "models": model_files,
            "masks": mask_files,
            "outcome_model": outcome_files.get("outcomes"),
            "catalogue": ckpt.catalogue,
            "reactions": ckpt.reactions,
            "policy_arguments": ckpt.policy_arguments,
            "arms": ckpt.arms,
            "pruning": ckpt.pruning,
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
        if state.get("format") not in READABLE_FORMATS:
            raise CheckpointError(
                f"{path}: checkpoint format {state.get('format')!r}, this version reads "
                f"{list(READABLE_FORMATS)}"
            )
        models = _read_models(path, state["models"])
        outcome = state.get("outcome_model")
        return Checkpoint(
            sequence=int(state["sequence"]),
            offsets={k: int(v) for k, v in state["offsets"].items()},
            join_state=state["join"],
            stats=state["stats"],
            models=models,
            vw_arguments=state["vw_arguments"],
            outcome_model=_read_models(path, {"o": outcome})["o"] if outcome else None,
            catalogue=state.get("catalogue", {}),
            reactions=state.get("reactions", {}),
            masks=_read_models(path, state.get("masks", {})),
            policy_arguments=state.get("policy_arguments", {}),
            arms=state.get("arms", {}),
            pruning=state.get("pruning", {}),
        )


def _write_models(
    directory: Path, kind: str, models: dict[str, bytes]
) -> dict[str, dict[str, str]]:
    files: dict[str, dict[str, str]] = {}
    for i, (key, model) in enumerate(sorted(models.items())):
        fname = f"models/{kind}-{i:04d}.vw"
        _write(directory / fname, model)
        files[key] = {"file": fname, "sha256": hashlib.sha256(model).hexdigest()}
    return files


def _read_models(path: Path, files: dict[str, dict[str, str]]) -> dict[str, bytes]:
    models: dict[str, bytes] = {}
    for key, meta in files.items():
        try:
            data = (path / meta["file"]).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"{path / meta['file']}: unreadable model file ({exc})") from exc
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise CheckpointError(
                f"{path / meta['file']}: sha256 mismatch, the model file is corrupt"
            )
        models[key] = data
    return models
