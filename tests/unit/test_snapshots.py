"""Unit tests of policy snapshots (`bandit.snapshots`): publishing, verifying, refusing."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from decision_fixtures import joined_events, make_config, train

from bandit.config import Config
from bandit.errors import SnapshotError
from bandit.learning import OnlineLearner
from bandit.snapshots import FORMAT_VERSION, LATEST, MANIFEST, SnapshotStore, load_snapshot
from bandit.state import LearnerState

TRAINED_THROUGH = {"nudge.impressions/0": 412, "nudge.outcomes/0": 97}


@pytest.fixture(scope="module")
def config() -> Config:
    return make_config(
        {"algorithm": "softmax", "lambda": 4.0},
        scope="per_trigger",
        outcome_model=True,
        rule={"forced_share": 0.2, "cold_start_outcomes": 2},
        triggers={"*/final-passed": {"policy": "send_rule", "send_margin": 0.1}},
    )


@pytest.fixture(scope="module")
def learner(config: Config) -> Iterator[OnlineLearner]:
    learner = train(config, joined_events()[:400], reaction_cap=2)
    yield learner
    learner.close()


@pytest.fixture(scope="module")
def state(learner: OnlineLearner) -> LearnerState:
    return learner.state()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pointer(directory: Path) -> dict[str, str]:
    return orjson.loads((directory / LATEST).read_bytes())


# ---- publishing and loading ---------------------------------------------------------------------


def test_published_snapshot_loads_back_with_everything_the_manifest_promises(
    tmp_path: Path, config: Config, state: LearnerState
) -> None:
    store = SnapshotStore(tmp_path / "snaps", keep=3)
    before = datetime.now(UTC)

    name = store.publish(config, state, TRAINED_THROUGH, 400)
    snapshot = store.load_latest()

    m = snapshot.manifest
    assert snapshot.name == name == "snap-000000001"
    assert m.format_version == FORMAT_VERSION
    assert m.policy_id == "nudge-000001"
    assert m.policy_name == config.decisions.policy_name
    assert m.sequence == 1
    assert m.scope == "per_trigger"
    assert m.vw_arguments == config.learner.vw_arguments()
    assert "--softmax --lambda 4.0" in m.vw_arguments
    assert m.none_action == config.rewards.none_action
    assert m.namespaces == config.learner.namespaces
    assert m.action_namespace == config.learner.action_namespace
    assert m.actions == state.catalogue["actions"]
    assert m.triggers == state.catalogue["triggers"]
    # the default exploration (the section may also list per-trigger ones)
    assert m.exploration.get("default", m.exploration) == {"algorithm": "softmax", "lambda": 4.0}
    assert m.decision_rules() == config.decisions
    assert m.decision_rules().rule_for("B/final/final-passed").policy == "send_rule"
    assert m.reward_map() == config.rewards
    assert m.trained_through == TRAINED_THROUGH
    assert m.examples == 400
    created = datetime.fromisoformat(m.created_at)
    assert created.tzinfo is not None
    assert before.replace(microsecond=0) <= created <= datetime.now(UTC)
    # every file the manifest lists is there, with the sha256 it states
    directory = store.directory / name
    assert set(m.files) == {
        *m.models.values(),
        m.reactions,
        m.outcome_model,
        m.arms,
        m.pruning_state,
    }
    for rel, digest in m.files.items():
        assert sha256((directory / rel).read_bytes()) == digest
    # ...and the learned state comes back byte for byte
    assert set(m.models) == set(state.models)
    assert snapshot.state.models == state.models
    assert snapshot.state.outcome_model == state.outcome_model
    assert snapshot.state.reactions == state.reactions
    assert snapshot.state.catalogue == state.catalogue


def test_snapshot_without_outcome_model_lists_none(tmp_path: Path, state: LearnerState) -> None:
    plain = make_config()
    store = SnapshotStore(tmp_path, keep=3)

    store.publish(plain, LearnerState(models=state.models, catalogue=state.catalogue), {}, 0)
    snapshot = store.load_latest()

    assert snapshot.manifest.outcome_model is None
    assert snapshot.state.outcome_model is None
    assert snapshot.state.reactions == {}
    assert snapshot.manifest.scope == "global"


def test_latest_points_at_the_newest_snapshot_with_its_manifest_sha256(
    tmp_path: Path, config: Config, state: LearnerState
) -> None:
    store = SnapshotStore(tmp_path, keep=3)

    first = store.publish(config, state, TRAINED_THROUGH, 400)
    assert pointer(tmp_path)["name"] == first
    second = store.publish(config, state, {"nudge.impressions/0": 900}, 900)

    assert second == "snap-000000002"
    assert pointer(tmp_path) == {
        "name": second,
        "manifest_sha256": sha256((tmp_path / second / MANIFEST).read_bytes()),
    }
    assert store.latest_pointer() == (second, pointer(tmp_path)["manifest_sha256"])
    latest = store.load_latest()
    assert latest.name == second
    assert latest.manifest.policy_id == "nudge-000002"
    assert latest.manifest.examples == 900
    # the older snapshot is still there and still verifies on its own
    assert load_snapshot(tmp_path / first).manifest.sequence == 1


def test_store_keeps_only_the_newest_snapshots(
    tmp_path: Path, config: Config, state: LearnerState
) -> None:
    store = SnapshotStore(tmp_path, keep=2)

    names = [store.publish(config, state, {}, i) for i in range(5)]

    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST, *names[-2:]]
    assert store.load_latest().name == names[-1]
    assert store.next_sequence() == 6


def test_sequence_continues_after_older_snapshots_were_pruned(
    tmp_path: Path, config: Config, state: LearnerState
) -> None:
    SnapshotStore(tmp_path, keep=1).publish(config, state, {}, 0)
    SnapshotStore(tmp_path, keep=1).publish(config, state, {}, 0)

    name = SnapshotStore(tmp_path, keep=1).publish(config, state, {}, 0)

    assert name == "snap-000000003"
    assert [p.name for p in tmp_path.glob("snap-*")] == [name]


def test_no_snapshot_yet_is_refused_with_what_to_run(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "never-written")

    assert store.latest_pointer() is None
    with pytest.raises(SnapshotError, match=r"no snapshot yet.*`nudge consume` or `nudge export`"):
        store.load_latest()


# ---- refusing what does not verify --------------------------------------------------------------


def _model_file(directory: Path) -> Path:
    manifest = orjson.loads((directory / MANIFEST).read_bytes())
    return directory / sorted(manifest["models"].values())[0]


def _flip_a_model_byte(directory: Path) -> None:
    path = _model_file(directory)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest_only(directory: Path) -> None:
    # a valid manifest with a different example count: only the LATEST sha256 can tell
    raw = orjson.loads((directory / MANIFEST).read_bytes())
    raw["examples"] += 1
    (directory / MANIFEST).write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))


def _rewrite_manifest(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the manifest and re-point LATEST at it, as a consistent but different publisher."""
    raw = orjson.loads((directory / MANIFEST).read_bytes())
    change(raw)
    data = orjson.dumps(raw, option=orjson.OPT_INDENT_2)
    (directory / MANIFEST).write_bytes(data)
    (directory.parent / LATEST).write_bytes(
        orjson.dumps({"name": directory.name, "manifest_sha256": sha256(data)})
    )


def _future_format(directory: Path) -> None:
    _rewrite_manifest(directory, lambda m: m.update(format_version=FORMAT_VERSION + 1))


def _no_format(directory: Path) -> None:
    _rewrite_manifest(directory, lambda m: m.pop("format_version"))


def _delete_the_reactions_file(directory: Path) -> None:
    (directory / "reactions.json").unlink()


def _delete_the_manifest(directory: Path) -> None:
    (directory / MANIFEST).unlink()


def _escape_the_snapshot(directory: Path) -> None:
    # the outside file has the right sha256: only the path check can refuse it
    outside = directory.parent / "outside.vw"
    shutil.copy(_model_file(directory), outside)

    def point_outside(m: dict[str, Any]) -> None:
        scope = sorted(m["models"])[0]
        m["models"][scope] = "../outside.vw"
        m["files"]["../outside.vw"] = sha256(outside.read_bytes())

    _rewrite_manifest(directory, point_outside)


def _absolute_path(directory: Path) -> None:
    outside = directory.parent / "outside.vw"
    shutil.copy(_model_file(directory), outside)

    def point_outside(m: dict[str, Any]) -> None:
        m["models"][sorted(m["models"])[0]] = str(outside)
        m["files"][str(outside)] = sha256(outside.read_bytes())

    _rewrite_manifest(directory, point_outside)


def _unlisted_model(directory: Path) -> None:
    def drop_sha(m: dict[str, Any]) -> None:
        del m["files"][m["models"][sorted(m["models"])[0]]]

    _rewrite_manifest(directory, drop_sha)


def _unknown_manifest_key(directory: Path) -> None:
    _rewrite_manifest(directory, lambda m: m.update(campaign="spring"))


def _garbage_pointer(directory: Path) -> None:
    (directory.parent / LATEST).write_bytes(b"{not json")


REFUSALS = [
    (_flip_a_model_byte, r"policy-0000\.vw: sha256 mismatch, the file was changed or corrupted"),
    (_edit_manifest_only, r"manifest\.json: sha256 does not match LATEST; refusing it"),
    (
        _future_format,
        rf"snapshot format {FORMAT_VERSION + 1}, this version of nudgebandit reads format "
        rf"{FORMAT_VERSION}; export the snapshot again",
    ),
    (
        _no_format,
        rf"snapshot format None, this version of nudgebandit reads format {FORMAT_VERSION}",
    ),
    (_delete_the_reactions_file, r"reactions\.json: unreadable \(No such file or directory\)"),
    (_delete_the_manifest, r"no readable manifest\.json"),
    (_escape_the_snapshot, r"file '\.\./outside\.vw' is outside the snapshot"),
    (_absolute_path, r"outside\.vw' is outside the snapshot"),
    (_unlisted_model, r"files \['models/policy-0000\.vw'\] have no sha256 in `files`"),
    (_unknown_manifest_key, r"manifest\.json: campaign: Extra inputs are not permitted"),
    (_garbage_pointer, r"LATEST: unreadable pointer"),
]


@pytest.mark.parametrize(
    ("tamper", "message"), REFUSALS, ids=[t.__name__.strip("_") for t, _ in REFUSALS]
)
def test_snapshot_that_does_not_verify_is_refused_saying_why(
    tmp_path: Path,
    config: Config,
    state: LearnerState,
    tamper: Callable[[Path], None],
    message: str,
) -> None:
    store = SnapshotStore(tmp_path / "snaps", keep=3)
    name = store.publish(config, state, TRAINED_THROUGH, 400)
    store.load_latest()  # verifies before tampering

    tamper(store.directory / name)

    with pytest.raises(SnapshotError, match=message):
        store.load_latest()


def test_tampered_older_snapshot_does_not_affect_the_latest(
    tmp_path: Path, config: Config, state: LearnerState
) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    old = store.publish(config, state, {}, 1)
    new = store.publish(config, state, {}, 2)

    _flip_a_model_byte(tmp_path / old)

    assert store.load_latest().name == new
    with pytest.raises(SnapshotError, match="sha256 mismatch"):
        load_snapshot(tmp_path / old)


def test_load_snapshot_without_a_pointer_still_checks_every_file(
    tmp_path: Path, config: Config, state: LearnerState
) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    name = store.publish(config, state, {}, 1)
    _edit_manifest_only(tmp_path / name)

    assert load_snapshot(tmp_path / name).manifest.examples == 2  # no LATEST sha to compare
    _flip_a_model_byte(tmp_path / name)
    with pytest.raises(SnapshotError, match="sha256 mismatch"):
        load_snapshot(tmp_path / name)


def test_publish_leaves_no_temporary_files(
    tmp_path: Path, config: Config, state: LearnerState
) -> None:
    store = SnapshotStore(tmp_path / "new" / "dir", keep=3)

    name = store.publish(config, state, {}, 1)

    assert sorted(p.name for p in store.directory.iterdir()) == [LATEST, name]
