"""The HTTP application of `nudge serve`: our API, Personalizer's v1.0, health, metrics, status.

`create_app(parts)` takes everything it touches as `ServiceParts` (decider, spool, decision
log, metrics, keys, clock), so every behaviour is testable in memory with `TestClient`. This
module holds the routes and assembles the app; what they do is `service.Service`, the door
(API keys, body size, request metrics) is `door.Door`, refusals and error bodies are `errors`.
An event is accepted only once it is in the spool (committed to SQLite): then the response.
A request that is refused (4xx, 5xx) puts nothing in the spool. Nothing is logged that the
consumer would dead-letter: requests go through the event contract's types, an impression's
size and limits are checked, an outcome passes the consumer's own `decode_event`. Route
functions are plain `def`: deciding is CPU-bound under VW's GIL, so FastAPI runs them in its
threadpool (the `Decider` is thread-safe).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Response
from pydantic import BaseModel
from starlette.responses import HTMLResponse
from starlette.routing import Match

from bandit.config import Config
from bandit.decisions import Decision
from bandit.errors import InvalidRequest
from bandit.events import Reason
from nudge.service.door import Door, Scope
from nudge.service.errors import PERSONALIZER, V1, add_error_handlers
from nudge.service.models import (
    DecideRequest,
    DecideResponse,
    OutcomeRequest,
    OutcomeResponse,
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
from nudge.service.service import (
    DecisionInput,
    Service,
    ServiceParts,
    check_event_id,
    epoch_seconds,
)
from nudge.service.status_page import StatusView, pruning_rows, render_status_page

__all__ = ["ServiceParts", "create_app", "live_value_of", "readiness_problems", "status_view"]

PERSONALIZER_PREFIX = "/personalizer/v1.0"


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(by_alias=True), status, media_type="application/json")


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
    add_error_handlers(app)

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

    app.add_middleware(Door, parts=parts, route_of=route_of)
    app.state.service = service
    return app
