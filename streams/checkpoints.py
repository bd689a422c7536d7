"""Atomic checkpoints: models, join state, offsets and stats saved together or not at all.

Each checkpoint is a directory `ckpt-<sequence>` written under a temporary name, fsynced and
renamed; the `CURRENT` file naming the newest is replaced atomically last
(`bandit.atomic_dir`). A `kill -9` at any moment leaves either the old or the new checkpoint
current, never a mix.

Every file is checksummed (format 3): `manifest.json`, written last, lists the sha256 of
`state.json` and of every model file, and carries the sha256 of its own list. A checkpoint
whose files are missing or differ (`CheckpointCorrupt`) is passed over for the newest older
one that is whole, with a WARNING naming what was wrong (`restore`). Formats 1 and 2, without
a manifest, are still read (only their model files carry a sha256, in `state.json`).

`CURRENT` may only name a `ckpt-<digits>` directory beside it; it is empty in a directory a
consumer opened but never checkpointed. A missing `CURRENT` beside checkpoints is an error
(someone deleted it), never a fresh start. The writer holds `LOCK` (`open_for_writing`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from bandit.atomic_dir import AtomicDirectories, FileOps, os_error_text, probe_writable
from bandit.dir_lock import DirectoryLock
from bandit.errors import CheckpointCorrupt, CheckpointError, StorageError
from bandit.state import LearnerState

FORMAT_VERSION = 3
# Format 1 had no outcome model, catalogue, reactions or masks; format 2 no manifest.json.
READABLE_FORMATS = (1, 2, 3)
MANIFEST = "manifest.json"
SETTING = "checkpoint.directory"
_CURRENT = "CURRENT"
_NAME = re.compile(r"ckpt-\d+")

log = logging.getLogger("nudge.checkpoints")


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


@dataclass(frozen=True, slots=True)
class Restored:
    """The checkpoint to resume from (None: start afresh) and the corrupt newer ones passed
    over on the way, each as `<name>: <what was wrong>`."""

    checkpoint: Checkpoint | None
    skipped: tuple[str, ...] = ()


class CheckpointStore:
    """A directory of checkpoints; keeps the newest `keep`.

    `ops`: the file-system steps of a save (tests wrap them to crash at any one).
    """

    def __init__(self, directory: Path, keep: int = 3, ops: FileOps | None = None) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self._versions = AtomicDirectories(self.directory, "ckpt", _CURRENT, keep, ops)
        self._lock = DirectoryLock(
            self.directory, SETTING, "only one consumer may use a checkpoint directory"
        )

    def open_for_writing(self) -> None:
        """Make this process the directory's one writer: probe that it can write there, take
        the lock (held until `close`), and mark a directory without checkpoints as opened
        (an empty `CURRENT`), so that a `CURRENT` missing later is told from a fresh start."""
        probe_writable(self.directory, SETTING)
        self._lock.acquire()
        try:
            if self._versions.read_pointer() is None and not self.checkpoint_names():
                _write_empty_pointer(self.directory / _CURRENT)
        except OSError as exc:
            self._lock.release()
            raise StorageError(f"{SETTING} {self.directory}: {os_error_text(exc)}") from exc
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        """Release the lock taken by `open_for_writing`; safe to call twice."""
        self._lock.release()

    def save(self, ckpt: Checkpoint) -> Path:
        """Write `ckpt` atomically and make it current; returns its directory."""
        name = f"ckpt-{ckpt.sequence:09d}"
        try:
            return self._versions.publish(name, _checkpoint_files(ckpt), name.encode())
        except StorageError as exc:
            raise StorageError(f"{SETTING} {exc}") from exc

    def checkpoint_names(self) -> list[str]:
        """The `ckpt-<digits>` directories here, oldest first."""
        names = [n for n in self._versions.version_names() if _NAME.fullmatch(n)]
        return sorted(names, key=_sequence_of)

    def latest(self) -> Checkpoint | None:
        """The checkpoint to resume from (see `restore`), or None when there is none yet."""
        return self.restore().checkpoint

    def restore(self) -> Restored:
        """The current checkpoint or, when it is corrupt, the newest older one that is whole.

        Each corrupt checkpoint passed over is logged as a WARNING naming what was wrong.
        Raises `CheckpointError` when `CURRENT` is missing beside checkpoints, names anything
        but a `ckpt-<digits>` directory here, or when no checkpoint is whole.
        """
        names = self.checkpoint_names()
        pointer_path = self.directory / _CURRENT
        try:
            pointer = self._versions.read_pointer()
        except OSError as exc:
            raise CheckpointError(f"{pointer_path}: unreadable ({os_error_text(exc)})") from exc
        if pointer is None:
            if names:
                raise CheckpointError(
                    f"{pointer_path} is missing, yet {self.directory} holds checkpoints "
                    f"{', '.join(names)}: to resume from the newest, write its name into "
                    f"{_CURRENT} (echo {names[-1]} > {pointer_path}); to start from scratch, "
                    "move the directory away"
                )
            return Restored(None)
        current = pointer.decode("utf-8", errors="replace").strip()
        if not current:
            return Restored(None)  # opened by a consumer that never finished a checkpoint
        if not _NAME.fullmatch(current):
            newest = f" (the newest here: {names[-1]})" if names else ""
            raise CheckpointError(
                f"{pointer_path} holds {current!r}, which is not a checkpoint of this directory "
                f"(ckpt-<digits>): write the name of the one to resume from into it{newest}"
            )
        older = [n for n in reversed(names) if _sequence_of(n) < _sequence_of(current)]
        skipped: list[str] = []
        for name in [current, *older]:
            path = self.directory / name
            if path.is_symlink():
                raise CheckpointError(
                    f"{path} is a symbolic link, to {path.readlink()}: a checkpoint must be a "
                    f"directory inside {self.directory}"
                )
            try:
                ckpt = self.load(path)
            except CheckpointCorrupt as exc:
                log.warning("checkpoint %s is corrupt, not resuming from it: %s", name, exc)
                skipped.append(f"{name}: {exc}")
                continue
            if skipped:
                log.warning(
                    "resuming from %s, the newest whole checkpoint, after passing over %d "
                    "corrupt one(s)", name, len(skipped),
                )  # fmt: skip
            return Restored(ckpt, tuple(skipped))
        raise CheckpointError(
            f"{self.directory}: no whole checkpoint to resume from: {'; '.join(skipped)}; "
            "restore the directory from a backup, or move it away to start from scratch"
        )

    def load(self, path: Path) -> Checkpoint:
        """One checkpoint directory, verified: its format, then (format 3) every file against
        `manifest.json`, or (formats 1 and 2) the model files against `state.json`.

        Raises `CheckpointCorrupt` for missing, unreadable or altered files and
        `CheckpointError` for a format this version does not read.
        """
        state_bytes = _read(path, "state.json")
        try:
            state = orjson.loads(state_bytes)
        except orjson.JSONDecodeError as exc:
            raise CheckpointCorrupt(f"{path}: unreadable state.json ({exc})") from exc
        if not isinstance(state, dict):
            raise CheckpointCorrupt(f"{path}: state.json is not a JSON object")
        if state.get("format") not in READABLE_FORMATS:
            raise CheckpointError(
                f"{path}: checkpoint format {state.get('format')!r}, this version reads "
                f"{list(READABLE_FORMATS)}"
            )
        verified: dict[str, bytes] = {}
        if state["format"] >= 3 or (path / MANIFEST).exists():
            verified = _verified_files(path, state_bytes)
        else:
            log.warning(
                "checkpoint %s has format %s: its state.json carries no checksum (the next "
                "checkpoint will)", path, state["format"],
            )  # fmt: skip
        try:
            ckpt = _checkpoint_from(path, state, verified)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointCorrupt(f"{path}: state.json lacks or garbles {exc}") from exc
        if _NAME.fullmatch(path.name) and ckpt.sequence != _sequence_of(path.name):
            raise CheckpointCorrupt(
                f"{path}: state.json says sequence {ckpt.sequence}, the directory's name "
                f"{_sequence_of(path.name)}"
            )
        return ckpt


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
    files[MANIFEST] = _manifest({rel: _sha256(data) for rel, data in files.items()})
    return files


# ---- the manifest: the sha256 of every file, and of itself ------------------------------------


def _manifest(digests: dict[str, str]) -> bytes:
    body = {"format": FORMAT_VERSION, "files": dict(sorted(digests.items()))}
    return orjson.dumps({**body, "sha256": _body_sha256(body)}, option=orjson.OPT_INDENT_2)


def _body_sha256(body: dict[str, Any]) -> str:
    return _sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verified_files(path: Path, state_bytes: bytes) -> dict[str, bytes]:
    """Every file the manifest lists, read and checked against its sha256 (`state.json`
    already read); the manifest's own sha256 is checked first."""
    try:
        manifest = orjson.loads(_read(path, MANIFEST))
        body = {"format": manifest["format"], "files": manifest["files"]}
        claimed = manifest["sha256"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointCorrupt(f"{path}: unreadable {MANIFEST} ({exc})") from exc
    if _body_sha256(body) != claimed:
        raise CheckpointCorrupt(f"{path / MANIFEST}: its sha256 does not match its contents")
    digests: dict[str, str] = body["files"]
    if "state.json" not in digests:
        raise CheckpointCorrupt(f"{path / MANIFEST}: does not list state.json")
    files: dict[str, bytes] = {}
    for rel, digest in digests.items():
        data = state_bytes if rel == "state.json" else _read(path, rel)
        if _sha256(data) != digest:
            raise CheckpointCorrupt(
                f"{path / rel}: sha256 mismatch with {MANIFEST}, the file changed after it "
                "was written"
            )
        files[rel] = data
    return files


def _read(path: Path, rel: str) -> bytes:
    """A file of the checkpoint at `path`; only a relative path inside it is read."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise CheckpointCorrupt(f"{path}: file {rel!r} is not inside the checkpoint")
    try:
        return (path / rel).read_bytes()
    except OSError as exc:
        raise CheckpointCorrupt(f"{path / rel}: unreadable ({os_error_text(exc)})") from exc


def _sequence_of(name: str) -> int:
    return int(name.removeprefix("ckpt-"))


def _write_empty_pointer(pointer: Path) -> None:
    """An empty `CURRENT`, durably (not a step of the checkpoint cycle, so not through `ops`)."""
    ops = FileOps()
    tmp = pointer.with_name(f".{pointer.name}.tmp")
    ops.write_file(tmp, b"")
    ops.replace(tmp, pointer)
    ops.fsync_dir(pointer.parent)


def _checkpoint_from(path: Path, state: dict[str, Any], verified: dict[str, bytes]) -> Checkpoint:
    """The checkpoint `state.json` describes, its model files read and verified."""
    models = _read_models(path, state["models"], verified)
    outcome = state.get("outcome_model")
    vw_arguments = str(state["vw_arguments"])
    learner = LearnerState(
        models=models,
        outcome_model=_read_models(path, {"o": outcome}, verified)["o"] if outcome else None,
        catalogue=state.get("catalogue", {}),
        reactions=state.get("reactions", {}),
        masks=_read_models(path, state.get("masks", {}), verified),
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


def _read_models(
    path: Path, files: dict[str, dict[str, str]], verified: dict[str, bytes]
) -> dict[str, bytes]:
    """The model files `state.json` lists, each checked against its sha256 there (`verified`:
    the files the manifest already checked, not read twice)."""
    models: dict[str, bytes] = {}
    for key, meta in files.items():
        rel = meta["file"]
        data = verified[rel] if rel in verified else _read(path, rel)
        if _sha256(data) != meta["sha256"]:
            raise CheckpointCorrupt(f"{path / rel}: sha256 mismatch, the model file is corrupt")
        models[key] = data
    return models
