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
  with a reason (they become dead letters), so nothing is learned twice or silently lost.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bandit.config import JoinConfig, RewardConfig
from bandit.envelopes import Envelope, Rejected, Source
from bandit.errors import CheckpointError, InvalidEvent
from bandit.events import Event, Impression, Outcome, OutcomeLabel, Reason

_NEG_INF = float("-inf")


@dataclass(frozen=True, slots=True)
class JoinedEvent:
    """An impression with the outcome the join settled on and the reward it is worth."""

    impression: Impression
    label: OutcomeLabel
    value: float | None
    reward: float
    defaulted: bool  # True when no outcome arrived in the window


@dataclass(slots=True)
class _Pending:
    impression: Envelope[Impression]
    outcomes: list[Envelope[Outcome]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Closed:
    deadline: float
    by_outcome: bool


class RewardJoin:
    """Joins impressions and outcomes into rewards; `drain()` hands out what is settled."""

    def __init__(self, config: JoinConfig, rewards: RewardConfig) -> None:
        self.config = config
        self.rewards = rewards
        self._window = config.window_s
        self._unmatched_wait = config.unmatched_wait_s or config.window_s
        self._retention = config.window_s + config.allowed_lateness_s
        self._pending: dict[str, _Pending] = {}
        self._waiting: dict[str, list[Envelope[Outcome]]] = {}
        self._closed: dict[str, _Closed] = {}
        self._pending_heap: list[tuple[float, str]] = []
        self._waiting_heap: list[tuple[float, str]] = []
        self._closed_heap: list[tuple[float, str]] = []
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
        pending = _Pending(env)
        deadline = imp.ts + self._window
        self._pending[imp.event_id] = pending
        for outcome in self._waiting.pop(imp.event_id, []):
            if imp.event_id in self._pending:
                self._attach(pending, outcome)
            else:  # settled by an earlier outcome: the rest are duplicates or late
                self._add_outcome(outcome)
        if imp.event_id in self._pending:
            if deadline <= self.watermark:
                self._settle(pending)
            else:
                heapq.heappush(self._pending_heap, (deadline, imp.event_id))

    def _add_outcome(self, env: Envelope[Outcome]) -> None:
        out = env.event
        pending = self._pending.get(out.event_id)
        if pending is not None:
            self._attach(pending, env)
            return
        closed = self._closed.get(out.event_id)
        if closed is not None:
            if closed.by_outcome and out.ts <= closed.deadline:
                self._reject(
                    env, Reason.DUPLICATE_OUTCOME, f"{out.event_id} already has its outcome"
                )
            else:
                self._reject(env, Reason.LATE_OUTCOME, f"window of {out.event_id} already closed")
            return
        waiting = self._waiting.setdefault(out.event_id, [])
        if not waiting:
            heapq.heappush(self._waiting_heap, (out.ts + self._unmatched_wait, out.event_id))
        waiting.append(env)

    def _attach(self, pending: _Pending, env: Envelope[Outcome]) -> None:
        imp, out = pending.impression.event, env.event
        if out.trigger != imp.trigger:
            self._reject(
                env,
                Reason.TRIGGER_MISMATCH,
                f"outcome trigger {out.trigger!r}, impression {imp.trigger!r}",
            )
            return
        if out.ts > imp.ts + self._window:
            self._reject(
                env,
                Reason.LATE_OUTCOME,
                f"outcome {out.ts - imp.ts:.1f}s after its impression; window is {self._window}s",
            )
            return
        if any(o.raw == env.raw for o in pending.outcomes):
            self._reject(env, Reason.DUPLICATE_OUTCOME, f"{out.event_id}: same outcome twice")
            return
        pending.outcomes.append(env)
        if self.config.mode == "first":
            self._settle(pending)

    # ---- settling -----------------------------------------------------------------------

    def _settle(self, pending: _Pending) -> None:
        imp = pending.impression.event
        del self._pending[imp.event_id]
        deadline = imp.ts + self._window
        # In mode combine the watermark always closes the window, so a later outcome is late.
        by_outcome = bool(pending.outcomes) and self.config.mode == "first"
        self._closed[imp.event_id] = _Closed(deadline, by_outcome=by_outcome)
        heapq.heappush(self._closed_heap, (deadline + self._retention, imp.event_id))
        self._joined.append(self._reward(pending))

    def _reward(self, pending: _Pending) -> JoinedEvent:
        imp = pending.impression.event
        if not pending.outcomes:
            label = self.config.default_outcome
            return JoinedEvent(
                imp, label, None, self.rewards.of(label, None, imp.chosen), defaulted=True
            )
        outcomes = sorted((o.event for o in pending.outcomes), key=lambda o: o.ts)
        values = [o.value for o in outcomes if o.value is not None]
        value = sum(values) if values else None
        label = outcomes[0].label
        return JoinedEvent(
            imp, label, value, self.rewards.of(label, value, imp.chosen), defaulted=False
        )

    def advance(self, event_time: float) -> None:
        """Move the watermark to `event_time - allowed_lateness_s` and close what it passes."""
        watermark = event_time - self.config.allowed_lateness_s
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        self._expire(watermark)

    def _expire(self, watermark: float) -> None:
        while self._pending_heap and self._pending_heap[0][0] <= watermark:
            _, event_id = heapq.heappop(self._pending_heap)
            pending = self._pending.get(event_id)
            if pending is not None:
                self._settle(pending)
        while self._waiting_heap and self._waiting_heap[0][0] <= watermark:
            _, event_id = heapq.heappop(self._waiting_heap)
            for env in self._waiting.pop(event_id, []):
                self._reject(env, Reason.UNMATCHED_OUTCOME, f"no impression {event_id} arrived")
        while self._closed_heap and self._closed_heap[0][0] <= watermark:
            _, event_id = heapq.heappop(self._closed_heap)
            self._closed.pop(event_id, None)

    def close_all(self) -> None:
        """End of a bounded input: settle every open window and reject every waiting outcome."""
        while self._pending:
            self._settle(next(iter(self._pending.values())))
        for event_id in list(self._waiting):
            for env in self._waiting.pop(event_id):
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
        return sum(len(v) for v in self._waiting.values())

    def state(self) -> dict[str, Any]:
        """JSON-ready state for a checkpoint; call after `drain()` so nothing is in flight."""
        if self._joined or self._rejected:
            raise CheckpointError("drain() the join before saving its state")
        return {
            "watermark": self.watermark if self.watermark != _NEG_INF else None,
            "pending": [
                {
                    "impression": _env_state(p.impression),
                    "outcomes": [_env_state(o) for o in p.outcomes],
                }
                for p in self._pending.values()
            ],
            "waiting": [_env_state(o) for outs in self._waiting.values() for o in outs],
            "closed": [[k, c.deadline, c.by_outcome] for k, c in self._closed.items()],
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        config: JoinConfig,
        rewards: RewardConfig,
        decode: Callable[[bytes], Event],
    ) -> RewardJoin:
        """Rebuild a join saved by `state()`, re-decoding the saved messages with `decode`."""
        join = cls(config, rewards)
        wm = state.get("watermark")
        join.watermark = _NEG_INF if wm is None else float(wm)
        for event_id, deadline, by_outcome in state.get("closed", []):
            join._closed[event_id] = _Closed(float(deadline), bool(by_outcome))
            heapq.heappush(join._closed_heap, (float(deadline) + join._retention, event_id))
        for item in state.get("pending", []):
            imp = _env_from_state(item["impression"], decode)
            pending = _Pending(imp, [_env_from_state(o, decode) for o in item["outcomes"]])
            join._pending[imp.event.event_id] = pending
            heapq.heappush(join._pending_heap, (imp.event.ts + join._window, imp.event.event_id))
        for item in state.get("waiting", []):
            env = _env_from_state(item, decode)
            waiting = join._waiting.setdefault(env.event.event_id, [])
            if not waiting:
                heapq.heappush(
                    join._waiting_heap, (env.event.ts + join._unmatched_wait, env.event.event_id)
                )
            waiting.append(env)
        return join


def _env_state(env: Envelope[Any]) -> dict[str, Any]:
    src = env.source
    return {
        "raw": base64.b64encode(env.raw).decode("ascii"),
        "source": [src.topic, src.partition, src.offset],
    }


def _env_from_state(item: dict[str, Any], decode: Callable[[bytes], Event]) -> Envelope[Any]:
    raw = base64.b64decode(item["raw"])
    topic, partition, offset = item["source"]
    try:
        event = decode(raw)
    except InvalidEvent as exc:
        raise CheckpointError(
            f"saved message {topic}/{partition}/{offset} no longer decodes: {exc}"
        ) from exc
    return Envelope(event, raw, Source(topic, int(partition), int(offset)))


def join_events(
    envelopes: Iterable[Envelope[Any]], config: JoinConfig, rewards: RewardConfig
) -> tuple[list[JoinedEvent], list[Rejected]]:
    """Join a bounded, single-source sequence (e.g. a log file) in one pass, as replay does."""
    join = RewardJoin(config, rewards)
    joined: list[JoinedEvent] = []
    rejected: list[Rejected] = []
    high = _NEG_INF
    for env in envelopes:
        join.add(env)
        high = max(high, env.event.ts)
        join.advance(high)
        j, r = join.drain()
        joined += j
        rejected += r
    join.close_all()
    j, r = join.drain()
    return joined + j, rejected + r
