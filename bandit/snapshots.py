"""Policy snapshots: what the consumer learned, packaged for decision services.

A snapshot is a directory `snap-<sequence>` holding `manifest.json` (format version, policy id,
scope, VW arguments, action catalogue and per-trigger availability, exploration and decision
rules, reward map, trained-through offsets, example count, created-at, sha256 of every file)
and the files it lists (VW models, the reaction counts). A store publishes them atomically
(write under a temporary name, fsync, rename) and then points `LATEST` at the new one, with
the manifest's own sha256, keeping the newest `keep`. Loading verifies every checksum and the
format version, so a tampered or foreign snapshot is refused before any model is built.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from bandit.atomic_dir import AtomicDirectories, FileOps
from bandit.config import Config, DecisionsConfig, RewardConfig
from bandit.errors import SnapshotError
from bandit.pruning import PruningState
from bandit.state import LearnerState
from bandit.vw_text import NamespaceLetters

FORMAT_VERSION = 1
LATEST = "LATEST"
MANIFEST = "manifest.json"


class SnapshotManifest(BaseModel):
    """The manifest of one snapshot (validated when loaded: unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int
    policy_id: str
    policy_name: str
    sequence: int
    created_at: str
    scope: Literal["global", "per_trigger"]
    vw_arguments: str
    namespaces: dict[str, str]
    action_namespace: str
    none_action: str
    actions: dict[str, dict[str, float | str]]
    triggers: dict[str, list[str]]
    exploration: dict[str, Any]
    decisions: dict[str, Any]
    rewards: dict[str, Any]
    trained_through: dict[str, int]
    examples: int
    models: dict[str, str]  # policy scope -> file
    policy_arguments: dict[str, str] = {}  # policy scope -> VW arguments it was created with
    outcome_model: str | None
    reactions: str
    arms: str | None = None  # evidence per (trigger, message), for `nudge arms`
    pruning_state: str | None = None  # statuses and change log
    pruning: dict[str, Any] = {}  # {retest_share, held: {trigger: {message: status}}, overrides}
    files: dict[str, str]  # file -> sha256

    def letters(self) -> NamespaceLetters:
        return NamespaceLetters(dict(self.namespaces), self.action_namespace)

    def decision_rules(self) -> DecisionsConfig:
        return DecisionsConfig.model_validate(self.decisions)

    def reward_map(self) -> RewardConfig:
        return RewardConfig.model_validate(self.rewards)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A verified snapshot: its manifest and the learned state its files hold."""

    name: str
    manifest: SnapshotManifest
    state: LearnerState


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot_contents(
    config: Config,
    state: LearnerState,
    sequence: int,
    trained_through: dict[str, int],
    examples: int,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest (without `files`) and the files of a snapshot of `state`."""
    files: dict[str, bytes] = {}
    models: dict[str, str] = {}
    for i, (scope, model) in enumerate(sorted(state.models.items())):
        models[scope] = f"models/policy-{i:04d}.vw"
        files[models[scope]] = model
    outcome_file = None
    if state.outcome_model is not None:
        outcome_file = "models/outcomes.vw"
        files[outcome_file] = state.outcome_model
    files["reactions.json"] = orjson.dumps(state.reactions, option=orjson.OPT_SORT_KEYS)
    files["arms.json"] = orjson.dumps(state.arms)
    files["pruning.json"] = orjson.dumps(state.pruning)
    held = PruningState.from_json(state.pruning).held()
    learner = config.learner
    manifest = {
        "format_version": FORMAT_VERSION,
        "policy_id": f"{config.decisions.policy_name}-{sequence:06d}",
        "policy_name": config.decisions.policy_name,
        "sequence": sequence,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "scope": learner.scope,
        "vw_arguments": learner.vw_arguments(),
        "namespaces": dict(learner.namespaces),
        "action_namespace": learner.action_namespace,
        "none_action": config.rewards.none_action,
        "actions": state.catalogue.get("actions", {}),
        "triggers": state.catalogue.get("triggers", {}),
        "exploration": {
            "default": learner.exploration.model_dump(by_alias=True),
            "by_trigger": {
                pattern: e.model_dump(by_alias=True)
                for pattern, e in learner.exploration_by_trigger.items()
            },
        },
        "decisions": config.decisions.model_dump(mode="json", exclude_none=True),
        "rewards": config.rewards.model_dump(mode="json"),
        "trained_through": dict(trained_through),
        "examples": examples,
        "models": models,
        "policy_arguments": dict(state.arguments),
        "outcome_model": outcome_file,
        "reactions": "reactions.json",
        "arms": "arms.json",
        "pruning_state": "pruning.json",
        "pruning": {
            "retest_share": config.pruning.retest_share,
            "held": held,
            "overrides": config.pruning.overrides,
            "rule": config.pruning.model_dump(mode="json"),
            "reaction_cap": max(r.cold_start_outcomes for r in config.decisions.all_rules()),
        },
    }
    return manifest, files


class SnapshotStore:
    """A directory of snapshots with a `LATEST` pointer; keeps the newest `keep`."""

    def __init__(self, directory: Path | str, keep: int = 5, ops: FileOps | None = None) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self._versions = AtomicDirectories(self.directory, "snap", LATEST, keep, ops)

    # ---- publishing ---------------------------------------------------------------------

    def next_sequence(self, after: int = 0) -> int:
        """One more than the newest snapshot here (or than `after`, if that is higher)."""
        numbers = [int(p.name[5:]) for p in self.directory.glob("snap-*") if p.name[5:].isdigit()]
        return max([*numbers, after], default=0) + 1

    def publish(
        self,
        config: Config,
        state: LearnerState,
        trained_through: dict[str, int],
        examples: int,
        after_sequence: int = 0,
    ) -> str:
        """Write a snapshot of `state` and point `LATEST` at it; returns its name.

        `after_sequence`: the publisher's own last sequence, so numbering continues even if
        the directory was lost (followers of the snapshot topic only take newer sequences).
        """
        sequence = self.next_sequence(after_sequence)
        manifest, files = snapshot_contents(config, state, sequence, trained_through, examples)
        return self.write(manifest, files)

    def write(self, manifest: dict[str, Any], files: dict[str, bytes]) -> str:
        """Write a snapshot atomically from its manifest (without `files`) and files."""
        name = f"snap-{int(manifest['sequence']):09d}"
        manifest = {**manifest, "files": {rel: _sha256(data) for rel, data in files.items()}}
        manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        pointer = orjson.dumps({"name": name, "manifest_sha256": _sha256(manifest_bytes)})
        self._versions.publish(name, {**files, MANIFEST: manifest_bytes}, pointer)
        return name

    # ---- loading ------------------------------------------------------------------------

    def latest_pointer(self) -> tuple[str, str] | None:
        """(name, manifest sha256) that `LATEST` points at, or None before the first snapshot."""
        try:
            pointer = orjson.loads((self.directory / LATEST).read_bytes())
            return str(pointer["name"]), str(pointer["manifest_sha256"])
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{self.directory / LATEST}: unreadable pointer ({exc})") from exc

    def load_latest(self) -> Snapshot:
        pointer = self.latest_pointer()
        if pointer is None:
            raise SnapshotError(
                f"{self.directory}: no snapshot yet (no {LATEST}); run `nudge consume` or "
                "`nudge export` first"
            )
        name, manifest_sha = pointer
        return load_snapshot(self.directory / name, manifest_sha)


def load_snapshot(path: Path | str, manifest_sha256: str | None = None) -> Snapshot:
    """Load and verify one snapshot directory; raise `SnapshotError` saying what is wrong."""
    path = Path(path)
    try:
        manifest_bytes = (path / MANIFEST).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: no readable {MANIFEST} ({exc.strerror})") from exc
    if manifest_sha256 is not None and _sha256(manifest_bytes) != manifest_sha256:
        raise SnapshotError(f"{path / MANIFEST}: sha256 does not match {LATEST}; refusing it")
    try:
        raw = orjson.loads(manifest_bytes)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"{path / MANIFEST}: not JSON ({exc})") from exc
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{path}: snapshot format {version!r}, this version of nudgebandit reads "
            f"format {FORMAT_VERSION}; export the snapshot again with a matching version"
        )
    try:
        manifest = SnapshotManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SnapshotError(f"{path / MANIFEST}: {where}: {first['msg']}") from None
    data = _verified_files(path, manifest)
    reactions = orjson.loads(data[manifest.reactions])
    state = LearnerState(
        models={scope: data[rel] for scope, rel in manifest.models.items()},
        outcome_model=data[manifest.outcome_model] if manifest.outcome_model else None,
        catalogue={"actions": manifest.actions, "triggers": manifest.triggers},
        reactions={str(k): int(v) for k, v in reactions.items()},
        arguments=dict(manifest.policy_arguments)
        or {scope: manifest.vw_arguments for scope in manifest.models},
        arms=orjson.loads(data[manifest.arms]) if manifest.arms else {},
        pruning=orjson.loads(data[manifest.pruning_state]) if manifest.pruning_state else {},
    )
    return Snapshot(path.name, manifest, state)


def _verified_files(path: Path, manifest: SnapshotManifest) -> dict[str, bytes]:
    needed = {*manifest.models.values(), manifest.reactions}
    needed |= {f for f in (manifest.outcome_model, manifest.arms, manifest.pruning_state) if f}
    unlisted = sorted(needed - set(manifest.files))
    if unlisted:
        raise SnapshotError(f"{path / MANIFEST}: files {unlisted} have no sha256 in `files`")
    data: dict[str, bytes] = {}
    for rel, digest in manifest.files.items():
        target = (path / rel).resolve()
        if path.resolve() not in target.parents:
            raise SnapshotError(f"{path / MANIFEST}: file {rel!r} is outside the snapshot")
        try:
            content = target.read_bytes()
        except OSError as exc:
            raise SnapshotError(f"{path / rel}: unreadable ({exc.strerror})") from exc
        if _sha256(content) != digest:
            raise SnapshotError(f"{path / rel}: sha256 mismatch, the file was changed or corrupted")
        data[rel] = content
    return data


def warm_start_state(
    snapshot: Path, freeze: Literal["none", "unlearned_weights"] = "none"
) -> LearnerState:
    """A new deployment's starting state from an earlier snapshot (or a store's `LATEST`).

    With `freeze="unlearned_weights"` each policy model is also its own VW `--feature_mask`:
    weights the snapshot never learned (zero) stay frozen; learned ones keep updating.
    """
    path = Path(snapshot)
    loaded = SnapshotStore(path).load_latest() if (path / LATEST).exists() else load_snapshot(path)
    if freeze not in ("none", "unlearned_weights"):
        raise SnapshotError(f"freeze must be 'none' or 'unlearned_weights', got {freeze!r}")
    state = loaded.state
    masks = dict(state.models) if freeze == "unlearned_weights" else {}
    return LearnerState(
        models=dict(state.models),
        outcome_model=state.outcome_model,
        catalogue=state.catalogue,
        reactions=state.reactions,
        masks=masks,
        arguments=state.arguments,
        arms=state.arms,
        pruning=state.pruning,
    )


def pack_snapshot(path: Path | str) -> bytes:
    """One verified snapshot as a single JSON message (for a compacted Kafka topic)."""
    snapshot_dir = Path(path)
    load_snapshot(snapshot_dir)  # refuse to ship a snapshot that does not verify
    manifest = orjson.loads((snapshot_dir / MANIFEST).read_bytes())
    files = {
        rel: base64.b64encode((snapshot_dir / rel).read_bytes()).decode("ascii")
        for rel in manifest["files"]
    }
    return orjson.dumps({"manifest": manifest, "files": files})


def unpack_snapshot(message: bytes, store: SnapshotStore) -> str:
    """Write a packed snapshot into `store` (verified first); returns its name."""
    try:
        bundle = orjson.loads(message)
        SnapshotManifest.model_validate(bundle["manifest"])
        manifest = dict(bundle["manifest"])
        digests = manifest.pop("files")
        files = {rel: base64.b64decode(text) for rel, text in bundle["files"].items()}
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SnapshotError(f"packed snapshot manifest: {where}: {first['msg']}") from None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"not a packed snapshot: {exc}") from exc
    unsafe = sorted(r for r in files if Path(r).is_absolute() or ".." in Path(r).parts)
    if unsafe:
        raise SnapshotError(f"packed snapshot names files outside itself: {unsafe}")
    if set(files) != set(digests) or any(_sha256(files[r]) != d for r, d in digests.items()):
        raise SnapshotError(
            f"packed snapshot {manifest.get('policy_id')!r}: files do not match their sha256"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"packed snapshot format {manifest.get('format_version')!r}, this version reads "
            f"{FORMAT_VERSION}"
        )
    return store.write(manifest, files)
