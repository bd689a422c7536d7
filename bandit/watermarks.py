"""Event-time progress across partitions: how far every input has certainly got, and which
event times are plausible enough to count at all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import Any

from bandit.config import JoinConfig
from bandit.envelopes import Envelope, Rejected
from bandit.events import Event, Reason, timestamp_text
from bandit.saved import envelope_state, restore_envelope

_NEG_INF = float("-inf")
# 0001-01-01T00:00:00Z, the earliest time `timestamp_text` can show: a valid RFC 3339 time on
# that day with an offset east of UTC (+01:00) decodes to a time before it.
_YEAR_1 = -62_135_596_800.0


class WatermarkTracker:
    """Highest event time seen per partition; the watermark is the slowest busy partition's.

    A partition not read yet holds the watermark back entirely (its first records may be old).
    A partition the consumer has fully read (no lag) and that has had no new record for
    `idle_s` seconds of wall time is idle: it is left out, so a quiet topic does not stall
    expiry. The wait matters when producers write two topics at once: a partition that is
    momentarily caught up may still have records in flight, and event time can run far
    ahead of wall time (replays, simulations). If every partition is idle, the highest time
    seen anywhere is the watermark.
    """

    def __init__(self, highest: dict[str, float] | None = None, idle_s: float = 0.0) -> None:
        self.highest: dict[str, float] = dict(highest or {})
        self.idle_s = idle_s
        self._last_record: dict[str, float] = {}

    def observe(self, partition: str, event_time: float, now: float = 0.0) -> None:
        """Record an event of `partition` read at wall time `now` (monotonic seconds)."""
        self._last_record[partition] = now
        if event_time > self.highest.get(partition, float("-inf")):
            self.highest[partition] = event_time

    def seen(self, partition: str, now: float = 0.0) -> None:
        """A record of `partition` was read at `now` but its event time does not count (yet)."""
        self._last_record[partition] = now

    def current(self, partitions: Iterable[str], caught_up: Set[str], now: float = 0.0) -> float:
        """The watermark over `partitions`, leaving out those caught up and idle at `now`."""
        unknown = float("-inf")
        partitions = list(partitions)
        for p in partitions:  # first seen now: it is idle only after idle_s without records
            self._last_record.setdefault(p, now)
        busy = [
            self.highest.get(p, unknown)
            for p in partitions
            if p not in caught_up or now - self._last_record.get(p, -1e18) < self.idle_s
        ]
        if busy:
            return min(busy)
        return max(self.highest.values(), default=unknown)


@dataclass(slots=True)
class _Held:
    """A record whose time is not plausible yet, waiting for its partition's later records."""

    envelope: Envelope[Any]
    seq: int
    agree: int = 0  # later records of its partition consistent with its time
    disagree: int = 0  # later records of its partition far behind it (or far past it)


class EventTimeGuard:
    """Lets through records whose event time is plausible; holds or dead-letters the rest.

    Each partition has its own reference: the highest event time let through on it (unknown
    at first). Partitions are judged apart because they legitimately run apart in event time:
    catching up on a backlog, Kafka fills a poll by bytes, so a topic of small records reads
    hours of event time ahead of one of large records. A record is
    - too old, and dead-lettered at once, when more than `max_age_s` behind the reference
      (the join could no longer tell whether it was learned before, nor match it);
    - plausible, and let through at once, when at most `max_future_skew_s` ahead of it;
    - otherwise held. Each later record of the same partition votes on it: it agrees when
      its time is between `max_future_skew_s` before and `max_age_s` after the held one.
      The held record is believed (the reference jumps to it) once `confirm_records - 1`
      later records agree and more agree than disagree: a genuine gap in traffic, or the
      first records of a stream; it is dead-lettered once `confirm_records` disagree and at
      least as many disagree as agree: a lone clock far off.
    When a reference moves, every held record of that partition within reach is let through,
    in arrival order. Records the guard holds never reach the watermark or the join. With
    `max_ahead_of_wall_clock_s` (off by default: replays and simulations run event time
    ahead of the wall clock) a record that far ahead of the caller's wall time is
    dead-lettered at once. Pure: the wall time, when used, is passed in.
    """

    def __init__(
        self,
        max_future_skew_s: float,
        confirm_records: int,
        max_age_s: float,
        max_ahead_of_wall_clock_s: float | None = None,
    ) -> None:
        if max_future_skew_s <= 0 or max_age_s <= 0 or confirm_records < 2:
            raise ValueError(
                f"need max_future_skew_s > 0, max_age_s > 0 and confirm_records >= 2, got "
                f"{max_future_skew_s}, {max_age_s}, {confirm_records}"
            )
        self.max_future_skew_s = max_future_skew_s
        self.confirm_records = confirm_records
        self.max_age_s = max_age_s
        self.max_ahead_of_wall_clock_s = max_ahead_of_wall_clock_s
        self._references: dict[str, float] = {}
        self._held: dict[str, list[_Held]] = {}
        # Held records a restore found refused by the current rules, for the caller to reject.
        self.restore_rejected: list[Rejected] = []
        self._seq = 0

    @classmethod
    def for_join(cls, config: JoinConfig) -> EventTimeGuard:
        """The guard the `join` section configures."""
        return cls(
            config.max_future_skew_s,
            config.jump_confirm_records,
            config.max_event_age_s,
            config.max_ahead_of_wall_clock_s,
        )

    @property
    def reference(self) -> float:
        """The highest reference of any partition (-inf before anything was let through)."""
        return max(self._references.values(), default=_NEG_INF)

    def reference_of(self, partition: str) -> float:
        """The highest event time let through on `partition` (-inf before any)."""
        return self._references.get(partition, _NEG_INF)

    @property
    def held(self) -> int:
        """Records held until their partition confirms or refutes their time."""
        return sum(len(h) for h in self._held.values())

    def offer(
        self, envelope: Envelope[Any], wall_time: float | None = None
    ) -> tuple[list[Envelope[Any]], list[Rejected]]:
        """Offer one record: the records to pass on now (in arrival order) and the rejected."""
        ts = envelope.event.ts
        rejected: list[Rejected] = []
        bound = self.max_ahead_of_wall_clock_s
        if bound is not None and wall_time is not None and ts > wall_time + bound:
            ahead = ts - wall_time
            return [], [_implausible(envelope, f"{ahead:.0f}s ahead of the wall clock")]
        partition = envelope.source.partition_key
        reference = self._references.get(partition, _NEG_INF)
        if ts < reference - self.max_age_s:
            return [], [self._too_old(envelope, reference)]
        held = self._held.get(partition)
        if not held and ts <= reference + self.max_future_skew_s:
            # The common case, nothing held on the partition: let it through at once (what
            # the general path below does then, without its votes and releases).
            self._seq += 1
            if ts > reference:
                self._references[partition] = ts
            return [envelope], []
        if held is None:
            held = self._held[partition] = []
        for h in held:
            lag = h.envelope.event.ts - ts
            if -self.max_age_s <= lag <= self.max_future_skew_s:
                h.agree += 1
            else:
                h.disagree += 1
        self._seq += 1
        released: list[_Held] = []
        if ts <= reference + self.max_future_skew_s:
            self._references[partition] = max(reference, ts)
            released.append(_Held(envelope, self._seq))
        else:
            held.append(_Held(envelope, self._seq))
        need = self.confirm_records - 1
        for h in list(held):
            if h.agree >= need and h.agree > h.disagree:
                confirmed = h.envelope.event.ts
                self._references[partition] = max(self.reference_of(partition), confirmed)
        released += self._release(partition, rejected)
        for h in list(held):
            if h.disagree >= self.confirm_records and h.disagree >= h.agree:
                held.remove(h)
                rejected.append(
                    _implausible(
                        h.envelope,
                        f"{h.disagree} later records of {partition} are more than "
                        f"{self.max_future_skew_s:.0f}s behind it (or {self.max_age_s:.0f}s "
                        f"past it), {h.agree} agree",
                    )
                )
        released.sort(key=lambda h: h.seq)
        return [h.envelope for h in released], rejected

    def close(self) -> tuple[list[Envelope[Any]], list[Rejected]]:
        """End of a bounded input, where no later record will vote: a held record at most
        `max_age_s` ahead of its partition's reference is believed (sparse traffic: hours
        between records), in arrival order; one further ahead (a clock years off) is
        dead-lettered. A partition with no reference yet takes it from its held record most
        agreed with."""
        rejected: list[Rejected] = []
        released: list[_Held] = []
        for partition, waiting in self._held.items():
            if self.reference_of(partition) == _NEG_INF and waiting:
                best = max(waiting, key=lambda h: (h.agree - h.disagree, -h.seq))
                self._references[partition] = best.envelope.event.ts
            released += self._release(partition, rejected, reach=self.max_age_s)
        for held in self._held.values():
            for h in held:
                rejected.append(
                    _implausible(
                        h.envelope,
                        f"more than {self.max_age_s:.0f}s ahead of the event times before it "
                        f"when the input ended; {h.agree} later records agreed",
                    )
                )
            held.clear()
        released.sort(key=lambda h: h.seq)
        return [h.envelope for h in released], rejected

    def _release(
        self, partition: str, rejected: list[Rejected], reach: float | None = None
    ) -> list[_Held]:
        """Let through every held record of `partition` within `reach` (default
        `max_future_skew_s`) ahead of its reference, which they may move further; dead-letter
        those now too far behind it."""
        reach = self.max_future_skew_s if reach is None else reach
        released: list[_Held] = []
        held = self._held.get(partition, [])
        moved = bool(held)
        while moved:
            moved = False
            for h in list(held):
                ts, reference = h.envelope.event.ts, self.reference_of(partition)
                if ts < reference - self.max_age_s:
                    held.remove(h)
                    rejected.append(self._too_old(h.envelope, reference))
                elif ts <= reference + reach:
                    held.remove(h)
                    released.append(h)
                    if ts > reference:
                        self._references[partition], moved = ts, True
        return released

    def _too_old(self, envelope: Envelope[Any], reference: float) -> Rejected:
        behind = reference - envelope.event.ts
        return _implausible(
            envelope,
            f"{behind:.0f}s behind the newest plausible event time of "
            f"{envelope.source.partition_key}; events more than {self.max_age_s:.0f}s behind "
            "are no longer joined",
        )

    # ---- state --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-ready: the reference and the held records (bytes, source, votes)."""
        return {
            "references": dict(self._references),
            "held": [
                [envelope_state(h.envelope), h.seq, h.agree, h.disagree]
                for held in self._held.values()
                for h in held
            ],
            "seq": self._seq,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], config: JoinConfig, decode: Callable[[bytes], Event]
    ) -> EventTimeGuard:
        """Rebuild a guard saved by `state()` (an empty state: a fresh guard)."""
        guard = cls.for_join(config)
        # A guard saved with one reference for all partitions (before they were judged apart)
        # restarts with none: each partition's next records set its own.
        guard._references = {k: float(v) for k, v in state.get("references", {}).items()}
        guard._seq = int(state.get("seq", 0))
        for item, seq, agree, disagree in state.get("held", []):
            env = restore_envelope(item, decode)
            if isinstance(env, Rejected):  # refused by today's rules
                guard.restore_rejected.append(env)
                continue
            held = guard._held.setdefault(env.source.partition_key, [])
            held.append(_Held(env, int(seq), int(agree), int(disagree)))
        return guard


def _implausible(envelope: Envelope[Any], why: str) -> Rejected:
    ts = envelope.event.ts
    return Rejected(
        Reason.IMPLAUSIBLE_EVENT_TIME.value,
        f"event time {timestamp_text(ts) if _YEAR_1 <= ts < 2.5e11 else ts}: {why}",
        envelope.raw,
        envelope.source,
    )
