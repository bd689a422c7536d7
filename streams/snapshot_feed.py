"""Decision services that subscribe to snapshots: the compacted topic into a local directory.

The consumer publishes each snapshot, packed as one message keyed by policy name, to
`snapshots.kafka_topic` (compacted: the newest per policy survives). `follow_snapshots`
reads it and writes every newer snapshot into a local snapshot directory with its `LATEST`,
which a `Decider` watching that directory hot-reloads. Packed snapshots are verified
(sha256 of every file, format version) before they are written; bad ones are skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import orjson

from bandit.config import Config
from bandit.errors import NudgeError, SnapshotError
from bandit.snapshots import SnapshotStore, unpack_snapshot
from streams.kafka_io import SNAPSHOT_MESSAGE_BYTES, TopicFollower, ensure_snapshot_topic

log = logging.getLogger("nudge.snapshots")


def _sequence_of(message: bytes) -> int:
    try:
        return int(orjson.loads(message)["manifest"]["sequence"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return -1


def follow_snapshots(
    config: Config,
    directory: Path,
    until_idle_s: float | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Mirror the snapshot topic into `directory`; returns how many snapshots were written."""
    topic = config.snapshots.kafka_topic
    if topic is None:
        raise NudgeError("snapshots.kafka_topic is not set: there is no snapshot topic to follow")
    ensure_snapshot_topic(config.kafka, topic)
    store = SnapshotStore(directory, config.snapshots.keep)
    follower = TopicFollower(config.kafka, topic, SNAPSHOT_MESSAGE_BYTES)
    stop = stop or threading.Event()
    newest = store.next_sequence() - 1
    written = 0
    last_message = time.monotonic()
    try:
        while not stop.is_set():
            batch = follower.poll(config.kafka.poll_timeout_ms)
            now = time.monotonic()
            if batch:
                last_message = now
            for _, value in batch:
                if _sequence_of(value) <= newest:
                    continue
                try:
                    name = unpack_snapshot(value, store)
                except SnapshotError as exc:
                    log.error("skipping a snapshot message: %s", exc)
                    continue
                newest = _sequence_of(value)
                written += 1
                log.info("snapshot %s written to %s", name, directory)
            if until_idle_s is not None and now - last_message >= until_idle_s:
                return written
    finally:
        follower.close()
    return written
