"""Policy snapshots: what the consumer learned, packaged for decision services.

A snapshot is a directory `snap-<sequence>` holding `manifest.json` (format version, policy id,
scope, VW arguments, action catalogue and per-trigger availability, exploration and decision
rules, reward map, trained-through offsets, example count, created-at, sha256 of every file)
and the files it lists (VW models, the reaction counts). A store publishes them atomically
(write under a temporary name, fsync, rename) and then points `LATEST` at the new one, with
the manifest's own sha256, keeping the newest `keep`. Loading verifies every checksum and the
format version, so a corrupted or foreign snapshot is refused before any model is built.

sha256 finds corruption, not tampering: whoever can write the directory can recompute it. With
a signing key (`NUDGE_SNAPSHOT_KEY`, or the file `snapshots.signing_key_file` names) each
snapshot also holds `signature.json`, an HMAC-SHA256 of its manifest (which lists the sha256 of
every file); a store, decider or follower given the key refuses unsigned or altered snapshots.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bandit.atomic_dir import AtomicDirectories, FileOps
from bandit.config import Config, DecisionsConfig, RewardConfig
from bandit.errors import ConfigError, SnapshotError, SnapshotSignatureError
from bandit.pruning import PruningState
from bandit.state import LearnerState
from bandit.vw_text import NamespaceLetters

FORMAT_VERSION = 1
LATEST = "LATEST"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
SIGNING_KEY_ENV = "NUDGE_SNAPSHOT_KEY"
SIGNATURE_ALGORITHM = "hmac-sha256"
MIN_KEY_BYTES = 16
_SIGNED_PREFIX = b"nudgebandit snapshot manifest v1\n"  # a MAC of this, never of other data
_NAME = re.compile(r"snap-[0-9]{1,18}")  # what LATEST may name: a version of its own directory
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_PATH_PARTS, _MAX_PART_BYTES = 8, 200


class SnapshotManifest(BaseModel):
    """The manifest of one snapshot (validated when loaded: unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int
    policy_id: str
    policy_name: str
    sequence: int = Field(ge=0, lt=10**18)  # names `snap-<sequence>` stay `snap-<digits>`
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
    # `bandit.live_value.LiveValue.estimates()` over the consumer's recent joined events
    live_value: dict[str, Any] | None = None
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


# ---- signing ---------------------------------------------------------------------------------


def signing_key(
    key_file: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> bytes | None:
    """The snapshot signing key: `NUDGE_SNAPSHOT_KEY`, or the contents of `key_file` (surrounding
    whitespace stripped); None when neither is set. Never kept in the config file itself."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(SIGNING_KEY_ENV, "")
    if from_env and key_file is not None:
        raise ConfigError(
            f"{SIGNING_KEY_ENV} and snapshots.signing_key_file are both set: set only one"
        )
    if from_env:
        key, where = from_env.strip().encode(), SIGNING_KEY_ENV
    elif key_file is not None:
        where = f"snapshots.signing_key_file {key_file}"
        try:
            key = Path(key_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the signing key ({exc.strerror})") from None
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{where}: a signing key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}; "
            "make one with `openssl rand -hex 32`"
        )
    return key


def manifest_signature(manifest: Mapping[str, Any], key: bytes) -> dict[str, str]:
    """The signature of a manifest (with its `files` sha256s): HMAC-SHA256 of its canonical JSON
    (keys sorted, no whitespace), so the same manifest signs the same, on disk or packed."""
    canonical = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)
    mac = hmac.new(key, _SIGNED_PREFIX + canonical, hashlib.sha256).hexdigest()
    return {"algorithm": SIGNATURE_ALGORITHM, "hmac_sha256": mac}


def check_signature(where: str, manifest: Mapping[str, Any], signature: Any, key: bytes) -> None:
    """Raise `SnapshotSignatureError` unless `signature` is the manifest's, under `key`."""
    if signature is None:
        raise SnapshotSignatureError(
            f"{where}: not signed, and a signing key is set; refusing it (publish it with the "
            f"same key: {SIGNING_KEY_ENV} or snapshots.signing_key_file)"
        )
    given = signature.get("hmac_sha256") if isinstance(signature, dict) else None
    if not isinstance(given, str) or signature.get("algorithm") != SIGNATURE_ALGORITHM:
        raise SnapshotSignatureError(
            f"{where}: {SIGNATURE} is not an {SIGNATURE_ALGORITHM} signature"
        )
    expected = manifest_signature(manifest, key)["hmac_sha256"]
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SnapshotSignatureError(
            f"{where}: signature does not match: altered after signing, or signed with another "
            "key; refusing it"
        )


def _name_problems(names: Iterable[Any]) -> list[str]:
    """What is wrong with the file names of a snapshot, if anything: each must be a plain
    relative path inside it (no NUL, no empty, `.` or `..` part, not a directory of another
    file, not the manifest or the signature), short enough for any file system."""
    names = list(names)
    problems = []
    for rel in names:
        if not isinstance(rel, str) or not rel:
            problems.append(f"file {rel!r} has no name")
            continue
        parts = rel.split("/")
        if "\x00" in rel:
            problems.append(f"file {rel!r} has a NUL in its name")
        elif rel.startswith("/") or ".." in parts:
            problems.append(f"file {rel!r} is outside the snapshot")
        elif any(p in ("", ".") for p in parts):
            problems.append(f"file {rel!r} is not a plain relative path")
        elif len(parts) > _MAX_PATH_PARTS or any(len(p.encode()) > _MAX_PART_BYTES for p in parts):
            problems.append(f"file {rel[:80]!r}... has too long a name")
        elif rel in (MANIFEST, SIGNATURE):
            problems.append(f"file {rel!r} has a reserved name")
    directories = {"/".join(n.split("/")[:i]) for n in names if isinstance(n, str)
                   for i in range(1, n.count("/") + 1)}  # fmt: skip
    problems += [f"file {rel!r} is also a directory" for rel in names if rel in directories]
    return problems


def snapshot_contents(
    config: Config,
    state: LearnerState,
    sequence: int,
    trained_through: dict[str, int],
    examples: int,
    live_value: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest (without `files`) and the files of a snapshot of `state`; `live_value`
    (the consumer's `LiveValue.estimates()`) goes into the manifest, so it is signed with it."""
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
    if live_value is not None:
        manifest["live_value"] = live_value
    return manifest, files


class SnapshotStore:
    """A directory of snapshots with a `LATEST` pointer; keeps the newest `keep`.

    `key`: the signing key; snapshots written here are signed with it and loading refuses any
    that is unsigned or does not match it. Without it `publish` signs with the key the config
    names (`signing_key`), if any, and loading checks the sha256s only.
    """

    def __init__(
        self,
        directory: Path | str,
        keep: int = 5,
        ops: FileOps | None = None,
        *,
        key: bytes | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self._key = key
        self._versions = AtomicDirectories(self.directory, "snap", LATEST, keep, ops)

    @property
    def verifies_signatures(self) -> bool:
        """Whether loading refuses snapshots that are not signed with this store's key."""
        return self._key is not None

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
        *,
        live_value: dict[str, Any] | None = None,
    ) -> str:
        """Write a snapshot of `state` and point `LATEST` at it; returns its name.

        `after_sequence`: the publisher's own last sequence, so numbering continues even if
        the directory was lost (followers of the snapshot topic only take newer sequences).
        `live_value`: the consumer's live estimates, carried in the manifest.
        """
        sequence = self.next_sequence(after_sequence)
        manifest, files = snapshot_contents(
            config, state, sequence, trained_through, examples, live_value
        )
        key = self._key if self._key is not None else signing_key(config.snapshots.signing_key_file)
        return self.write(manifest, files, key=key)

    def write(
        self,
        manifest: dict[str, Any],
        files: dict[str, bytes],
        *,
        key: bytes | None = None,
        signature: dict[str, str] | None = None,
    ) -> str:
        """Write a snapshot atomically from its manifest (without `files`) and files, signed
        with `key` (or this store's), or carrying a `signature` made elsewhere."""
        problems = _name_problems(files)
        if problems:
            raise SnapshotError(f"snapshot {manifest.get('policy_id')!r}: {'; '.join(problems)}")
        name = f"snap-{int(manifest['sequence']):09d}"
        manifest = {**manifest, "files": {rel: _sha256(data) for rel, data in files.items()}}
        manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        pointer = orjson.dumps({"name": name, "manifest_sha256": _sha256(manifest_bytes)})
        key = key if key is not None else self._key
        if key is not None:
            signature = manifest_signature(manifest, key)
        extra = {SIGNATURE: orjson.dumps(signature)} if signature is not None else {}
        self._versions.publish(name, {**files, MANIFEST: manifest_bytes, **extra}, pointer)
        return name

    # ---- loading ------------------------------------------------------------------------

    def latest_pointer(self) -> tuple[str, str] | None:
        """(name, manifest sha256) that `LATEST` points at, or None before the first snapshot."""
        try:
            pointer = orjson.loads((self.directory / LATEST).read_bytes())
            name, digest = pointer["name"], pointer["manifest_sha256"]
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{self.directory / LATEST}: unreadable pointer ({exc})") from exc
        # Followed blindly, a name like `../../x` would load a snapshot from anywhere.
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SnapshotError(
                f"{self.directory / LATEST}: names {str(name)[:100]!r}, not a snapshot of this "
                "directory (snap-<digits>); refusing it"
            )
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise SnapshotError(f"{self.directory / LATEST}: manifest_sha256 is not a sha256")
        return name, digest

    def load_latest(self) -> Snapshot:
        pointer = self.latest_pointer()
        if pointer is None:
            raise SnapshotError(
                f"{self.directory}: no snapshot yet (no {LATEST}); run `nudge consume` or "
                "`nudge export` first"
            )
        return self.load(*pointer)

    def load(self, name: str, manifest_sha256: str | None = None) -> Snapshot:
        """Load and verify the snapshot `name` of this directory (signed, if there is a key)."""
        if not _NAME.fullmatch(name):
            raise SnapshotError(
                f"{self.directory}: {name!r} is not a snapshot name (snap-<digits>)"
            )
        return load_snapshot(self.directory / name, manifest_sha256, key=self._key)


def load_snapshot(
    path: Path | str, manifest_sha256: str | None = None, *, key: bytes | None = None
) -> Snapshot:
    """Load and verify one snapshot directory; raise `SnapshotError` saying what is wrong.

    With `key`, its `signature.json` must be the manifest's HMAC under that key.
    """
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
    if key is not None:
        check_signature(str(path), raw if isinstance(raw, dict) else {}, _read_signature(path), key)
    manifest = _validated(str(path), str(path / MANIFEST), raw)
    return _snapshot(path.name, str(path), manifest, _verified_files(path, manifest))


def _read_signature(path: Path) -> Any:
    try:
        return orjson.loads((path / SIGNATURE).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SnapshotSignatureError(f"{path / SIGNATURE}: unreadable ({exc})") from exc


def _validated(where: str, manifest_where: str, raw: Any) -> SnapshotManifest:
    """The manifest, once its format version and every field check out."""
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"{where}: snapshot format {version!r}, this version of nudgebandit reads "
            f"format {FORMAT_VERSION}; export the snapshot again with a matching version"
        )
    try:
        manifest = SnapshotManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where_in = ".".join(str(p) for p in first["loc"])
        raise SnapshotError(f"{manifest_where}: {where_in}: {first['msg']}") from None
    needed = {*manifest.models.values(), manifest.reactions}
    needed |= {f for f in (manifest.outcome_model, manifest.arms, manifest.pruning_state) if f}
    unlisted = sorted(needed - set(manifest.files))
    if unlisted:
        raise SnapshotError(f"{manifest_where}: files {unlisted} have no sha256 in `files`")
    problems = _name_problems(manifest.files)
    if problems:
        raise SnapshotError(f"{manifest_where}: {'; '.join(problems)}")
    return manifest


def _snapshot(
    name: str, where: str, manifest: SnapshotManifest, data: Mapping[str, bytes]
) -> Snapshot:
    """The learned state the verified files hold; files that do not parse are refused."""
    try:
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
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{where}: a state file does not parse ({exc})") from None
    return Snapshot(name, manifest, state)


def _verified_files(path: Path, manifest: SnapshotManifest) -> dict[str, bytes]:
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
    snapshot: Path,
    freeze: Literal["none", "unlearned_weights"] = "none",
    *,
    key: bytes | None = None,
) -> LearnerState:
    """A new deployment's starting state from an earlier snapshot (or a store's `LATEST`).

    With `freeze="unlearned_weights"` each policy model is also its own VW `--feature_mask`:
    weights the snapshot never learned (zero) stay frozen; learned ones keep updating.
    With `key`, only a snapshot signed with it is taken.
    """
    path = Path(snapshot)
    is_store = (path / LATEST).exists()
    loaded = SnapshotStore(path, key=key).load_latest() if is_store else load_snapshot(path, key=key)
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


def pack_snapshot(path: Path | str, *, key: bytes | None = None) -> bytes:
    """One verified snapshot as a single JSON message (for a compacted Kafka topic):
    `{"manifest", "files": {name: base64}, "signature"}` (the signature when it has one)."""
    snapshot_dir = Path(path)
    load_snapshot(snapshot_dir, key=key)  # refuse to ship a snapshot that does not verify
    manifest = orjson.loads((snapshot_dir / MANIFEST).read_bytes())
    files = {
        rel: base64.b64encode((snapshot_dir / rel).read_bytes()).decode("ascii")
        for rel in manifest["files"]
    }
    bundle: dict[str, Any] = {"manifest": manifest, "files": files}
    signature = _read_signature(snapshot_dir)
    if signature is not None:
        bundle["signature"] = signature
    return orjson.dumps(bundle)


@dataclass(frozen=True, slots=True)
class PackedSnapshot:
    """A packed snapshot, verified: its manifest as published, its files and its signature."""

    snapshot: Snapshot
    manifest: dict[str, Any]  # without `files`
    files: dict[str, bytes]
    signature: dict[str, str] | None


def read_packed(message: bytes, *, key: bytes | None = None) -> PackedSnapshot:
    """Decode and verify a packed snapshot completely, in memory (names, sha256 of every file,
    format version, the state files, and the signature when `key` is given)."""
    try:
        bundle = orjson.loads(message)
        raw = bundle["manifest"]
        encoded = bundle["files"]
        signature = bundle.get("signature")
        if not isinstance(raw, dict) or not isinstance(encoded, dict):
            raise TypeError("manifest and files must be objects")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"not a packed snapshot: {exc}") from exc
    where = f"packed snapshot {str(raw.get('policy_id'))[:80]!r}"
    if key is not None:
        check_signature(where, raw, signature, key)
    unsafe = sorted(
        str(r)
        for r in encoded
        if isinstance(r, str) and (r.startswith("/") or ".." in r.split("/"))
    )
    if unsafe:
        raise SnapshotError(f"packed snapshot names files outside itself: {unsafe[:5]}")
    listed = raw.get("files")
    problems = _name_problems(set(encoded) | (set(listed) if isinstance(listed, dict) else set()))
    if problems:
        raise SnapshotError(f"{where}: {'; '.join(problems[:5])}")
    if raw.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"packed snapshot format {raw.get('format_version')!r}, this version reads "
            f"{FORMAT_VERSION}"
        )
    try:
        manifest = SnapshotManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise SnapshotError(f"packed snapshot manifest: {field}: {first['msg']}") from None
    try:
        files = {rel: base64.b64decode(text, validate=True) for rel, text in encoded.items()}
    except (binascii.Error, TypeError, ValueError) as exc:
        raise SnapshotError(f"{where}: a file is not base64 ({exc})") from None
    digests = manifest.files
    if set(files) != set(digests) or any(_sha256(files[r]) != d for r, d in digests.items()):
        raise SnapshotError(f"{where}: files do not match their sha256")
    validated = _validated(where, f"{where} manifest", raw)
    snapshot = _snapshot(f"snap-{manifest.sequence:09d}", where, validated, files)
    published = {k: v for k, v in raw.items() if k != "files"}
    carried = (
        signature
        if isinstance(signature, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in signature.items())
        else None
    )  # kept as published, so a decider given the key can check the copy too
    return PackedSnapshot(snapshot, published, files, carried)


def unpack_snapshot(message: bytes, store: SnapshotStore, *, key: bytes | None = None) -> str:
    """Write a packed snapshot into `store` (verified first, signed when `key` is given);
    returns its name."""
    packed = read_packed(message, key=key)
    return store.write(packed.manifest, packed.files, signature=packed.signature)
