"""What `nudge serve` does, whichever API asked: decide and record, accept outcomes, activate
deferred decisions; every event spooled only once it passes the consumer's own checks.
The parts it uses are injected (`ServiceParts`), so it runs in memory under test.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import TypeAdapter, ValidationError

from bandit.config import Config
from bandit.decisions import Decider, Decision
from bandit.errors import InvalidEvent, InvalidRequest, NudgeError, SnapshotError
from bandit.events import Identifier, OutcomeLabel, Reason, decode_event, timestamp_text
from nudge.service.decision_log import DecisionLog, EventIdReused
from nudge.service.errors import (
    FIELDS,
    PERSONALIZER,
    ApiError,
    decider_refusal,
    no_snapshot,
    spool_full,
    unknown_event,
)
from nudge.service.metrics import ServiceMetrics
from streams.spool import Spool, SpoolFull, SpoolMessage

log = logging.getLogger("nudge.serve")

GAUGES_EVERY_S = 1.0  # spool depth and snapshot gauges refreshed at most this often
EXPIRE_EVERY_S = 5.0  # deferred decisions past serve.deferred_expiry_s dropped this often
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


@dataclass
class ServiceParts:
    """Everything the app uses, injected: tests pass real parts on temporary directories."""

    config: Config
    decider: Callable[[], Decider | None]  # the current Decider; None until a snapshot loads
    spool: Spool
    decisions: DecisionLog
    metrics: ServiceMetrics
    api_keys: frozenset[bytes]  # empty: no authentication
    clock: Callable[[], float] = time.time  # wall clock for event timestamps


@dataclass(frozen=True, slots=True)
class DecisionInput:
    """One decision to make, in the event contract's terms, whichever API asked for it."""

    trigger: str
    learner_id: str
    context: Mapping[str, Mapping[str, float | str]]
    candidates: Sequence[str] | None
    action_features: Mapping[str, Mapping[str, float | str]] | None
    event_id: str | None
    timestamp: float | None
    deferred: bool = False


class _Housekeeping:
    """Cheap upkeep done on the request path at most so often: gauges (spool depth, snapshot)
    once a second, expiry of deferred decisions every few seconds. One thread does it while
    the others go on (non-blocking lock). Timed by the parts' clock (a step back of the wall
    clock counts as time due)."""

    def __init__(self, parts: ServiceParts) -> None:
        self.parts = parts
        self._lock = threading.Lock()
        self._gauges_at = -math.inf
        self._expired_at = parts.clock()
        self._version: str | None = None

    def tick(self, force_gauges: bool = False) -> None:
        if not self._lock.acquire(blocking=force_gauges):
            return
        try:
            now = self.parts.clock()
            if force_gauges or not 0 <= now - self._gauges_at < GAUGES_EVERY_S:
                self._gauges_at = now
                self._refresh_gauges()
            if not 0 <= now - self._expired_at < EXPIRE_EVERY_S:
                self._expired_at = now
                expired = self.parts.decisions.expire()
                if expired:
                    self.parts.metrics.deferred_expired(expired)
        except Exception:  # upkeep must never fail the request it rides on; tried again later
            log.exception("service upkeep (gauges, expiry) failed")
        finally:
            self._lock.release()

    def _refresh_gauges(self) -> None:
        events, size = self.parts.spool.depth()
        self.parts.metrics.set_spool(events, size)
        decider = self.parts.decider()
        if decider is None:
            return
        manifest = decider.policy.snapshot.manifest
        if manifest.policy_id != self._version:
            self._version = manifest.policy_id
            self.parts.metrics.set_snapshot(manifest.policy_id, epoch_seconds(manifest.created_at))


def epoch_seconds(text: str) -> float | None:
    """An RFC 3339 time as Unix seconds (None if it does not parse)."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class Service:
    """What the routes do, API-neutral: decide and log, accept outcomes, activate."""

    def __init__(self, parts: ServiceParts) -> None:
        self.parts = parts
        self.config = parts.config
        self.rules = parts.config.event_rules()
        self.housekeeping = _Housekeeping(parts)

    def decider(self) -> Decider:
        decider = self.parts.decider()
        if decider is None:
            raise no_snapshot(self.config)
        return decider

    def decide(self, api: str, ask: DecisionInput) -> Decision:
        """Decide, record the event id, spool the impression (unless deferred); any refusal
        leaves nothing behind."""
        started = time.perf_counter()
        decider = self.decider()
        event_id = ask.event_id or os.urandom(16).hex()
        ts = self.parts.clock() if ask.timestamp is None else ask.timestamp
        try:
            decision = decider.decide(
                ask.trigger, ask.learner_id, ask.context, ask.candidates,
                action_features=ask.action_features, event_id=event_id, timestamp=ts,
            )  # fmt: skip
        except SnapshotError as exc:  # closed under us (shutting down)
            raise no_snapshot(self.config, str(exc)) from None
        except NudgeError as exc:
            raise decider_refusal(api, str(exc)) from None
        unknown = sorted(set(ask.action_features or ()) - set(decision.actions))
        if unknown:
            raise InvalidRequest(
                f"action_features.{unknown[0]}", Reason.INVALID_VALUE,
                f"{unknown[0]!r} is not one of the candidates {list(decision.actions)}",
            )  # fmt: skip
        raw = decision.impression_json()
        self._check_impression(api, decision, raw)
        try:  # the decision is remembered only if its impression is spooled, and vice versa
            with self.parts.spool.transaction() as tx:
                self.parts.decisions.record(
                    event_id, ask.trigger, ts, deferred_impression=raw if ask.deferred else None,
                    tx=tx,
                )  # fmt: skip
                if not ask.deferred:
                    tx.append([self._message(self.config.kafka.impressions_topic, event_id, raw)])
        except EventIdReused:
            raise ApiError(
                409, "event_id_reused", f"event id {event_id!r} was used already",
                FIELDS[api]["event_id"],
            ) from None  # fmt: skip
        except SpoolFull:
            raise spool_full() from None
        self.parts.metrics.decided(api, decision.why, time.perf_counter() - started)
        return decision

    def outcome(
        self,
        api: str,
        event_id: str,
        label: OutcomeLabel,
        value: float | None,
        trigger: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Spool the outcome of `event_id` (held back if its decision waits for activation)."""
        logged = self.parts.decisions.lookup(event_id)
        if trigger is None:
            if logged is None:
                raise unknown_event(api, event_id)
            trigger = logged.trigger
        elif logged is not None and logged.trigger != trigger:
            raise ApiError(
                400, Reason.TRIGGER_MISMATCH,
                f"event {event_id!r} was decided at trigger {logged.trigger!r}, not {trigger!r}",
                "trigger",
            )  # fmt: skip
        ts = timestamp
        if ts is None:  # the server's clock, never before its decision
            ts = self.parts.clock() if logged is None else max(self.parts.clock(), logged.ts)
        raw = orjson.dumps(
            {"type": "outcome", "event_id": event_id, "timestamp": timestamp_text(ts),
             "trigger": trigger, "outcome": label.value, "value": value}
        )  # fmt: skip
        self._check_event(raw)
        waits = logged is not None and logged.deferred and not logged.activated
        if not (waits and self.parts.decisions.hold_outcome(event_id, raw)):
            self._spool([self._message(self.config.kafka.outcomes_topic, event_id, raw)])
        self.parts.metrics.outcome(api, label.value)

    def activate(self, event_id: str) -> None:
        """Log a deferred decision's impression and the outcomes held for it, stamped now."""
        logged = self.parts.decisions.lookup(event_id)
        if logged is None:
            raise unknown_event(PERSONALIZER, event_id)
        if not logged.deferred or logged.activated:
            return  # logged already: activating twice changes nothing
        topics = self.config.kafka
        try:  # a refusal rolls the activation back: still deferred, its outcomes still held
            with self.parts.spool.transaction() as tx:
                released = self.parts.decisions.activate(event_id, tx=tx)
                if released is None:
                    return  # another worker activated it in between
                impression, outcomes = released
                stamp = timestamp_text(self.parts.clock())
                messages = [
                    self._message(topics.impressions_topic, event_id, _restamped(impression, stamp))
                ]
                messages += [
                    self._message(topics.outcomes_topic, event_id, _restamped(o, stamp))
                    for o in outcomes
                ]
                tx.append(messages)
        except SpoolFull:
            raise spool_full() from None

    def _check_event(self, raw: bytes) -> None:
        """The consumer's own check of an event about to be logged."""
        try:
            decode_event(raw, self.rules)
        except InvalidEvent as exc:
            raise ApiError(400, exc.reason, exc.detail) from None

    def _check_impression(self, api: str, decision: Decision, raw: bytes) -> None:
        """The checks of `decode_event` that an impression made by the Decider from validated
        requests can still fail: size and the limits (its ids, names and values went through
        the event contract's types already; the full decode would double the work of deciding)."""
        rules = self.rules
        if len(raw) > rules.max_message_bytes:
            raise ApiError(
                400, Reason.TOO_LARGE,
                f"the impression would be {len(raw)} bytes, limit is {rules.max_message_bytes} "
                "(limits.max_message_bytes)",
            )  # fmt: skip
        if len(decision.actions) > rules.max_actions:
            raise ApiError(
                400, Reason.TOO_MANY_ACTIONS,
                f"{len(decision.actions)} candidate actions, limit is {rules.max_actions}",
                FIELDS[api]["candidates"],
            )  # fmt: skip
        groups = [*decision.impression["context"].values()]
        groups += [a["features"] for a in decision.impression["actions"]]
        widest = max((len(g) for g in groups), default=0)
        if widest > rules.max_features:
            raise ApiError(
                400, Reason.TOO_MANY_FEATURES,
                f"{widest} features in one group, limit is {rules.max_features}",
            )  # fmt: skip

    @staticmethod
    def _message(topic: str, event_id: str, raw: bytes) -> SpoolMessage:
        return SpoolMessage(topic, event_id.encode(), raw)

    def _spool(self, messages: list[SpoolMessage]) -> None:
        try:
            self.parts.spool.append(messages)
        except SpoolFull:
            raise spool_full() from None


def _restamped(raw: bytes, stamp: str) -> bytes:
    event = orjson.loads(raw)
    event["timestamp"] = stamp
    return orjson.dumps(event)


def check_event_id(value: str) -> str:
    """A path's eventId must be an event-contract identifier."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]["msg"]
        raise ApiError(
            400, Reason.INVALID_VALUE, f"eventId {value!r}: {problem}", "eventId"
        ) from None
