"""The HTTP application of `nudge serve`: our API, Personalizer's v1.0, health, metrics, status.

`create_app(parts)` takes everything it touches as `ServiceParts` (decider, spool, decision
log, metrics, keys, clock), so every behaviour is testable in memory with `TestClient`.
An event is accepted only once it is in the spool (committed to SQLite): then the response.
A request that is refused (4xx, 5xx) puts nothing in the spool. Nothing is logged that the
consumer would dead-letter: requests go through the event contract's types, an impression's
size and limits are checked, an outcome passes the consumer's own `decode_event`. Route
functions are plain `def`: deciding is CPU-bound under VW's GIL, so FastAPI runs them in its
threadpool (the `Decider` is thread-safe).
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse
from starlette.routing import Match

from bandit.config import Config
from bandit.decisions import Decider, Decision
from bandit.errors import InvalidEvent, InvalidRequest, NudgeError, SnapshotError
from bandit.events import Identifier, OutcomeLabel, Reason, decode_event, reason_of, timestamp_text
from nudge.service.decision_log import DecisionLog, EventIdReused
from nudge.service.metrics import ServiceMetrics
from nudge.service.models import (
    DecideRequest,
    DecideResponse,
    ErrorDetail,
    ErrorResponse,
    OutcomeRequest,
    OutcomeResponse,
    PersonalizerError,
    PersonalizerErrorResponse,
    PmfEntry,
    PolicyResponse,
    RankedAction,
    RankRequest,
    RankResponse,
    RewardRequest,
)
from nudge.service.personalizer import (
    map_action_features,
    map_context,
    rank_candidates,
    ranking,
    reward_outcome,
)
from nudge.service.status_page import StatusView, pruning_rows, render_status_page
from streams.spool import Spool, SpoolFull, SpoolMessage

log = logging.getLogger("nudge.serve")

V1, PERSONALIZER = "v1", "personalizer"
PERSONALIZER_PREFIX = "/personalizer/v1.0"
GAUGES_EVERY_S = 1.0  # spool depth and snapshot gauges refreshed at most this often
EXPIRE_EVERY_S = 5.0  # deferred decisions past serve.deferred_expiry_s dropped this often
SPOOL_RETRY_AFTER_S = 1
_PROTECTED = ("/v1/", "/personalizer/")
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_PERSONALIZER_CODES = {
    400: "BadRequest", 401: "PermissionDenied", 404: "ResourceNotFound", 405: "BadRequest",
    409: "BadRequest", 413: "BadRequest", 503: "ServiceUnavailable", 500: "InternalServerError",
}  # fmt: skip
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


class ApiError(NudgeError):
    """A refusal with its HTTP status, stable code and field, rendered in the caller's API's
    error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def api_of(path: str) -> str:
    """Which API a path belongs to (its errors take that API's shape)."""
    return PERSONALIZER if path.startswith("/personalizer/") else V1


def error_response(api: str, error: ApiError) -> Response:
    """`error` as our API's or Personalizer's error body."""
    status = error.status
    body: BaseModel
    if api == PERSONALIZER:
        if status == 409:  # Personalizer knows no 409: a reused event id is a bad request
            status = 400
        code = _PERSONALIZER_CODES.get(
            status, "BadRequest" if status < 500 else "InternalServerError"
        )
        body = PersonalizerErrorResponse(
            error=PersonalizerError(code=code, message=error.message, target=error.field)  # type: ignore[arg-type]
        )
    else:
        body = ErrorResponse(
            error=ErrorDetail(code=error.code, field=error.field, message=error.message)
        )
    return Response(
        body.model_dump_json(by_alias=True), status, error.headers, media_type="application/json"
    )


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(by_alias=True), status, media_type="application/json")


# ---- the door: authentication, body size, request metrics -----------------------------------


def key_matches(presented: Sequence[bytes], keys: frozenset[bytes]) -> bool:
    """Whether any presented key is one of `keys`, comparing in constant time against every key
    (no early exit, so the time does not tell which key, or how much of one, matched)."""
    found = False
    for candidate in presented:
        for key in keys:
            found |= hmac.compare_digest(candidate, key)
    return found


def presented_keys(headers: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    """The API keys a request carries: `Authorization: Bearer K`, `Ocp-Apim-Subscription-Key: K`."""
    found = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"ocp-apim-subscription-key":
            found.append(value.strip())
        elif lower == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                found.append(token.strip())
    return found


class _Door:
    """ASGI middleware run before routing: a request without a valid key gets 401, a body over
    `limits.max_message_bytes` 413 (by Content-Length, then by what arrives), before any
    parsing; every answer is counted by route template and status."""

    def __init__(self, app: ASGIApp, parts: ServiceParts, route_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.keys = parts.api_keys
        self.limit = parts.config.limits.max_message_bytes
        self.metrics = parts.metrics
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._answer(scope, receive, counted)
        finally:
            self.metrics.request(self.route_of(scope), status)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        api = api_of(path)
        if not self._authorized(path, scope["headers"]):
            refusal = ApiError(
                401, "unauthorized",
                "missing or wrong API key: send `Authorization: Bearer KEY` or "
                "`Ocp-Apim-Subscription-Key: KEY`",
                headers={"WWW-Authenticate": "Bearer"} if api == V1 else None,
            )  # fmt: skip
            await error_response(api, refusal)(scope, receive, send)
            return
        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        body = await self._body(scope, receive)
        if body is None:
            too_large = ApiError(
                413, Reason.TOO_LARGE,
                f"request body over {self.limit} bytes (limits.max_message_bytes)",
            )  # fmt: skip
            await error_response(api, too_large)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect when the client goes

        await self.app(scope, replay, send)

    def _authorized(self, path: str, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """Open paths, no keys configured, or a configured key presented."""
        if not self.keys or not path.startswith(_PROTECTED):
            return True
        return key_matches(presented_keys(headers), self.keys)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to be over the limit."""
        for name, value in scope["headers"]:
            if name.lower() == b"content-length":
                try:
                    if int(value) > self.limit:
                        return None
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


# ---- the service: decide, record, spool ------------------------------------------------------

# What a Decider's refusal is about, by how its message starts: (prefix, topic, reason).
_DECIDER_REFUSALS = (
    ("trigger ", "trigger", Reason.INVALID_VALUE),
    ("learner_id ", "learner_id", Reason.INVALID_VALUE),
    ("event_id ", "event_id", Reason.INVALID_VALUE),
    ("candidate actions repeat", "candidates", Reason.DUPLICATE_ACTION_ID),
    ("candidate action", "candidates", Reason.INVALID_VALUE),
    ("no candidate actions", "candidates", Reason.EMPTY_ACTIONS),
    ("context namespace", "context", Reason.UNKNOWN_NAMESPACE),
    ("context[", "context", Reason.INVALID_VALUE),
)
# Our API's name and Personalizer's for each topic a refusal can be about.
_FIELDS = {
    V1: {"trigger": "trigger", "learner_id": "learner_id", "event_id": "event_id",
         "candidates": "candidates", "context": "context"},
    PERSONALIZER: {"trigger": "contextFeatures", "learner_id": "contextFeatures",
                   "event_id": "eventId", "candidates": "actions", "context": "contextFeatures"},
}  # fmt: skip


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
            raise _decider_refusal(api, str(exc)) from None
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
                _FIELDS[api]["event_id"],
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
                _FIELDS[api]["candidates"],
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


def _decider_refusal(api: str, message: str) -> ApiError:
    for prefix, topic, reason in _DECIDER_REFUSALS:
        if message.startswith(prefix):
            return ApiError(400, reason, message, _FIELDS[api][topic])
    return ApiError(400, Reason.INVALID_VALUE, message)


def no_snapshot(config: Config, why: str | None = None) -> ApiError:
    retry = max(1, round(config.serve.reload_interval_s))
    return ApiError(
        503, "no_snapshot",
        why or f"no verified policy snapshot loaded yet from {config.snapshots.directory}",
        headers={"Retry-After": str(retry)},
    )  # fmt: skip


def spool_full() -> ApiError:
    return ApiError(
        503, "spool_full",
        "the spool of events waiting for Kafka is full; nothing was logged, retry later",
        headers={"Retry-After": str(SPOOL_RETRY_AFTER_S)},
    )  # fmt: skip


def unknown_event(api: str, event_id: str) -> ApiError:
    field = "eventId" if api == PERSONALIZER else "event_id"
    return ApiError(404, "not_found", f"no decision with event id {event_id!r} is known", field)


def check_event_id(value: str) -> str:
    """A path's eventId must be an event-contract identifier."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]["msg"]
        raise ApiError(
            400, Reason.INVALID_VALUE, f"eventId {value!r}: {problem}", "eventId"
        ) from None


# ---- routes ----------------------------------------------------------------------------------


def _decide_response(event_id: str, d: Decision) -> DecideResponse:
    return DecideResponse(
        event_id=event_id, action=d.action, probability=d.probability,
        pmf=[PmfEntry(action=a, probability=p) for a, p in zip(d.actions, d.pmf, strict=True)],
        policy_version=d.policy_version, why=d.why,
    )  # fmt: skip


def _check_limits(body: DecideRequest, config: Config) -> None:
    """Limits of the event contract our models cannot state, checked with the field named."""
    limits = config.limits
    if body.candidates is not None and len(body.candidates) > limits.max_actions:
        raise InvalidRequest(
            "candidates", Reason.TOO_MANY_ACTIONS,
            f"{len(body.candidates)} candidates, limit is {limits.max_actions} (limits.max_actions)",
        )  # fmt: skip
    groups = [("context", body.context), ("action_features", body.action_features or {})]
    for name, group in groups:
        for key, features in group.items():
            if len(features) > limits.max_features:
                raise InvalidRequest(
                    f"{name}.{key}", Reason.TOO_MANY_FEATURES,
                    f"{len(features)} features, limit is {limits.max_features} (limits.max_features)",
                )  # fmt: skip


def _add_our_api(app: FastAPI, service: Service) -> None:
    parts = service.parts

    @app.post("/v1/decide", response_model=DecideResponse)
    def decide(body: DecideRequest) -> Response:
        service.housekeeping.tick()
        _check_limits(body, parts.config)
        ask = DecisionInput(
            body.trigger, body.learner_id, body.context, body.candidates, body.action_features,
            body.event_id, body.timestamp.timestamp() if body.timestamp else None,
        )  # fmt: skip
        d = service.decide(V1, ask)
        return _json(_decide_response(d.impression["event_id"], d))

    @app.post("/v1/outcomes", status_code=202, response_model=OutcomeResponse)
    def outcomes(body: OutcomeRequest) -> Response:
        service.housekeeping.tick()
        ts = body.timestamp.timestamp() if body.timestamp else None
        service.outcome(V1, body.event_id, body.outcome, body.value, body.trigger, ts)
        return _json(OutcomeResponse(event_id=body.event_id), 202)

    @app.get("/v1/policy", response_model=PolicyResponse)
    def policy() -> Response:
        manifest = service.decider().policy.snapshot.manifest
        created = epoch_seconds(manifest.created_at)
        return _json(
            PolicyResponse(
                version=manifest.policy_id,
                created_at=manifest.created_at,
                age_s=None if created is None else max(0.0, parts.clock() - created),
                trained_through=dict(manifest.trained_through),
                examples=manifest.examples,
                live_value=live_value_of(manifest),
            )
        )


def live_value_of(manifest: Any) -> dict[str, Any] | None:
    """The consumer's live-value estimates shipped with the snapshot, if it has them."""
    value = getattr(manifest, "live_value", None)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return dict(value) if isinstance(value, Mapping) else None


def _add_personalizer(app: FastAPI, service: Service) -> None:
    parts = service.parts
    config = parts.config

    @app.post(f"{PERSONALIZER_PREFIX}/rank", status_code=201, response_model=RankResponse)
    def rank(body: RankRequest) -> Response:
        service.housekeeping.tick()
        ids = [a.id for a in body.actions]
        candidates, excluded = rank_candidates(
            ids, body.excluded_actions, config.limits.max_actions
        )
        where = map_context(body.context_features, config.serve.personalizer, service.rules)
        offered = set(candidates)
        features = {
            a.id: map_action_features(i, a.features, config.limits.max_features)
            for i, a in enumerate(body.actions)
            if a.id in offered
        }
        ask = DecisionInput(
            where.trigger, where.learner_id, where.context, candidates, features, body.event_id,
            None, deferred=bool(body.defer_activation),
        )  # fmt: skip
        d = service.decide(PERSONALIZER, ask)
        ranked = ranking(d.actions, d.pmf, d.index, excluded)
        response = RankResponse(
            ranking=[RankedAction(id=a, probability=p) for a, p in ranked],
            event_id=d.impression["event_id"],
            reward_action_id=d.action,
        )
        return _json(response, 201)

    @app.post(f"{PERSONALIZER_PREFIX}/events/{{eventId}}/reward", status_code=204)
    def reward(eventId: str, body: RewardRequest) -> Response:
        service.housekeeping.tick()
        event_id = check_event_id(eventId)
        label, value = reward_outcome(body.value, config.rewards)
        service.outcome(PERSONALIZER, event_id, label, value)
        return Response(status_code=204)

    @app.post(f"{PERSONALIZER_PREFIX}/events/{{eventId}}/activate", status_code=204)
    def activate(eventId: str) -> Response:
        service.housekeeping.tick()
        service.activate(check_event_id(eventId))
        return Response(status_code=204)


def _add_health(app: FastAPI, service: Service) -> None:
    parts = service.parts

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        reasons = readiness_problems(parts)
        body = {"ready": not reasons, "reasons": reasons}
        return Response(orjson.dumps(body), 503 if reasons else 200, media_type="application/json")

    @app.get("/metrics")
    def metrics() -> Response:
        service.housekeeping.tick(force_gauges=True)
        text, content_type = parts.metrics.render()
        return Response(text, media_type=content_type)

    @app.get("/", response_class=HTMLResponse)
    def status() -> Response:
        service.housekeeping.tick(force_gauges=True)
        return HTMLResponse(render_status_page(status_view(parts)))


def readiness_problems(parts: ServiceParts) -> list[str]:
    """Why the service is not ready (empty: ready): no snapshot, broker not reached, spool full."""
    problems = []
    if parts.decider() is None:
        problems.append("no verified policy snapshot loaded yet")
    status = parts.spool.status()
    if status.broker_ok is None:
        problems.append("Kafka not reached yet by the spool's drainer")
    elif not status.broker_ok:
        problems.append(f"Kafka unreachable: {status.last_error or 'unknown error'}")
    if status.full:
        problems.append(f"the spool is full ({status.depth_events} events): decisions get 503")
    return problems


def status_view(parts: ServiceParts) -> StatusView:
    """What the status page shows, read now."""
    decider = parts.decider()
    snapshot = decider.policy.snapshot if decider is not None else None
    manifest = snapshot.manifest if snapshot is not None else None
    status = parts.spool.status()
    return StatusView(
        policy_version=manifest.policy_id if manifest else None,
        policy_created_at=epoch_seconds(manifest.created_at) if manifest else None,
        now=parts.clock(),
        decisions_by_why=parts.metrics.decisions_by_why(),
        spool_events=status.depth_events,
        broker_ok=status.broker_ok,
        live_value=live_value_of(manifest),
        pruning=pruning_rows(snapshot.manifest, snapshot.state.pruning) if snapshot else [],
    )


# ---- errors ----------------------------------------------------------------------------------


# The member of a union (a feature is a number or text) pydantic appends to an error's place.
_UNION_MEMBER = re.compile(r"^(float|int|str|bool|constrained-str|[a-z-]+\[.*\])$")

_TYPE_MISMATCH = re.compile(r"_(type|parsing)$")


def field_of(loc: Sequence[str | int]) -> str | None:
    """A pydantic error location as the request spells the field (`actions[0].id`)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    if len(parts) > 1 and isinstance(parts[-1], str) and _UNION_MEMBER.match(parts[-1]):
        parts = parts[:-1]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else str(part)
    return text or None


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem FastAPI found in a request, as a 400 naming the field."""
    errors = list(exc.errors())
    if not errors:
        return ApiError(400, Reason.UNDECODABLE, "the request could not be read")
    field = field_of(errors[0].get("loc", ()))
    # A union (number or text) fails once per member: report the member the input was meant
    # for (text too long, not "not a number"), i.e. the one failing on more than its type.
    same = [e for e in errors if field_of(e.get("loc", ())) == field]
    first = next((e for e in same if not _TYPE_MISMATCH.search(str(e.get("type")))), same[0])
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return ApiError(400, Reason.UNDECODABLE, f"the body is not JSON: {first.get('msg')}")
    code = Reason.MISSING_FIELD if kind == "missing" else reason_of(first)
    if kind == "missing" and field is None:
        return ApiError(400, code, "the request has no JSON body")
    return ApiError(400, code, f"{field or 'body'}: {first.get('msg')}", field)


def _add_error_handlers(app: FastAPI) -> None:
    def render(request: Request, error: ApiError) -> Response:
        return error_response(api_of(request.url.path), error)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
        return render(request, exc)

    async def on_invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidRequest)  # noqa: S101 - registered for InvalidRequest only
        return render(request, ApiError(400, exc.reason, exc.detail, exc.field))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
        return render(request, validation_error(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return render(request, ApiError(exc.status_code, code, str(exc.detail), None))

    async def on_crash(request: Request, exc: Exception) -> Response:
        return render(request, ApiError(500, "internal", f"internal error: {type(exc).__name__}"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(InvalidRequest, on_invalid_request)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


def create_app(parts: ServiceParts) -> FastAPI:
    """The service's FastAPI app over `parts` (lifetimes of the parts are the caller's)."""
    # The OpenAPI description (/openapi.json, browsable at /docs) is open, like /healthz.
    app = FastAPI(
        title="nudge serve", docs_url="/docs", redoc_url=None, openapi_url="/openapi.json"
    )
    service = Service(parts)
    _add_our_api(app, service)
    _add_personalizer(app, service)
    _add_health(app, service)
    _add_error_handlers(app)

    def route_of(scope: Scope) -> str:
        """The template of the route a request is for (a bounded label, unlike its path): the
        one the router picked (Starlette leaves it in the scope), else matched here (a request
        the door answered itself, or one no route matched)."""
        picked = scope.get("route")
        if picked is not None:
            return str(getattr(picked, "path", "unmatched"))
        found = "unmatched"
        for route in app.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "path", found))
            if match == Match.PARTIAL and found == "unmatched":  # the path, not the method
                found = str(getattr(route, "path", found))
        return found

    app.add_middleware(_Door, parts=parts, route_of=route_of)
    app.state.service = service
    return app
