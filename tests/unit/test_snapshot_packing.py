"""Packed snapshots (one Kafka message each) unpack to the same verified snapshot, or not at all."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import orjson
import pytest

from bandit.config import Config
from bandit.errors import SnapshotError
from bandit.snapshots import SnapshotStore, pack_snapshot, unpack_snapshot
from bandit.state import LearnerState


def _published(tmp_path: Path) -> tuple[SnapshotStore, str]:
    store = SnapshotStore(tmp_path / "source")
    state = LearnerState(
        models={"global": b"model bytes"},
        catalogue={"actions": {"hint": {"kind": "hint"}}, "triggers": {"t": ["hint"]}},
        reactions={"u1": 1},
    )
    return store, store.publish(Config(), state, {"imp/0": 10}, 10)


def test_a_packed_snapshot_unpacks_to_the_same_files_and_manifest(tmp_path: Path) -> None:
    store, name = _published(tmp_path)
    mirror = SnapshotStore(tmp_path / "mirror")
    assert unpack_snapshot(pack_snapshot(store.directory / name), mirror) == name
    original, copy = store.load_latest(), mirror.load_latest()
    assert copy.manifest == original.manifest
    assert copy.state == original.state


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda b: {**b, "files": {**b["files"], "reactions.json": _b64(b'{"u1": 9}')}}, "sha256"),
        (lambda b: {**b, "manifest": {**b["manifest"], "format_version": 99}}, "format 99"),
        (lambda b: {"manifest": b["manifest"]}, "not a packed snapshot"),
    ],
)
def test_a_tampered_packed_snapshot_is_refused_and_nothing_is_written(
    tmp_path: Path, tamper: object, message: str
) -> None:
    store, name = _published(tmp_path)
    bundle = orjson.loads(pack_snapshot(store.directory / name))
    mirror = SnapshotStore(tmp_path / "mirror")
    with pytest.raises(SnapshotError, match=message):
        unpack_snapshot(orjson.dumps(tamper(bundle)), mirror)  # type: ignore[operator]
    assert mirror.latest_pointer() is None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_a_packed_snapshot_naming_files_outside_itself_is_refused(tmp_path: Path) -> None:
    store, name = _published(tmp_path)
    bundle = orjson.loads(pack_snapshot(store.directory / name))
    bundle["files"]["../../escaped.txt"] = _b64(b"x")
    bundle["manifest"]["files"]["../../escaped.txt"] = hashlib.sha256(b"x").hexdigest()
    mirror = SnapshotStore(tmp_path / "mirror")
    with pytest.raises(SnapshotError, match="outside itself"):
        unpack_snapshot(orjson.dumps(bundle), mirror)
    assert not (tmp_path / "escaped.txt").exists() and mirror.latest_pointer() is None


def test_a_packed_snapshot_with_a_broken_manifest_is_refused(tmp_path: Path) -> None:
    message = orjson.dumps(
        {"manifest": {"format_version": 1, "sequence": 9, "files": {}}, "files": {}}
    )
    with pytest.raises(SnapshotError, match="packed snapshot manifest"):
        unpack_snapshot(message, SnapshotStore(tmp_path / "mirror"))
