"""A decision service must keep serving: bad snapshots are refused, the watcher survives them."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import orjson
import pytest

from bandit.config import Config, parse_config
from bandit.decisions import Decider
from bandit.errors import SnapshotError
from bandit.snapshots import LATEST, MANIFEST, SnapshotStore
from bandit.state import LearnerState

CATALOGUE = {"actions": {"hint": {"kind": "hint"}, "none": {}}, "triggers": {"t": ["hint", "none"]}}


def _publish(directory: Path, config: Config | None = None) -> str:
    state = LearnerState(catalogue=CATALOGUE)
    return SnapshotStore(directory).publish(config or Config(), state, {}, 0)


def test_the_watcher_survives_a_snapshot_whose_rules_do_not_validate(tmp_path: Path) -> None:
    _publish(tmp_path)
    decider = Decider(tmp_path, seed=1)
    decider.watch(interval_s=0.02)
    # A snapshot from another version: its decision rules carry an unknown field. Written
    # with a correct LATEST sha so only the rules are wrong; built aside and moved in whole,
    # so the watcher never sees it before it is tampered with.
    staging = tmp_path / "staging"
    name = SnapshotStore(staging).publish(Config(), LearnerState(catalogue=CATALOGUE), {}, 0, 1)
    manifest = orjson.loads((staging / name / MANIFEST).read_bytes())
    manifest["decisions"]["default"]["brand_new_field"] = 1
    data = orjson.dumps(manifest)
    (staging / name / MANIFEST).write_bytes(data)
    (staging / name).rename(tmp_path / name)
    pointer = {"name": name, "manifest_sha256": hashlib.sha256(data).hexdigest()}
    (tmp_path / LATEST).write_bytes(orjson.dumps(pointer))
    time.sleep(0.2)
    assert decider.version == "nudge-000001"
    assert decider.last_error and "decision rules do not validate" in decider.last_error
    good = _publish(tmp_path)
    deadline = time.monotonic() + 5
    while decider.version != f"nudge-{int(good[5:]):06d}" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert decider.version == f"nudge-{int(good[5:]):06d}"  # the watcher is still alive
    decider.close()


def test_rules_wanting_more_cold_start_than_the_consumer_counted_are_refused(
    tmp_path: Path,
) -> None:
    _publish(tmp_path)  # consumer config: cold_start_outcomes 1, so counts stop at 1
    deeper = parse_config({"decisions": {"default": {"cold_start_outcomes": 3}}}).decisions
    with pytest.raises(SnapshotError, match="every learner would stay cold"):
        Decider(tmp_path, rules=deeper)
