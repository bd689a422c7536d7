"""`LATEST` never leads out of its directory (issue 11): a pointer naming `../../x` or any
other thing than `snap-<digits>` is refused, key or no key, and the decider keeps serving."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import orjson
import pytest

from bandit.config import Config
from bandit.decisions import Decider
from bandit.errors import SnapshotError
from bandit.snapshots import LATEST, MANIFEST, SnapshotStore
from bandit.state import LearnerState

CATALOGUE = {"actions": {"hint": {"kind": "hint"}, "none": {}}, "triggers": {"t": ["hint", "none"]}}


@pytest.mark.parametrize(
    "name", ["../../x", "../x", "/tmp/x", "snap-1/../../x", "LATEST", "snap-", "snap-1 ", "x"]
)
def test_latest_naming_anything_but_a_snapshot_of_its_directory_is_refused(
    tmp_path: Path, name: str
) -> None:
    snaps = tmp_path / "a" / "b"
    first = SnapshotStore(snaps).publish(Config(), LearnerState(catalogue=CATALOGUE), {}, 0)
    shutil.copytree(snaps / first, tmp_path / "x")  # a complete snapshot outside, sha256 right
    digest = hashlib.sha256((snaps / first / MANIFEST).read_bytes()).hexdigest()
    with Decider(snaps, seed=1) as decider:
        (snaps / LATEST).write_bytes(orjson.dumps({"name": name, "manifest_sha256": digest}))
        assert decider.reload() is False and decider.version == "nudge-000001"
        assert decider.last_error and "not a snapshot of this directory" in decider.last_error
    with pytest.raises(SnapshotError, match="not a snapshot of this directory"):
        Decider(snaps)
