"""Signed snapshots (issue 11): sha256 finds corruption, the HMAC-SHA256 signature tampering.

A manifest edited with its hashes recomputed (forced share 1.0, a foreign model) is accepted
by sha256 alone; with the signing key it is refused and the decider keeps the last good
policy (`LATEST` leading out of its directory: `test_snapshot_pointer.py`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bandit.config import Config, parse_config
from bandit.decisions import Decider
from bandit.errors import ConfigError, SnapshotError, SnapshotSignatureError
from bandit.snapshots import (
    LATEST,
    MANIFEST,
    SIGNATURE,
    SnapshotStore,
    load_snapshot,
    pack_snapshot,
    signing_key,
    unpack_snapshot,
)
from bandit.state import LearnerState
from nudge.cli import main

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
CATALOGUE = {"actions": {"hint": {"kind": "hint"}, "none": {}}, "triggers": {"t": ["hint", "none"]}}
STATE = LearnerState(catalogue=CATALOGUE)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _publish(directory: Path, key: bytes | None = KEY) -> str:
    return SnapshotStore(directory, key=key).publish(Config(), STATE, {}, 0)


def _forced_share_one(manifest: dict[str, Any], directory: Path) -> None:
    manifest["decisions"]["default"]["forced_share"] = 1.0


def _foreign_reactions(manifest: dict[str, Any], directory: Path) -> None:
    # Another file with its sha256 recomputed in the manifest, as a forger would.
    forged = b'{"u1": 99}'
    (directory / "reactions.json").write_bytes(forged)
    manifest["files"]["reactions.json"] = _sha256(forged)


def _tamper(directory: Path, name: str, edit: Callable[[dict[str, Any], Path], None]) -> None:
    """Edit a snapshot's manifest, recompute every hash a reader checks, re-point LATEST."""
    manifest = orjson.loads((directory / name / MANIFEST).read_bytes())
    edit(manifest, directory / name)
    data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    (directory / name / MANIFEST).write_bytes(data)
    (directory / LATEST).write_bytes(orjson.dumps({"name": name, "manifest_sha256": _sha256(data)}))


def _staged(tmp_path: Path, directory: Path, key: bytes | None) -> str:
    """A snapshot built aside and moved in whole (a watcher never sees it half made)."""
    staging = tmp_path / "staging"
    name = SnapshotStore(staging, key=key).publish(Config(), STATE, {}, 0, after_sequence=1)
    (staging / name).rename(directory / name)
    shutil.copy(staging / LATEST, directory / LATEST)
    return name


@pytest.mark.parametrize("edit", [_forced_share_one, _foreign_reactions])
def test_a_manifest_altered_with_recomputed_hashes_is_refused_and_the_last_good_policy_stays(
    tmp_path: Path, edit: Callable[[dict[str, Any], Path], None]
) -> None:
    _publish(tmp_path / "snaps")
    with Decider(tmp_path / "snaps", seed=1, key=KEY) as decider:
        name = _staged(tmp_path, tmp_path / "snaps", KEY)
        _tamper(tmp_path / "snaps", name, edit)
        load_snapshot(tmp_path / "snaps" / name)  # sha256 alone cannot tell: every hash matches

        assert decider.reload() is False
        assert decider.version == "nudge-000001"
        assert decider.policy.rules.default.forced_share == pytest.approx(0.1)
        assert decider.policy.reactions == {}
        assert decider.refused == 1
        assert decider.last_error and "signature does not match" in decider.last_error


def test_a_forged_snapshot_is_refused_at_start_with_a_key(tmp_path: Path) -> None:
    _publish(tmp_path)
    name = _staged(tmp_path / "aside", tmp_path, KEY)
    _tamper(tmp_path, name, _forced_share_one)

    with pytest.raises(SnapshotError, match=f"{name}: signature does not match"):
        Decider(tmp_path, key=KEY)


@pytest.mark.parametrize(
    ("publish_key", "message"),
    [(None, "not signed, and a signing key is set"), (OTHER_KEY, "signature does not match")],
)
def test_unsigned_or_otherwise_signed_snapshots_are_refused_by_a_decider_with_the_key(
    tmp_path: Path, publish_key: bytes | None, message: str
) -> None:
    _publish(tmp_path)
    with Decider(tmp_path, seed=1, key=KEY) as decider:
        _staged(tmp_path / "aside", tmp_path, publish_key)
        assert decider.reload() is False and decider.version == "nudge-000001"
        assert decider.last_error and message in decider.last_error


def test_a_decider_without_a_key_still_reads_signed_snapshots(tmp_path: Path) -> None:
    _publish(tmp_path)
    assert (tmp_path / "snap-000000001" / SIGNATURE).exists()
    with Decider(tmp_path, seed=1) as decider:
        assert decider.version == "nudge-000001"


# ---- keys ------------------------------------------------------------------------------------


def test_the_key_comes_from_the_environment_or_a_key_file_never_both(tmp_path: Path) -> None:
    key_file = tmp_path / "snapshot.key"
    key_file.write_bytes(b"0123456789abcdef0123456789abcdef\n")

    assert signing_key(None, {}) is None
    assert signing_key(None, {"NUDGE_SNAPSHOT_KEY": "s" * 20}) == b"s" * 20
    assert signing_key(key_file, {}) == b"0123456789abcdef0123456789abcdef"
    with pytest.raises(ConfigError, match="both set"):
        signing_key(key_file, {"NUDGE_SNAPSHOT_KEY": "s" * 20})
    with pytest.raises(ConfigError, match="at least 16 bytes, got 5"):
        signing_key(None, {"NUDGE_SNAPSHOT_KEY": "short"})
    with pytest.raises(ConfigError, match="cannot read the signing key"):
        signing_key(tmp_path / "missing.key", {})


def test_publish_signs_with_the_key_file_the_config_names(tmp_path: Path) -> None:
    key_file = tmp_path / "snapshot.key"
    key_file.write_bytes(KEY)
    config = parse_config({"snapshots": {"signing_key_file": str(key_file)}})
    store = SnapshotStore(tmp_path / "snaps")  # no key of its own: the config's signs

    name = store.publish(config, STATE, {}, 0)

    assert load_snapshot(store.directory / name, key=KEY).manifest.policy_id == "nudge-000001"
    with pytest.raises(SnapshotSignatureError):
        load_snapshot(store.directory / name, key=OTHER_KEY)


# ---- packed ----------------------------------------------------------------------------------


def test_a_signed_packed_snapshot_unpacks_signed(tmp_path: Path) -> None:
    name = _publish(tmp_path / "source")
    mirror = SnapshotStore(tmp_path / "mirror")

    assert unpack_snapshot(pack_snapshot(tmp_path / "source" / name), mirror, key=KEY) == name

    assert SnapshotStore(mirror.directory, key=KEY).load_latest().name == name


def test_a_packed_snapshot_altered_with_recomputed_hashes_is_refused_with_a_key(
    tmp_path: Path,
) -> None:
    name = _publish(tmp_path / "source")
    bundle = orjson.loads(pack_snapshot(tmp_path / "source" / name))
    bundle["manifest"]["decisions"]["default"]["forced_share"] = 1.0
    mirror = SnapshotStore(tmp_path / "mirror")

    with pytest.raises(SnapshotSignatureError, match="signature does not match"):
        unpack_snapshot(orjson.dumps(bundle), mirror, key=KEY)
    del bundle["signature"]
    with pytest.raises(SnapshotSignatureError, match="not signed"):
        unpack_snapshot(orjson.dumps(bundle), mirror, key=KEY)
    assert mirror.latest_pointer() is None


def test_nudge_decide_with_a_key_refuses_an_unsigned_snapshot_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _publish(tmp_path / "snaps", key=None)
    monkeypatch.setenv("NUDGE_SNAPSHOT_KEY", KEY.decode())
    config = tmp_path / "config.yaml"
    config.write_text("{}")

    code = main(["decide", "--config", str(config), "--snapshots", str(tmp_path / "snaps"),
                 "--trigger", "t", "--learner", "u1"])  # fmt: skip

    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "not signed, and a signing key is set" in line and KEY.decode() not in line


def test_the_consumer_signs_what_it_publishes_and_packs_the_signature(tmp_path: Path) -> None:
    from consumer_fixtures import BOUNDED, SNAPSHOT_TOPIC, make_stream

    key_file = tmp_path / "snapshot.key"
    key_file.write_bytes(KEY + b"\n")
    stream = make_stream(tmp_path, snapshots={"signing_key_file": str(key_file)})

    stream.consumer().run(BOUNDED)

    published = SnapshotStore(stream.config.snapshots.directory, key=KEY).load_latest()
    packed = [r.value for r in stream.broker.records(SNAPSHOT_TOPIC) if r.value]
    assert packed
    mirror = SnapshotStore(tmp_path / "mirror")
    assert unpack_snapshot(packed[-1], mirror, key=KEY) == published.name
    assert SnapshotStore(mirror.directory, key=KEY).load_latest().manifest == published.manifest
