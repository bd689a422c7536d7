"""Atomic checkpoints: models, join state, offsets and stats saved together or not at all.

Each checkpoint is a directory `ckpt-<sequence>` written under a temporary name, fsynced and
renamed; the `CURRENT` file naming the newest is replaced atomically last
(`bandit.atomic_dir`). A `kill -9` at any moment leaves either the old or the new checkpoint
current, never a mix. Model files carry a sha256 in `state.json` that is checked on load.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bandit.atomic_dir import AtomicDirectories, FileOps
from bandit.errors import CheckpointError
from bandit.state import LearnerState

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # format 1 had no outcome model, catalogue, reactions or masks
_CURRENT = "CURRENT"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything a consumer needs to resume exactly where it was.

    `vw_arguments`: the learner's VW arguments when saved (what format 1, which had no
    per-scope arguments, falls back to for every scope).
    """

    sequence: int
    offsets: dict[str, int]  # "topic/partition" -> next offset to read
    join_state: dict[str, Any]
    stats: dict[str, Any]
    learner: LearnerState
    vw_arguments: str


class CheckpointStore:
    """A directory of checkpoints; keeps the newest `keep`.

    `ops`: the file-system steps of a save (tests wrap them to crash at any one).
    """

    def __init__(self, directory: Path, keep: int = 3, ops: FileOps | None = None) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self._versions = AtomicDirectories(self.directory, "ckpt", _CURRENT, keep, ops)

    def save(self, ckpt: Checkpoint) -> Path:
        """Write `ckpt` atomically and make it current; returns its directory."""
        name = f"ckpt-{ckpt.sequence:09d}"
        return self._versions.publish(name, _checkpoint_files(ckpt), name.encode())

    def latest(self) -> Checkpoint | None:
        """The current checkpoint, or None when there is none yet."""
        pointer = self._versions.read_pointer()
        if pointer is None:
            return None
        return self.load(self.directory / pointer.decode().strip())

    def load(self, path: Path) -> Checkpoint:
        """One checkpoint directory, verified (format, model sha256s)."""
        try:
            state = orjson.loads((path / "state.json").read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable state.json ({exc})") from exc
        if state.get("format") not in READABLE_FORMATS:
            raise CheckpointError(
                f"{path}: checkpoint format {state.get('format')!r}, this version reads "
                f"{list(READABLE_FORMATS)}"
            )
        return _checkpoint_from(path, state)


# ---- the one mapping between a Checkpoint and its files ----------------------------------------


def _checkpoint_files(ckpt: Checkpoint) -> dict[str, bytes]:
    """The files of a checkpoint: its model files, then `state.json` listing them."""
    files: dict[str, bytes] = {}

    def listed(kind: str, models: dict[str, bytes]) -> dict[str, dict[str, str]]:
        entries: dict[str, dict[str, str]] = {}
        for i, (key, model) in enumerate(sorted(models.items())):
            rel = f"models/{kind}-{i:04d}.vw"
            files[rel] = model
            entries[key] = {"file": rel, "sha256": hashlib.sha256(model).hexdigest()}
        return entries

    learner = ckpt.learner
    outcome = {"outcomes": learner.outcome_model} if learner.outcome_model is not None else {}
    state = {
        "format": FORMAT_VERSION,
        "sequence": ckpt.sequence,
        "created_at": time.time(),
        "offsets": ckpt.offsets,
        "join": ckpt.join_state,
        "stats": ckpt.stats,
        "models": listed("policy", learner.models),
        "masks": listed("mask", learner.masks),
        "outcome_model": listed("outcomes", outcome).get("outcomes"),
        "catalogue": learner.catalogue,
        "reactions": learner.reactions,
        "policy_arguments": learner.arguments,
        "arms": learner.arms,
        "pruning": learner.pruning,
        "vw_arguments": ckpt.vw_arguments,
    }
    files["state.json"] = orjson.dumps(state)
    return files


def _checkpoint_from(path: Path, state: dict[str, Any]) -> Checkpoint:
    """The checkpoint `state.json` describes, its model files read and verified."""
    models = _read_models(path, state["models"])
    outcome = state.get("outcome_model")
    vw_arguments = str(state["vw_arguments"])
    learner = LearnerState(
        models=models,
        outcome_model=_read_models(path, {"o": outcome})["o"] if outcome else None,
        catalogue=state.get("catalogue", {}),
        reactions=state.get("reactions", {}),
        masks=_read_models(path, state.get("masks", {})),
        # Format 1 saved no per-scope arguments: every scope was made with the global ones.
        arguments=dict(state.get("policy_arguments") or {})
        or {scope: vw_arguments for scope in models},
        arms=state.get("arms", {}),
        pruning=state.get("pruning", {}),
    )
    return Checkpoint(
        sequence=int(state["sequence"]),
        offsets={k: int(v) for k, v in state["offsets"].items()},
        join_state=state["join"],
        stats=state["stats"],
        learner=learner,
        vw_arguments=vw_arguments,
    )


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
