"""Issue 11 through the real broker: `nudge follow-snapshots` on a snapshot topic holding bad
records (file names `""`, `.`, `models`, with a NUL) and a snapshot numbered 10^12 skips the bad
ones, is not pinned, and exits 0; with a signing key it takes only signed snapshots."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from bandit.config import Config
from bandit.snapshots import SnapshotStore, pack_snapshot, snapshot_contents
from bandit.state import LearnerState
from streams.kafka_io import SNAPSHOT_MESSAGE_BYTES, Producer, ensure_snapshot_topic
from tests.integration.conftest import ROOT, Deployment

pytestmark = pytest.mark.kafka

KEY = "k" * 32
STATE = LearnerState(
    models={"global": b"model bytes"},
    catalogue={"actions": {"hint": {"kind": "hint"}}, "triggers": {"t": ["hint"]}},
)


def _packed(workdir: Path, sequence: int, minutes: float, key: bytes | None = None) -> bytes:
    manifest, files = snapshot_contents(Config(), STATE, sequence, {}, 0)
    created = datetime.now(UTC) - timedelta(hours=1) + timedelta(minutes=minutes)
    manifest["created_at"] = created.isoformat(timespec="milliseconds")
    store = SnapshotStore(workdir / f"publisher-{uuid.uuid4().hex[:6]}")
    name = store.write(manifest, files, key=key) if key else store.write(manifest, files)
    return pack_snapshot(store.directory / name)


def _with_file(message: bytes, name: str) -> bytes:
    bundle = orjson.loads(message)
    bundle["files"][name] = base64.b64encode(b"x").decode()
    bundle["manifest"]["files"][name] = hashlib.sha256(b"x").hexdigest()
    return orjson.dumps(bundle)


def _produce(dep: Deployment, *messages: bytes) -> None:
    topic = dep.config.snapshots.kafka_topic
    assert topic is not None
    ensure_snapshot_topic(dep.config.kafka, topic)
    producer = Producer(dep.config.kafka, max_request_size=SNAPSHOT_MESSAGE_BYTES)
    try:
        for message in messages:
            producer.send(topic, key=b"nudge", value=message)
        producer.flush()
    finally:
        producer.close()


def _follow(dep: Deployment, out: Path, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    if key is not None:
        env["NUDGE_SNAPSHOT_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "nudge.cli", "follow-snapshots", "--config", str(dep.path),
         "--out", str(out), "--until-idle", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_records_naming_bad_files_are_skipped_without_a_crash_loop(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment(snapshots={"kafka_topic": f"{uuid.uuid4().hex[:8]}.snapshots"})
    work = dep.workdir
    bad = [_with_file(_packed(work, 2, 1), name) for name in ("", ".", "models", "a\x00b")]
    _produce(dep, _packed(work, 1, 0), *bad, _packed(work, 3, 3))
    out = work / "mirror"

    for _ in range(2):  # and again, as a restarted follower: no crash loop
        done = _follow(dep, out)
        assert done.returncode == 0, done.stderr[-3000:]
        assert SnapshotStore(out).load_latest().manifest.sequence == 3

    assert "4 skipped (4 invalid)" in done.stdout


def test_a_snapshot_numbered_10_to_the_12_does_not_pin_the_follower(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment(snapshots={"kafka_topic": f"{uuid.uuid4().hex[:8]}.snapshots"})
    work = dep.workdir
    _produce(dep, _packed(work, 1, 0), _packed(work, 10**12, 1), _packed(work, 2, 2))
    out = work / "mirror"

    done = _follow(dep, out)

    assert done.returncode == 0, done.stderr[-3000:]
    assert SnapshotStore(out).load_latest().manifest.sequence == 2
    _produce(dep, _packed(work, 3, 3))  # the publisher goes on; a restarted follower follows
    assert _follow(dep, out).returncode == 0
    assert SnapshotStore(out).load_latest().manifest.sequence == 3


def test_a_follower_with_the_key_takes_only_signed_snapshots(
    deployment: Callable[..., Deployment],
) -> None:
    dep = deployment(snapshots={"kafka_topic": f"{uuid.uuid4().hex[:8]}.snapshots"})
    work = dep.workdir
    _produce(dep, _packed(work, 1, 0, KEY.encode()), _packed(work, 2, 1), _packed(work, 3, 2))
    out = work / "mirror"

    done = _follow(dep, out, key=KEY)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 skipped (2 signature)" in done.stdout and KEY not in done.stderr
    assert SnapshotStore(out, key=KEY.encode()).load_latest().manifest.policy_id == "nudge-000001"
