"""The long-running consumer: read, decode, join, learn, dead-letter, checkpoint, repeat.

Exactly-once learning: the models, the join state, the stats and the next offsets are saved
in one atomic checkpoint, and a restart resumes from the checkpoint's offsets, so every
message after it is processed again against the state from before it. Dead letters are
flushed before each checkpoint (at least once; keyed by source coordinates to dedupe), and
offsets are committed to the group only after the checkpoint that covers them.

The learner is given its I/O (`bandit.ports`): the record source, the dead-letter sink, an
optional snapshot sink and a monotonic clock. `streams.kafka_io` provides the Kafka ones,
`streams.memory` in-memory ones for tests of commit order, restores and crash points.
"""

from __future__ import annotations

import logging
import resource
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from bandit.atomic_dir import FileOps, probe_writable
from bandit.config import Config
from bandit.decoding import decode_message
from bandit.envelopes import Envelope, Rejected
from bandit.events import Impression, decode_event
from bandit.join import RewardJoin
from bandit.learning import OnlineLearner
from bandit.live_value import LiveValue
from bandit.ports import Clock, MessageSink, RecordSource
from bandit.read_alignment import partitions_to_pause
from bandit.snapshots import SnapshotStore, pack_snapshot, signing_key, warm_start_state
from bandit.state import LearnerState
from bandit.watermarks import EventTimeGuard, WatermarkTracker
from streams.checkpoints import Checkpoint, CheckpointStore
from streams.dead_letters import DeadLetterWriter
from streams.stats import ConsumerStats

log = logging.getLogger("nudge.consume")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How long to run: forever (None) or until this many seconds pass with no new message."""

    until_idle_s: float | None = None


def reaction_cap(config: Config) -> int:
    """How far to count each learner's reactions: the largest cold-start threshold in use."""
    return max(r.cold_start_outcomes for r in config.decisions.all_rules())


def _rss_mb() -> float:
    """This process's peak resident memory: `VmHWM` (Linux keeps `ru_maxrss` across fork and
    exec, so a consumer started by a large process would report its parent's peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class StreamLearner:
    """Owns the loop and its state; `run()` returns the final stats.

    `source` reads the impression and outcome topics, `producer` takes the dead letters,
    `snapshot_sink` (needed when `snapshots.kafka_topic` is set) the packed snapshots; the
    learner closes them when `run()` returns. `clock` paces checkpoints and idleness.
    `file_ops` are the file-system steps of checkpoints and snapshots (default: the real ones).
    """

    def __init__(
        self,
        config: Config,
        source: RecordSource,
        producer: MessageSink,
        *,
        snapshot_sink: MessageSink | None = None,
        clock: Clock = time.monotonic,
        file_ops: FileOps | None = None,
    ) -> None:
        if config.snapshots.kafka_topic is not None and snapshot_sink is None:
            raise ValueError("snapshots.kafka_topic is set: pass a snapshot_sink")
        self.config = config
        self.source = source
        self.producer = producer
        self.dead_letters = DeadLetterWriter.for_config(producer, config.kafka)
        self.snapshot_sink = snapshot_sink
        self.clock = clock
        self.rules = config.event_rules()
        self.store = CheckpointStore(config.checkpoint.directory, config.checkpoint.keep, file_ops)
        # Fail at start, in one line, on a directory this process cannot write or a checkpoint
        # directory another consumer holds; the lock is released when run() returns.
        probe_writable(config.snapshots.directory, "snapshots.directory")
        self.store.open_for_writing()
        try:
            restored = self.store.restore()  # a corrupt newest: the newest whole one, loudly
        except BaseException:
            self.store.close()
            raise
        self._stop = threading.Event()
        ckpt = restored.checkpoint
        self.sequence = ckpt.sequence if ckpt else 0
        self.offsets: dict[str, int] = dict(ckpt.offsets) if ckpt else {}
        self.stats = ConsumerStats.from_json(ckpt.stats) if ckpt else ConsumerStats()
        self.stats.starts += 1
        self.stats.checkpoint_fallbacks += len(restored.skipped)
        join_state = ckpt.join_state if ckpt else {}
        self.join = RewardJoin.from_state(
            join_state.get("join", {}), config.join, config.rewards, self._decode_saved,
            compact=True,
        )  # fmt: skip
        self.watermarks = WatermarkTracker(
            join_state.get("watermarks"), idle_s=config.join.idle_partition_s
        )
        # The recent learned decisions behind the live estimates each snapshot carries.
        self.live_value = LiveValue.from_state(
            join_state.get("live_value", {}), none_action=config.rewards.none_action
        )
        self.guard = EventTimeGuard.from_state(
            join_state.get("event_time", {}), config.join, self._decode_saved
        )
        if join_state and "event_time" not in join_state:
            # Saved before event times were checked: its watermarks may be absurd (one record
            # stamped 9999 would default every later impression). Drop them; the saved
            # messages go through the guard again, as if just read.
            self.watermarks = WatermarkTracker(idle_s=config.join.idle_partition_s)
            bounded = config.join.max_ahead_of_wall_clock_s is not None
            for envelope in self.join.reopen():
                self._admit(envelope, clock(), time.time() if bounded else None)
        # Saved messages today's rules refuse (the config changed): dead-lettered at the start
        # of the run, as fresh ones would be; the join hands out its own at the first drain.
        self._restore_rejected = list(self.guard.restore_rejected)
        self.learner = OnlineLearner(
            config.learner,
            state=self._initial_state(ckpt),
            none_action=config.rewards.none_action,
            reaction_cap=reaction_cap(config),
            pruning=config.pruning,
            separate_process=config.learner.separate_process,
        )
        self.resumed_from = ckpt.sequence if ckpt else None
        self._dirty = 0
        self._last_checkpoint = clock()
        self.final_lag: int | None = None
        self.snapshots = SnapshotStore(config.snapshots.directory, config.snapshots.keep, file_ops)
        self.published: str | None = None
        self._learned_at_snapshot = self.stats.learned
        self._consumed_at_snapshot = self.stats.consumed
        self._last_snapshot = clock()
        # The lag of the last loop, for the metrics thread (the Kafka client is not thread-safe).
        self.lags: dict[str, int] = {}
        self.paused: frozenset[str] = frozenset()  # partitions held back: ahead in event time

    def _initial_state(self, ckpt: Checkpoint | None) -> LearnerState | None:
        if ckpt is not None:
            return ckpt.learner
        warm = self.config.learner.warm_start
        if warm is None:
            return None
        log.info("no checkpoint: warm start from %s (freeze: %s)", warm.snapshot, warm.freeze)
        key = signing_key(self.config.snapshots.signing_key_file)
        return warm_start_state(warm.snapshot, warm.freeze, key=key)

    def _decode_saved(self, raw: bytes) -> Any:
        return decode_event(raw, self.rules)

    @property
    def checkpoint_age_s(self) -> float:
        """Seconds since this process last wrote a checkpoint (since its start before one)."""
        return self.clock() - self._last_checkpoint

    @property
    def snapshot_age_s(self) -> float:
        """Seconds since this process last published a snapshot (since its start before one)."""
        return self.clock() - self._last_snapshot

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Finish the current batch, checkpoint and return (SIGTERM / SIGINT)."""
        del frame
        if signum is not None:
            log.info("signal %s: draining and checkpointing", signum)
        self._stop.set()

    # ---- the loop -----------------------------------------------------------------------

    def run(self, options: RunOptions) -> ConsumerStats:
        kcfg = self.config.kafka
        try:
            for item in self._restore_rejected:
                self._dead_letter(item)
            self.source.assign(self.offsets)
            log.info(
                "consuming %s from %s (%s)",
                [kcfg.impressions_topic, kcfg.outcomes_topic],
                kcfg.bootstrap_servers,
                f"resumed from checkpoint {self.resumed_from}"
                if self.resumed_from
                else "no checkpoint: from the start",
            )
            if self._loop(options):
                # The input of a bounded run ended: close every open window (the default
                # outcome). Not when stopped: outcomes still to come must find their windows.
                self._pass_on(*self.guard.close())
                self.join.close_all()
                self._settle()
            self.checkpoint(publish=True)
            self.final_lag = sum(self.source.lag_by_partition().values())
        finally:
            self.producer.close()
            if self.snapshot_sink is not None:
                self.snapshot_sink.close()
            self.source.close()
            self.learner.close()
            self.store.close()  # the directory's lock
        return self.stats

    def _loop(self, options: RunOptions) -> bool:
        """Read, learn and checkpoint until stopped (False) or idle for `until_idle_s` (True)."""
        started = last_message = last_report = self.clock()
        reported = (0, 0)
        while not self._stop.is_set():
            batch = self.source.poll(self.config.kafka.poll_timeout_ms)
            now = self.clock()
            if batch:
                last_message = now
                self._process(batch)
            lags = self.lags = self.source.lag_by_partition()
            self._align(lags)
            caught_up = {p for p, lag in lags.items() if lag == 0}
            self.join.advance(
                self.watermarks.current(self.source.partition_keys, caught_up, self.clock())
            )
            self._settle()
            if self._snapshot_due(now, caught_up=len(caught_up) == len(lags)):
                self.checkpoint(publish=True)
            elif self._dirty and (
                self._dirty >= self.config.checkpoint.every_events
                or now - self._last_checkpoint >= self.config.checkpoint.every_s
            ):
                self.checkpoint()
            if now - last_report >= self.config.consumer.progress_every_s:
                self._report(now - last_report, reported)
                reported = (self.stats.consumed, self.stats.learned)
                last_report = now
            if options.until_idle_s is not None and now - last_message >= options.until_idle_s:
                log.info("idle for %.1fs after %.1fs: finishing", now - last_message, now - started)
                return True
        return False

    def _align(self, lags: dict[str, int]) -> None:
        """Pause the partitions running ahead in event time (`join.max_read_ahead_s`)."""
        ahead = self.config.join.max_read_ahead_s
        if ahead is None:
            return
        paused = partitions_to_pause(self.watermarks.highest, lags, ahead)
        if paused != self.paused:
            self.source.pause_only(paused)
            self.paused = paused
            self.stats.read_pauses += len(paused)

    def _process(self, batch: list[tuple[Any, bytes | None]]) -> None:
        now = self.clock()  # one reading per batch: it only paces idleness
        wall = time.time() if self.config.join.max_ahead_of_wall_clock_s is not None else None
        stats, offsets, rules = self.stats, self.offsets, self.rules
        for source, raw in batch:
            stats.consumed += 1
            offsets[source.partition_key] = source.offset + 1
            item = decode_message(raw, source, rules)
            if isinstance(item, Rejected):
                self._dead_letter(item)
                continue
            if type(item.event) is Impression:
                stats.impressions += 1
            else:
                stats.outcomes += 1
            self._admit(item, now, wall)
        self._dirty += len(batch)

    def _admit(self, item: Envelope[Any], now: float, wall: float | None = None) -> None:
        """Through the event-time guard: only plausible event times reach the watermarks and
        the join; the guard may hold a record back, or let held ones through."""
        passed, refused = self.guard.offer(item, wall)
        self.watermarks.seen(item.source.partition_key, now)
        self._pass_on(passed, refused, now)

    def _pass_on(
        self, passed: list[Envelope[Any]], refused: list[Rejected], now: float | None = None
    ) -> None:
        now = self.clock() if now is None else now
        for envelope in passed:
            self.watermarks.observe(envelope.source.partition_key, envelope.event.ts, now)
            self.join.add(envelope)
        for item in refused:
            self._dead_letter(item)

    def _settle(self) -> None:
        joined, rejected = self.join.drain()
        if joined and not self._dirty:
            # Windows closed by the watermark alone still need saving (within `every_s`);
            # `every_events` counts messages read, as the offsets move with those.
            self._dirty = 1
        for event in joined:
            self.learner.learn(event)
            self.stats.record_learned(event)
            self.live_value.add(event)
        for item in rejected:
            self._dead_letter(item)

    def _dead_letter(self, item: Rejected) -> None:
        self.dead_letters.send(item)  # bounded, retried; raises naming the message if it cannot
        self.stats.record_dead_letter(item.reason)

    # ---- checkpoints and progress -------------------------------------------------------

    def _snapshot_due(self, now: float, caught_up: bool) -> bool:
        """Publish after `every_events` learned; or, with anything new consumed, after
        `every_s`, or once caught up with the topics (so deciders get the newest soon),
        never more often than `min_interval_s`."""
        cfg = self.config.snapshots
        if self.stats.learned - self._learned_at_snapshot >= cfg.every_events:
            return True
        if (
            self.stats.consumed == self._consumed_at_snapshot
            and self.stats.learned == self._learned_at_snapshot
        ):
            return False  # nothing read and nothing learned (closing windows also learns)
        elapsed = now - self._last_snapshot
        return elapsed >= cfg.every_s or (caught_up and elapsed >= cfg.min_interval_s)

    def checkpoint(self, publish: bool = False) -> None:
        """Save everything atomically, then commit the offsets it covers to the group;
        with `publish`, also export that state as a policy snapshot for decision services."""
        self.dead_letters.flush()  # dead letters up to here are durable before offsets move
        self.sequence += 1
        self.stats.checkpoints += 1
        state = self.learner.state()
        ckpt = Checkpoint(
            sequence=self.sequence,
            offsets=dict(self.offsets),
            join_state={
                "join": self.join.state(),
                "watermarks": self.watermarks.highest,
                "event_time": self.guard.state(),
                "live_value": self.live_value.state(),
            },
            stats=self.stats.to_json(),
            learner=state,
            vw_arguments=self.config.learner.vw_arguments(),
        )
        self.store.save(ckpt)
        self.source.commit(self.offsets)
        self._dirty = 0
        self._last_checkpoint = self.clock()
        if publish:
            self._publish(state)

    def _publish(self, state: LearnerState) -> None:
        self.published = self.snapshots.publish(
            self.config, state, dict(self.offsets), self.stats.learned,
            after_sequence=self.stats.snapshot_sequence, live_value=self.live_value.estimates(),
        )  # fmt: skip
        self.stats.snapshot_sequence = int(self.published.removeprefix("snap-"))
        topic = self.config.snapshots.kafka_topic
        if topic is not None and self.snapshot_sink is not None:
            self.snapshot_sink.send(
                topic,
                key=self.config.decisions.policy_name.encode(),
                value=pack_snapshot(self.snapshots.directory / self.published),
            )
            self.snapshot_sink.flush()
        self.stats.snapshots += 1
        self._learned_at_snapshot = self.stats.learned
        self._consumed_at_snapshot = self.stats.consumed
        self._last_snapshot = self.clock()
        log.info("published snapshot %s (learned=%d)", self.published, self.stats.learned)

    def _report(self, seconds: float, before: tuple[int, int]) -> None:
        s = self.stats
        lag = sum(self.source.lag_by_partition().values())
        log.info(
            "consumed=%d (%.0f/s) impressions=%d outcomes=%d learned=%d (%.0f/s) dead_lettered=%d "
            "pending=%d waiting=%d lag=%d checkpoints=%d snapshot=%s rss=%.0fMB "
            "held=%d closed_early=%d state_full=%d implausible=%d paused=%s",
            s.consumed, (s.consumed - before[0]) / seconds, s.impressions, s.outcomes, s.learned,
            (s.learned - before[1]) / seconds, s.dead_lettered, self.join.pending, self.join.waiting,
            lag, s.checkpoints, self.published, _rss_mb(), self.guard.held, s.closed_early,
            s.dead_letters_by_reason["join_state_full"],
            s.dead_letters_by_reason["implausible_event_time"], sorted(self.paused) or "-",
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """The stats JSON: cumulative counts plus the live state of this process."""
        data = self.stats.to_json()
        data.update(
            pending=self.join.pending,
            waiting=self.join.waiting,
            pending_bytes=self.join.pending_bytes,
            waiting_bytes=self.join.waiting_bytes,
            held=self.guard.held,
            learned_ids=self.join.learned_ids,
            lag=self.final_lag,
            checkpoint_sequence=self.sequence,
            snapshot=self.published,
            resumed_from=self.resumed_from,
            vw_arguments=self.config.learner.vw_arguments(),
            max_rss_mb=round(_rss_mb(), 1),
        )
        return data


def install_signal_handlers(learner: StreamLearner) -> None:
    """SIGTERM and SIGINT drain the current batch and checkpoint before exit."""
    signal.signal(signal.SIGTERM, learner.request_stop)
    signal.signal(signal.SIGINT, learner.request_stop)
