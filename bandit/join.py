"""The reward join: impressions meet their outcomes in event time, never on the wall clock.

A pure state machine driven by the events and by the event-time watermark the caller
advances, so streaming and replay get identical results from the same input:
- an outcome may arrive before or after its impression; it counts if its timestamp is
  within `window_s` of the impression's;
- mode `first`: the first outcome in the window settles the reward at once;
  mode `combine`: the window is waited out and the earliest label plus the sum of all
  downstream values make the reward;
- when the watermark (highest event time minus `allowed_lateness_s`) passes the end of a
  window with no outcome, the impression gets `default_outcome`;
- late, duplicate, mismatched and unmatched outcomes and duplicate impressions are rejected
  with a reason (they become dead letters), so nothing is learned twice or silently lost;
- learned impression ids are remembered for `max_event_age_s` of event time (`LearnedIds`),
  so an impression re-sent after its window closed is still a duplicate;
- the state is bounded: past `max_pending_impressions` / `max_pending_bytes` the oldest
  pending impression is closed early (learned with what it has: the default outcome unless an
  outcome arrived), past `max_waiting_outcomes` / `max_waiting_bytes` the oldest waiting
  outcome is rejected (`join_state_full`).

Plausibility of event times is checked before the join (`bandit.watermarks.EventTimeGuard`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from bandit.config import JoinConfig, RewardConfig
from bandit.envelopes import Envelope, Rejected, Source
from bandit.errors import CheckpointError
from bandit.events import Event, Impression, Outcome, OutcomeLabel, Reason
from bandit.learned_ids import LearnedIds
from bandit.saved import envelope_state, message_state, restore_envelope
from bandit.value_types import value_type
from bandit.watermarks import EventTimeGuard

_NEG_INF = float("-inf")


@value_type
class JoinedEvent:
    """An impression with the outcome the join settled on and the reward it is worth."""

    impression: Impression
    label: OutcomeLabel
    value: float | None
    reward: float
    defaulted: bool  # True when no outcome arrived in the window
    closed_early: bool = False  # True when closed before its window ended: the state was full


_TS = attrgetter("ts")

# With a decoder, this many pending impressions keep their decoded event too (decoding again
# when a window settles cost as much as the first decode); past it only their bytes, about a
# seventh of the memory. Aligned reading keeps the pending few, so most never decode twice.
KEEP_DECODED = 2048


@dataclass(slots=True)
class _Pending:
    """An open window. With a decoder the impression may be kept as its bytes only
    (`impression` None), decoded again when it settles."""

    event_id: str
    ts: float
    trigger: str
    raw: bytes
    source: Source
    impression: Impression | None
    outcomes: list[Envelope[Outcome]] = field(default_factory=list)

    @property
    def size(self) -> int:
        if not self.outcomes:  # most windows: no generator for an empty list
            return len(self.raw)
        return len(self.raw) + sum(len(o.raw) for o in self.outcomes)


@value_type
class _Closed:
    deadline: float
    by_outcome: bool
    early: bool = False  # closed before its deadline because the state was full


class RewardJoin:
    """Joins impressions and outcomes into rewards; `drain()` hands out what is settled."""

    def __init__(
        self,
        config: JoinConfig,
        rewards: RewardConfig,
        decode: Callable[[bytes], Event] | None = None,
        keep_decoded: int = KEEP_DECODED,
    ) -> None:
        """`decode`, when given, turns saved bytes back into events: pending impressions past
        the first `keep_decoded` are then kept as bytes only and decoded again when they
        settle."""
        self.config = config
        self.rewards = rewards
        self._decode = decode
        self._keep_decoded = keep_decoded
        self._decoded = 0  # pending impressions holding their decoded event (with a decoder)
        self._window = config.window_s
        self._unmatched_wait = config.unmatched_wait_s or config.window_s
        self._retention = config.window_s + config.allowed_lateness_s
        self._pending: dict[str, _Pending] = {}
        self._waiting: dict[str, list[Envelope[Outcome]]] = {}
        self._closed: dict[str, _Closed] = {}
        # (window end, arrival number, id): the oldest first, equal ends in arrival order
        self._pending_heap: list[tuple[float, int, str]] = []
        self._arrivals = 0
        self._waiting_heap: list[tuple[float, str]] = []
        self._closed_heap: list[tuple[float, str]] = []
        self._learned = LearnedIds(config.max_event_age_s, config.max_learned_ids)
        self.pending_bytes = 0
        self.waiting_bytes = 0
        self._waiting_count = 0
        self.watermark = _NEG_INF
        self._joined: list[JoinedEvent] = []
        self._rejected: list[Rejected] = []

    # ---- feeding ------------------------------------------------------------------------

    def add(self, envelope: Envelope[Any]) -> None:
        """Offer one decoded event (impression or outcome)."""
        if isinstance(envelope.event, Impression):
            self._add_impression(envelope)
        else:
            self._add_outcome(envelope)

    def _add_impression(self, env: Envelope[Impression]) -> None:
        imp = env.event
        if imp.event_id in self._pending or imp.event_id in self._closed:
            self._reject(env, Reason.DUPLICATE_IMPRESSION, f"impression {imp.event_id} seen before")
            return
        if imp.event_id in self._learned:
            self._reject(
                env, Reason.DUPLICATE_IMPRESSION, f"impression {imp.event_id} was learned before"
            )
            return
        if imp.ts < self._learned.floor:
            self._reject(
                env,
                Reason.IMPLAUSIBLE_EVENT_TIME,
                f"impression {imp.event_id} is older than the learned ids reach back "
                f"({self._learned.floor - imp.ts:.0f}s before them): it may have been learned",
            )
            return
        kept: Impression | None = imp
        if self._decode is not None:
            if self._decoded < self._keep_decoded:
                self._decoded += 1
            else:
                kept = None
        pending = _Pending(imp.event_id, imp.ts, imp.trigger, env.raw, env.source, kept)
        deadline = imp.ts + self._window
        self._pending[imp.event_id] = pending
        self.pending_bytes += len(env.raw)
        for outcome in self._waiting.pop(imp.event_id, []):
            self._unwait(outcome)
            if imp.event_id in self._pending:
                self._attach(pending, outcome)
            else:  # settled by an earlier outcome: the rest are duplicates or late
                self._add_outcome(outcome)
        if imp.event_id in self._pending:
            if deadline <= self.watermark:
                self._settle(pending)
            else:
                self._arrivals += 1
                heapq.heappush(self._pending_heap, (deadline, self._arrivals, imp.event_id))
        self._limit_pending()

    def _add_outcome(self, env: Envelope[Outcome]) -> None:
        out = env.event
        pending = self._pending.get(out.event_id)
        if pending is not None:
            self._attach(pending, env)
            self._limit_pending()  # mode combine keeps the outcome's bytes in the window
            return
        closed = self._closed.get(out.event_id)
        if closed is not None:
            if closed.by_outcome and out.ts <= closed.deadline:
                self._reject(
                    env, Reason.DUPLICATE_OUTCOME, f"{out.event_id} already has its outcome"
                )
            elif closed.early and out.ts <= closed.deadline:
                self._reject(
                    env,
                    Reason.JOIN_STATE_FULL,
                    f"window of {out.event_id} was closed early: pending impressions at the cap",
                )
            else:
                self._reject(env, Reason.LATE_OUTCOME, f"window of {out.event_id} already closed")
            return
        if out.event_id in self._learned:  # closed so long ago that only the learned ids know
            self._reject(
                env, Reason.LATE_OUTCOME, f"{out.event_id} was learned long before: window closed"
            )
            return
        waiting = self._waiting.setdefault(out.event_id, [])
        if not waiting:
            heapq.heappush(self._waiting_heap, (out.ts + self._unmatched_wait, out.event_id))
        waiting.append(env)
        self._waiting_count += 1
        self.waiting_bytes += len(env.raw)
        self._limit_waiting()

    def _unwait(self, env: Envelope[Outcome]) -> None:
        self._waiting_count -= 1
        self.waiting_bytes -= len(env.raw)

    def _attach(self, pending: _Pending, env: Envelope[Outcome]) -> None:
        out = env.event
        if out.trigger != pending.trigger:
            self._reject(
                env,
                Reason.TRIGGER_MISMATCH,
                f"outcome trigger {out.trigger!r}, impression {pending.trigger!r}",
            )
            return
        if out.ts > pending.ts + self._window:
            self._reject(
                env,
                Reason.LATE_OUTCOME,
                f"outcome {out.ts - pending.ts:.1f}s after its impression; "
                f"window is {self._window}s",
            )
            return
        if pending.outcomes and any(o.raw == env.raw for o in pending.outcomes):
            self._reject(env, Reason.DUPLICATE_OUTCOME, f"{out.event_id}: same outcome twice")
            return
        pending.outcomes.append(env)
        self.pending_bytes += len(env.raw)
        if self.config.mode == "first":
            self._settle(pending)

    # ---- bounds -------------------------------------------------------------------------

    def _limit_pending(self) -> None:
        """Past a cap, close the oldest pending impressions early with what they have."""
        cfg = self.config
        while self._pending and (
            len(self._pending) > cfg.max_pending_impressions
            or self.pending_bytes > cfg.max_pending_bytes
        ):
            _, _, event_id = heapq.heappop(self._pending_heap)
            pending = self._pending.get(event_id)
            if pending is not None:
                self._settle(pending, early=True)

    def _limit_waiting(self) -> None:
        """Past a cap, reject the outcomes that have waited longest (`join_state_full`)."""
        cfg = self.config
        while self._waiting and (
            self._waiting_count > cfg.max_waiting_outcomes
            or self.waiting_bytes > cfg.max_waiting_bytes
        ):
            _, event_id = heapq.heappop(self._waiting_heap)
            for env in self._waiting.pop(event_id, []):
                self._unwait(env)
                self._reject(
                    env,
                    Reason.JOIN_STATE_FULL,
                    f"waiting outcomes at the cap ({cfg.max_waiting_outcomes} outcomes, "
                    f"{cfg.max_waiting_bytes} bytes): the longest waiting goes first",
                )

    # ---- settling -----------------------------------------------------------------------

    def _settle(self, pending: _Pending, early: bool = False) -> None:
        del self._pending[pending.event_id]
        if self._decode is not None and pending.impression is not None:
            self._decoded -= 1
        self.pending_bytes -= pending.size
        deadline = pending.ts + self._window
        # In mode combine the watermark always closes the window, so a later outcome is late.
        by_outcome = bool(pending.outcomes) and self.config.mode == "first"
        self._closed[pending.event_id] = _Closed(deadline, by_outcome=by_outcome, early=early)
        heapq.heappush(self._closed_heap, (deadline + self._retention, pending.event_id))
        self._limit_closed()
        self._learned.add(pending.event_id, pending.ts)
        self._joined.append(self._reward(pending, early))

    def _limit_closed(self) -> None:
        """Past `max_closed_windows`, forget the windows whose retention ends first: with one
        timestamp for all (a burst) the watermark never ends any. A later outcome for a
        forgotten window is still known late through the learned ids."""
        while len(self._closed) > self.config.max_closed_windows and self._closed_heap:
            _, event_id = heapq.heappop(self._closed_heap)
            self._closed.pop(event_id, None)

    def _impression(self, pending: _Pending) -> Impression:
        if pending.impression is not None:
            return pending.impression
        event = self._decode(pending.raw) if self._decode is not None else None
        if not isinstance(event, Impression):
            raise CheckpointError(f"pending {pending.event_id} no longer decodes to an impression")
        return event

    def _reward(self, pending: _Pending, early: bool) -> JoinedEvent:
        imp = self._impression(pending)
        if not pending.outcomes:
            label = self.config.default_outcome
            reward = self.rewards.of(label, None, imp.chosen)
            return JoinedEvent(imp, label, None, reward, defaulted=True, closed_early=early)
        if len(pending.outcomes) == 1:  # mode first: always one
            first = pending.outcomes[0].event
            label = first.label
            value = None if first.value is None else 0 + first.value  # what sum() of it gives
        else:
            outcomes = sorted((o.event for o in pending.outcomes), key=_TS)
            values = [o.value for o in outcomes if o.value is not None]
            value = sum(values) if values else None
            label = outcomes[0].label
        reward = self.rewards.of(label, value, imp.chosen)
        return JoinedEvent(imp, label, value, reward, defaulted=False, closed_early=early)

    def advance(self, event_time: float) -> None:
        """Move the watermark to `event_time - allowed_lateness_s` and close what it passes."""
        watermark = event_time - self.config.allowed_lateness_s
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        self._expire(watermark)

    def _expire(self, watermark: float) -> None:
        while self._pending_heap and self._pending_heap[0][0] <= watermark:
            _, _, event_id = heapq.heappop(self._pending_heap)
            pending = self._pending.get(event_id)
            if pending is not None:
                self._settle(pending)
        while self._waiting_heap and self._waiting_heap[0][0] <= watermark:
            _, event_id = heapq.heappop(self._waiting_heap)
            for env in self._waiting.pop(event_id, []):
                self._unwait(env)
                self._reject(env, Reason.UNMATCHED_OUTCOME, f"no impression {event_id} arrived")
        while self._closed_heap and self._closed_heap[0][0] <= watermark:
            _, event_id = heapq.heappop(self._closed_heap)
            self._closed.pop(event_id, None)
        # Ids the closed windows still cover need not be kept by the learned ids under their cap.
        self._learned.expire(watermark, keep_after=watermark - self._window - self._retention)

    def close_all(self) -> None:
        """End of a bounded input: settle every open window and reject every waiting outcome."""
        while self._pending:
            self._settle(next(iter(self._pending.values())))
        for event_id in list(self._waiting):
            for env in self._waiting.pop(event_id):
                self._unwait(env)
                self._reject(env, Reason.UNMATCHED_OUTCOME, f"no impression {event_id} arrived")
        self._pending_heap.clear()
        self._waiting_heap.clear()

    def _reject(self, env: Envelope[Any], reason: Reason, detail: str) -> None:
        self._rejected.append(Rejected(reason.value, detail, env.raw, env.source))

    def drain(self) -> tuple[list[JoinedEvent], list[Rejected]]:
        """Everything settled or rejected since the last drain, in the order it happened."""
        joined, rejected = self._joined, self._rejected
        self._joined, self._rejected = [], []
        return joined, rejected

    # ---- state --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Impressions waiting for their window to close."""
        return len(self._pending)

    @property
    def waiting(self) -> int:
        """Outcomes waiting for their impression."""
        return self._waiting_count

    @property
    def learned_ids(self) -> int:
        """Learned impression ids remembered (to refuse a re-sent impression)."""
        return len(self._learned)

    def state(self) -> dict[str, Any]:
        """JSON-ready state for a checkpoint; call after `drain()` so nothing is in flight.

        Learned ids are saved under `learned_ids` once there are any (an older checkpoint
        without them restores an empty record)."""
        if self._joined or self._rejected:
            raise CheckpointError("drain() the join before saving its state")
        state: dict[str, Any] = {
            "watermark": self.watermark if self.watermark != _NEG_INF else None,
            "pending": [
                {
                    "impression": message_state(p.raw, p.source),
                    "outcomes": [envelope_state(o) for o in p.outcomes],
                }
                for p in self._pending.values()
            ],
            "waiting": [envelope_state(o) for outs in self._waiting.values() for o in outs],
            "closed": [
                [k, c.deadline, c.by_outcome, *([True] if c.early else [])]
                for k, c in self._closed.items()
            ],
        }
        if len(self._learned) or self._learned.floor != _NEG_INF:
            state["learned_ids"] = self._learned.state()
        return state

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        config: JoinConfig,
        rewards: RewardConfig,
        decode: Callable[[bytes], Event],
        *,
        compact: bool = False,
    ) -> RewardJoin:
        """Rebuild a join saved by `state()`, re-decoding the saved messages with `decode`;
        `compact`: keep pending impressions as bytes, decoded with `decode` when they settle."""
        join = cls(config, rewards, decode if compact else None)
        wm = state.get("watermark")
        join.watermark = _NEG_INF if wm is None else float(wm)
        for event_id, deadline, by_outcome, *early in state.get("closed", []):
            join._closed[event_id] = _Closed(float(deadline), bool(by_outcome), bool(early))
            heapq.heappush(join._closed_heap, (float(deadline) + join._retention, event_id))
        if "learned_ids" in state:
            join._learned = LearnedIds.from_state(
                state["learned_ids"], config.max_event_age_s, config.max_learned_ids
            )
        orphans: list[Envelope[Any]] = []
        for item in state.get("pending", []):
            imp = restore_envelope(item["impression"], decode)
            outcomes = join._restored(item["outcomes"], decode)
            if isinstance(imp, Rejected):  # refused by today's rules: its outcomes wait alone
                join._rejected.append(imp)
                orphans += outcomes
                continue
            ev = imp.event
            kept = None if compact else ev
            pending = _Pending(ev.event_id, ev.ts, ev.trigger, imp.raw, imp.source, kept, outcomes)
            join._pending[ev.event_id] = pending
            join.pending_bytes += pending.size
            join._arrivals += 1
            heapq.heappush(join._pending_heap, (ev.ts + join._window, join._arrivals, ev.event_id))
        for env in [*join._restored(state.get("waiting", []), decode), *orphans]:
            waiting = join._waiting.setdefault(env.event.event_id, [])
            if not waiting:
                heapq.heappush(
                    join._waiting_heap, (env.event.ts + join._unmatched_wait, env.event.event_id)
                )
            waiting.append(env)
            join._waiting_count += 1
            join.waiting_bytes += len(env.raw)
        return join

    def _restored(
        self, items: list[dict[str, Any]], decode: Callable[[bytes], Event]
    ) -> list[Envelope[Any]]:
        """Saved messages decoded again; those today's rules refuse go to the rejected."""
        envelopes: list[Envelope[Any]] = []
        for item in items:
            restored = restore_envelope(item, decode)
            if isinstance(restored, Rejected):
                self._rejected.append(restored)
            else:
                envelopes.append(restored)
        return envelopes

    def reopen(self) -> list[Envelope[Any]]:
        """Take out every saved message (pending impressions with their outcomes, waiting
        outcomes) and forget the watermark, to offer them again through the event-time
        guard: what a checkpoint written before event times were checked needs."""
        envelopes: list[Envelope[Any]] = []
        for p in self._pending.values():
            event = self._impression(p)
            envelopes += [Envelope(event, p.raw, p.source), *p.outcomes]
        envelopes += [o for outs in self._waiting.values() for o in outs]
        self._pending.clear()
        self._waiting.clear()
        self._pending_heap.clear()
        self._waiting_heap.clear()
        self.pending_bytes = self.waiting_bytes = self._waiting_count = self._decoded = 0
        self.watermark = _NEG_INF
        return envelopes


def join_events(
    envelopes: Iterable[Envelope[Any]], config: JoinConfig, rewards: RewardConfig
) -> tuple[list[JoinedEvent], list[Rejected]]:
    """Join a bounded sequence (e.g. a log file) in one pass, as replay does: through the
    event-time guard, as the consumer reads, then the join, advanced to each event's time."""
    guard = EventTimeGuard.for_join(config)
    join = RewardJoin(config, rewards)
    joined: list[JoinedEvent] = []
    rejected: list[Rejected] = []
    high = _NEG_INF

    def admit(passed: list[Envelope[Any]], refused: list[Rejected]) -> None:
        nonlocal high, joined, rejected
        rejected += refused
        for env in passed:
            join.add(env)
            high = max(high, env.event.ts)
            join.advance(high)
            j, r = join.drain()
            joined += j
            rejected += r

    for env in envelopes:
        admit(*guard.offer(env))
    admit(*guard.close())
    join.close_all()
    j, r = join.drain()
    return joined + j, rejected + r
