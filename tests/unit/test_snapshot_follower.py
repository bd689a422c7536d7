"""The snapshot follower's rule (issue 11): a bad record is skipped and counted, never fatal; a
sequence number cannot pin followers; with a key, only signed snapshots are taken."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from bandit.config import Config
from bandit.snapshots import LATEST, SnapshotStore, pack_snapshot, snapshot_contents
from bandit.state import LearnerState
from streams.snapshot_feed import SnapshotMirror

KEY = b"k" * 32
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STATE = LearnerState(
    models={"global": b"model bytes"},
    catalogue={"actions": {"hint": {"kind": "hint"}}, "triggers": {"t": ["hint"]}},
)


def packed(tmp_path: Path, sequence: int, minutes: float = 0.0, key: bytes | None = None) -> bytes:
    """A packed snapshot numbered `sequence`, created `minutes` after NOW."""
    manifest, files = snapshot_contents(Config(), STATE, sequence, {}, 0)
    manifest["created_at"] = (NOW + timedelta(minutes=minutes)).isoformat()
    store = SnapshotStore(tmp_path / f"publisher-{sequence}-{minutes}-{key is not None}")
    return pack_snapshot(store.directory / store.write(manifest, files, key=key))


def mirror(tmp_path: Path, key: bytes | None = None, minutes: float = 60.0) -> SnapshotMirror:
    """A follower whose clock reads NOW + `minutes`."""
    clock = (NOW + timedelta(minutes=minutes)).timestamp()
    return SnapshotMirror(SnapshotStore(tmp_path / "mirror"), key=key, clock=lambda: clock)


def latest_sequence(m: SnapshotMirror) -> int:
    return m.store.load_latest().manifest.sequence


def with_file(message: bytes, name: str) -> bytes:
    bundle = orjson.loads(message)
    bundle["files"][name] = base64.b64encode(b"x").decode()
    bundle["manifest"]["files"][name] = hashlib.sha256(b"x").hexdigest()
    return orjson.dumps(bundle)


BAD_NAMES = ["", ".", "models", "models/", "a\x00b", "../x", "/etc/x", "a//b", "a/./b",
             "manifest.json", "signature.json", "x" * 300]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_a_record_naming_a_bad_file_is_skipped_and_the_next_good_one_taken(
    tmp_path: Path, name: str
) -> None:
    follower = mirror(tmp_path)
    assert follower.offer(packed(tmp_path, 1)) == "snap-000000001"

    assert follower.offer(with_file(packed(tmp_path, 2, 1), name)) is None

    assert follower.stats.skipped == {"invalid": 1}
    assert latest_sequence(follower) == 1
    assert follower.offer(packed(tmp_path, 3, 2)) == "snap-000000003"
    assert not (tmp_path / "mirror" / "snap-000000002").exists()


@pytest.mark.parametrize(
    "message",
    [b"not json", b"[]", b'{"manifest": {}, "files": []}', b'{"manifest": [], "files": {}}',
     b'{"manifest": {"format_version": 1, "files": [[1]]}, "files": {}}', None],
)  # fmt: skip
def test_garbage_and_tombstones_are_skipped(tmp_path: Path, message: bytes | None) -> None:
    follower = mirror(tmp_path)
    assert follower.offer(message) is None
    assert sum(follower.stats.skipped.values()) == 1 and follower.stats.written == 0


def test_a_huge_sequence_number_does_not_pin_the_followers(tmp_path: Path) -> None:
    follower = mirror(tmp_path)
    follower.offer(packed(tmp_path, 1, 0))
    follower.offer(packed(tmp_path, 10**12, 1))  # verifies: taken, but it orders by time first

    assert follower.offer(packed(tmp_path, 2, 2)) == "snap-000000002"
    assert latest_sequence(follower) == 2
    # and after a restart of the follower, reading the topic again from the start:
    again = mirror(tmp_path)
    for message in (packed(tmp_path, 1, 0), packed(tmp_path, 10**12, 1), packed(tmp_path, 2, 2)):
        assert again.offer(message) is None
    assert again.stats.stale == 3 and latest_sequence(again) == 2
    assert again.offer(packed(tmp_path, 3, 3)) == "snap-000000003"


def test_a_publisher_numbering_from_1_again_is_followed(tmp_path: Path) -> None:
    follower = mirror(tmp_path)
    follower.offer(packed(tmp_path, 57, 0))

    assert follower.offer(packed(tmp_path, 1, 5)) == "snap-000000001"
    assert (orjson.loads((tmp_path / "mirror" / LATEST).read_bytes())["name"]) == "snap-000000001"


def test_a_snapshot_created_in_the_future_is_skipped(tmp_path: Path) -> None:
    follower = mirror(tmp_path, minutes=0)  # clock at NOW; skew 300 s
    assert follower.offer(packed(tmp_path, 1, 0)) is not None
    assert follower.offer(packed(tmp_path, 2, 4)) is not None  # 4 minutes ahead: tolerated

    assert follower.offer(packed(tmp_path, 3, 60 * 24 * 365)) is None

    assert follower.stats.skipped == {"future": 1}
    assert follower.offer(packed(tmp_path, 4, 4.5)) == "snap-000000004"


def test_a_local_snapshot_from_the_future_does_not_pin_a_restarted_follower(
    tmp_path: Path,
) -> None:
    mirror(tmp_path, minutes=10**7).offer(packed(tmp_path, 1, 10**7))  # written by a bad clock

    follower = mirror(tmp_path, minutes=5)

    assert follower.offer(packed(tmp_path, 2, 1)) == "snap-000000002"


def test_with_a_key_unsigned_or_otherwise_signed_records_are_skipped(tmp_path: Path) -> None:
    follower = mirror(tmp_path, key=KEY)

    assert follower.offer(packed(tmp_path, 1, 0)) is None
    assert follower.offer(packed(tmp_path, 2, 1, key=b"o" * 32)) is None
    assert follower.offer(packed(tmp_path, 3, 2, key=KEY)) == "snap-000000003"

    assert follower.stats.skipped == {"signature": 2}
    assert SnapshotStore(tmp_path / "mirror", key=KEY).load_latest().manifest.sequence == 3


def test_an_old_record_read_again_is_not_written_again(tmp_path: Path) -> None:
    follower = mirror(tmp_path)
    first, second = packed(tmp_path, 1, 0), packed(tmp_path, 2, 1)
    follower.offer(first)
    follower.offer(second)

    assert follower.offer(first) is None and follower.offer(second) is None
    assert follower.stats.written == 2 and follower.stats.stale == 2
