"""Decision services that subscribe to snapshots: the compacted topic into a local directory.

The consumer publishes each snapshot, packed as one message keyed by policy name, to
`snapshots.kafka_topic` (compacted: the newest per policy survives). `follow_snapshots`
reads it and writes every newer snapshot into a local snapshot directory with its `LATEST`,
which a `Decider` watching that directory hot-reloads.

Which record is taken (`SnapshotMirror`): one that verifies completely in memory (file names,
sha256 of every file, format version, state files; and, with a signing key, its signature),
that was not created more than `snapshots.max_clock_skew_s` ahead of the follower's clock,
and that is newer than the snapshot in use by (created_at, sequence). Ordering by the
publisher's creation time first means a sequence number cannot pin followers: a publisher
that lost its state and numbers from 1 again is followed, and so is the next snapshot after
one numbered 10^12; a creation time far in the future is refused outright. Any other record
is skipped (logged and counted by reason), never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bandit.config import Config
from bandit.errors import NudgeError, SnapshotError, SnapshotSignatureError
from bandit.snapshots import SnapshotManifest, SnapshotStore, read_packed, signing_key
from streams.kafka_io import SNAPSHOT_MESSAGE_BYTES, TopicFollower, ensure_snapshot_topic

log = logging.getLogger("nudge.snapshots")

Order = tuple[datetime, int]  # (created_at, sequence): newer wins


@dataclass
class FollowStats:
    """What a follower did with the records it read."""

    written: int = 0
    stale: int = 0  # not newer than the snapshot in use (a restart reads the topic again)
    skipped: Counter[str] = field(default_factory=Counter)  # refused records, by reason

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
        skipped = f", {sum(self.skipped.values())} skipped ({reasons})" if self.skipped else ""
        return f"{self.written} snapshots written, {self.stale} not newer{skipped}"


def _order(manifest: SnapshotManifest, where: str) -> Order:
    try:
        created = datetime.fromisoformat(manifest.created_at)
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise SnapshotError(f"{where}: created_at {manifest.created_at[:40]!r} is not RFC 3339")
    return created, manifest.sequence


class SnapshotMirror:
    """Writes packed snapshot records, read in topic order, into a local store (module rule).

    `key`: the signing key (records not signed with it are skipped); `clock`: wall seconds.
    """

    def __init__(
        self,
        store: SnapshotStore,
        *,
        key: bytes | None = None,
        max_clock_skew_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.key = key
        self.max_clock_skew_s = max_clock_skew_s
        self.clock = clock
        self.stats = FollowStats()
        self._current = self._local_order()

    def _local_order(self) -> Order | None:
        """The order of the local `LATEST`, if it verifies and is not from the future."""
        try:
            if self.store.latest_pointer() is None:
                return None
            snapshot = SnapshotStore(self.store.directory, key=self.key).load_latest()
            order = _order(snapshot.manifest, snapshot.name)
        except SnapshotError as exc:
            log.warning("the local snapshot does not verify, any verified one replaces it: %s", exc)
            return None
        if self._from_the_future(order):
            log.warning("the local snapshot %s was created in the future; ignoring its order",
                        snapshot.name)  # fmt: skip
            return None
        return order

    def _from_the_future(self, order: Order) -> bool:
        return order[0].timestamp() > self.clock() + self.max_clock_skew_s

    def offer(self, value: bytes | None) -> str | None:
        """Take one record: the name written, or None when it is not newer or is skipped."""
        if value is None:
            self._skip("tombstone", "a tombstone (no snapshot)")
            return None
        try:
            packed = read_packed(value, key=self.key)
            order = _order(packed.snapshot.manifest, packed.snapshot.manifest.policy_id)
        except SnapshotSignatureError as exc:
            self._skip("signature", str(exc))
            return None
        except SnapshotError as exc:
            self._skip("invalid", str(exc))
            return None
        if self._from_the_future(order):
            self._skip(
                "future",
                f"{packed.snapshot.manifest.policy_id}: created at {order[0].isoformat()}, more "
                f"than snapshots.max_clock_skew_s ({self.max_clock_skew_s:g} s) ahead of this clock",
            )
            return None
        if self._current is not None and order <= self._current:
            self.stats.stale += 1
            return None
        name = self.store.write(packed.manifest, packed.files, signature=packed.signature)
        self._current = order
        self.stats.written += 1
        log.info("snapshot %s written to %s", name, self.store.directory)
        return name

    def _skip(self, reason: str, detail: str) -> None:
        self.stats.skipped[reason] += 1
        log.error("skipping a snapshot record (%s): %s", reason, detail)


def follow_snapshots(
    config: Config,
    directory: Path,
    until_idle_s: float | None = None,
    stop: threading.Event | None = None,
) -> FollowStats:
    """Mirror the snapshot topic into `directory` (see the module for which records are taken)."""
    topic = config.snapshots.kafka_topic
    if topic is None:
        raise NudgeError("snapshots.kafka_topic is not set: there is no snapshot topic to follow")
    mirror = SnapshotMirror(
        SnapshotStore(directory, config.snapshots.keep),
        key=signing_key(config.snapshots.signing_key_file),
        max_clock_skew_s=config.snapshots.max_clock_skew_s,
    )
    ensure_snapshot_topic(config.kafka, topic)
    follower = TopicFollower(config.kafka, topic, SNAPSHOT_MESSAGE_BYTES)
    stop = stop or threading.Event()
    last_message = time.monotonic()
    try:
        while not stop.is_set():
            batch = follower.poll(config.kafka.poll_timeout_ms)
            now = time.monotonic()
            if batch:
                last_message = now
            for _, value in batch:
                mirror.offer(value)
            if until_idle_s is not None and now - last_message >= until_idle_s:
                break
    finally:
        follower.close()
    return mirror.stats
