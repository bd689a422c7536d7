"""Our HTTP API of `nudge serve` (`/v1/...`, health, metrics, status page), in memory.

Each test drives the app with `TestClient` over real parts (Decider, Spool, DecisionLog),
then drains the spool into an in-memory broker and decodes what arrived with the consumer's
own decoder: an accepted request logs exactly the event the consumer reads (same
probability, keyed by event id, on the right topic); a refused one logs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from decision_fixtures import LECTURE_COMPLETED, QUIZ_FAILED, T0, context
from fastapi.testclient import TestClient
from service_fixtures import (
    KEY,
    MAX_ACTIONS,
    MAX_MESSAGE_BYTES,
    OTHER_KEY,
    Harness,
    make_harness,
    snapshot_dir,
)

from bandit.events import OutcomeLabel, timestamp_text

__all__ = ["snapshot_dir"]  # the module-scoped fixture, used by name

CTX = context(11, QUIZ_FAILED)


@pytest.fixture
def service(tmp_path: Path, snapshot_dir: Path) -> Iterator[Harness]:
    yield from make_harness(tmp_path, snapshot_dir)


@pytest.fixture
def cold(tmp_path: Path) -> Iterator[Harness]:
    """The service before any snapshot exists."""
    yield from make_harness(tmp_path, None)


def decide_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"trigger": QUIZ_FAILED, "learner_id": "u000011", "context": CTX}
    body.update(fields)
    return body


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "field", "message"}, body
    return dict(body["error"])


# ---- happy paths -----------------------------------------------------------------------------


def test_decide_logs_exactly_the_impression_the_consumer_reads(service: Harness) -> None:
    response = service.client.post("/v1/decide", json=decide_body())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"event_id", "action", "probability", "pmf", "policy_version", "why"}
    assert {"action": body["action"], "probability": body["probability"]} in body["pmf"]
    assert sum(e["probability"] for e in body["pmf"]) == pytest.approx(1.0)

    logged = service.drain()
    assert len(logged) == 1
    record = logged[0]
    assert record.topic == service.parts.config.kafka.impressions_topic
    assert record.key == body["event_id"].encode()
    (imp,) = service.impressions(logged)
    assert imp.event_id == body["event_id"]
    assert imp.chosen == body["action"]
    assert imp.probability == body["probability"]
    assert list(imp.pmf or ()) == [e["probability"] for e in body["pmf"]]
    assert list(imp.action_ids) == [e["action"] for e in body["pmf"]]
    assert imp.policy_version == body["policy_version"]
    assert imp.ts == T0  # the server's clock
    assert (imp.trigger, imp.learner_id) == (QUIZ_FAILED, "u000011")
    assert imp.context == CTX


def test_decide_takes_candidates_features_event_id_and_timestamp(service: Harness) -> None:
    at = T0 - 3600.0
    body = decide_body(
        candidates=["hint", "encourage", "none"],
        action_features={"hint": {"kind": "hint", "tone": "warm"}},
        event_id="sim-000001",
        timestamp=timestamp_text(at),
    )
    response = service.client.post("/v1/decide", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["event_id"] == "sim-000001"
    (imp,) = service.impressions(service.drain())
    assert (imp.event_id, imp.ts) == ("sim-000001", at)
    assert imp.action_ids == ("hint", "encourage", "none")
    assert imp.action_features[0] == {"kind": "hint", "tone": "warm"}
    assert imp.action_features[1] == {"kind": "encourage", "tone": "friendly"}  # the catalogue's


def test_an_outcome_is_logged_keyed_by_event_id_with_the_decisions_trigger(
    service: Harness,
) -> None:
    decided = service.client.post("/v1/decide", json=decide_body()).json()
    service.clock.advance(30.0)
    response = service.client.post(
        "/v1/outcomes", json={"event_id": decided["event_id"], "outcome": "helpful", "value": 2.5}
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"event_id": decided["event_id"], "accepted": True}
    logged = service.drain()
    (out,) = service.outcomes(logged)
    record = next(r for r in logged if r.topic == service.parts.config.kafka.outcomes_topic)
    assert record.key == decided["event_id"].encode()
    assert (out.event_id, out.trigger, out.label, out.value) == (
        decided["event_id"], QUIZ_FAILED, OutcomeLabel.HELPFUL, 2.5,
    )  # fmt: skip
    assert out.ts == T0 + 30.0
    assert orjson.loads(record.raw)["type"] == "outcome"


def test_an_outcome_is_never_stamped_before_its_decision(service: Harness) -> None:
    later = T0 + 600.0  # a simulation deciding ahead of the server's clock
    decided = service.client.post(
        "/v1/decide", json=decide_body(timestamp=timestamp_text(later))
    ).json()
    service.client.post(
        "/v1/outcomes", json={"event_id": decided["event_id"], "outcome": "ignored"}
    )
    (out,) = service.outcomes(service.drain())
    assert out.ts == later


def test_an_outcome_with_its_trigger_is_logged_without_a_remembered_decision(
    service: Harness,
) -> None:
    body = {"event_id": "made-elsewhere", "outcome": "not_helpful", "trigger": LECTURE_COMPLETED,
            "timestamp": timestamp_text(T0 + 5)}  # fmt: skip
    assert service.client.post("/v1/outcomes", json=body).status_code == 202
    (out,) = service.outcomes(service.drain())
    assert (out.event_id, out.trigger, out.ts, out.value) == (
        "made-elsewhere", LECTURE_COMPLETED, T0 + 5, None,
    )  # fmt: skip


def test_policy_reports_the_served_snapshot(service: Harness) -> None:
    service.clock.advance(10_000.0)
    response = service.client.get("/v1/policy")
    assert response.status_code == 200, response.text
    body = response.json()
    decider = service.parts.decider()
    assert decider is not None
    manifest = decider.policy.snapshot.manifest
    assert body["version"] == manifest.policy_id
    assert body["created_at"] == manifest.created_at
    assert body["trained_through"] == manifest.trained_through
    assert body["age_s"] >= 0.0
    assert body["examples"] == manifest.examples
    assert set(body) == {
        "version", "created_at", "age_s", "trained_through", "examples", "live_value",
    }  # fmt: skip


# ---- refusals --------------------------------------------------------------------------------

BAD_DECISIONS = [
    pytest.param({"trigger": None}, "wrong_type", "trigger", id="trigger-null"),
    pytest.param({"learner_id": "has space"}, "invalid_value", "learner_id", id="learner-id-space"),
    pytest.param({"colour": "red"}, "unknown_field", "colour", id="unknown-field"),
    pytest.param({"context": {"nowhere": {"a": 1}}}, "unknown_namespace", "context",
                 id="unknown-namespace"),
    pytest.param({"context": {"learner": {"a": {"b": 1}}}}, "wrong_type", "context.learner.a",
                 id="feature-not-scalar"),
    pytest.param({"context": {"learner": {"a": "x" * 300}}}, "invalid_value",
                 "context.learner.a", id="feature-text-too-long"),
    pytest.param({"candidates": ["hint", "hint"]}, "duplicate_action_id", "candidates",
                 id="repeated-candidate"),
    pytest.param({"candidates": ["ok", "not:ok"]}, "invalid_value", "candidates[1]",
                 id="candidate-breaks-identifier"),
    pytest.param({"candidates": [f"a{i}" for i in range(MAX_ACTIONS + 1)]}, "too_many_actions",
                 "candidates", id="too-many-candidates"),
    pytest.param({"candidates": ["hint"], "action_features": {"other": {}}}, "invalid_value",
                 "action_features.other", id="features-of-no-candidate"),
    pytest.param({"action_features": {"other": {}}}, "invalid_value",
                 "action_features.other", id="features-of-no-catalogue-action"),
    pytest.param({"timestamp": "2026-01-05T08:00:00"}, "bad_timestamp", "timestamp",
                 id="timestamp-without-zone"),
    pytest.param({"timestamp": 1767600000}, "bad_timestamp", "timestamp", id="timestamp-number"),
    pytest.param({"trigger": "Z/not/in-catalogue"}, "invalid_value", "trigger",
                 id="trigger-not-in-catalogue"),
    pytest.param({"event_id": ""}, "invalid_value", "event_id", id="empty-event-id"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "code", "field"), BAD_DECISIONS)
def test_a_bad_decision_request_gets_400_naming_the_field_and_logs_nothing(
    service: Harness, change: dict[str, Any], code: str, field: str
) -> None:
    response = service.client.post("/v1/decide", json=decide_body(**change))
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["code"], error["field"]) == (code, field), error
    assert service.spooled() == 0


BAD_BODIES = [
    pytest.param(b"{not json", "undecodable", None, id="not-json"),
    pytest.param(b"", "missing_field", None, id="empty-body"),
    pytest.param(b"[1, 2]", "not_an_object", None, id="array"),
    pytest.param(b'{"learner_id": "u1"}', "missing_field", "trigger", id="trigger-missing"),
]


@pytest.mark.parametrize(("raw", "code", "field"), BAD_BODIES)
def test_an_unreadable_body_gets_400_not_422(
    service: Harness, raw: bytes, code: str, field: str | None
) -> None:
    response = service.client.post(
        "/v1/decide", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["code"], error["field"]) == (code, field), error


BAD_OUTCOMES = [
    pytest.param({"outcome": "delighted"}, "invalid_value", "outcome", id="unknown-label"),
    pytest.param({"value": "lots"}, "wrong_type", "value", id="value-not-a-number"),
    pytest.param({"event_id": "a|b"}, "invalid_value", "event_id", id="event-id-with-bar"),
    pytest.param({"trigger": LECTURE_COMPLETED}, "trigger_mismatch", "trigger",
                 id="trigger-differs-from-the-decision"),
    pytest.param({"timestamp": "yesterday"}, "bad_timestamp", "timestamp", id="bad-timestamp"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "code", "field"), BAD_OUTCOMES)
def test_a_bad_outcome_gets_400_naming_the_field_and_logs_nothing(
    service: Harness, change: dict[str, Any], code: str, field: str
) -> None:
    decided = service.client.post("/v1/decide", json=decide_body()).json()
    service.drain()
    body = {"event_id": decided["event_id"], "outcome": "helpful", **change}
    response = service.client.post("/v1/outcomes", json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["code"], error["field"]) == (code, field), error
    assert service.spooled() == 0


def test_a_non_finite_outcome_value_is_refused(service: Harness) -> None:
    raw = b'{"event_id": "e1", "outcome": "helpful", "value": Infinity, "trigger": "t"}'
    response = service.client.post(
        "/v1/outcomes", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["field"] == "value"
    assert service.spooled() == 0


def test_an_outcome_for_an_unknown_event_without_trigger_gets_404(service: Harness) -> None:
    response = service.client.post("/v1/outcomes", json={"event_id": "never", "outcome": "helpful"})
    assert response.status_code == 404
    assert error_of(response) == {
        "code": "not_found", "field": "event_id",
        "message": "no decision with event id 'never' is known",
    }  # fmt: skip
    assert service.spooled() == 0


def test_a_reused_event_id_gets_409_and_only_the_first_is_logged(service: Harness) -> None:
    first = service.client.post("/v1/decide", json=decide_body(event_id="once"))
    assert first.status_code == 200
    again = service.client.post("/v1/decide", json=decide_body(event_id="once", learner_id="u2"))
    assert again.status_code == 409
    assert (error_of(again)["code"], error_of(again)["field"]) == ("event_id_reused", "event_id")
    imps = service.impressions(service.drain())
    assert [(i.event_id, i.learner_id) for i in imps] == [("once", "u000011")]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"Authorization": "Bearer wrong-key-0123456789"}, id="wrong-bearer"),
        pytest.param({"Authorization": f"Basic {KEY}"}, id="right-key-wrong-scheme"),
        pytest.param({"Ocp-Apim-Subscription-Key": KEY[:-1]}, id="prefix-of-a-key"),
    ],
)
def test_a_missing_or_wrong_key_gets_401_and_logs_nothing(
    service: Harness, headers: dict[str, str]
) -> None:
    service.client.headers.pop("Authorization")
    for method, path, body in [("POST", "/v1/decide", decide_body()), ("GET", "/v1/policy", None)]:
        response = service.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
        error = error_of(response)
        assert (error["code"], error["field"]) == ("unauthorized", None)
    assert service.spooled() == 0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": f"Bearer {KEY}"}, id="bearer"),
        pytest.param({"Authorization": f"bearer {OTHER_KEY}"}, id="second-key-lowercase-scheme"),
        pytest.param({"Ocp-Apim-Subscription-Key": OTHER_KEY}, id="subscription-key-header"),
    ],
)
def test_any_configured_key_in_either_header_is_accepted(
    service: Harness, headers: dict[str, str]
) -> None:
    service.client.headers.pop("Authorization")
    assert service.client.post("/v1/decide", json=decide_body(), headers=headers).status_code == 200


def test_a_bad_key_is_refused_before_the_body_is_read(service: Harness) -> None:
    service.client.headers.pop("Authorization")
    response = service.client.post(
        "/v1/decide", content=b"{broken", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401


def test_without_keys_the_api_is_open(tmp_path: Path, snapshot_dir: Path) -> None:
    for harness in make_harness(tmp_path, snapshot_dir, keys=()):
        harness.client.headers.pop("Authorization")
        assert harness.client.post("/v1/decide", json=decide_body()).status_code == 200


def test_health_metrics_and_status_page_need_no_key(service: Harness) -> None:
    service.client.headers.pop("Authorization")
    for path in ("/healthz", "/metrics", "/"):
        assert service.client.get(path).status_code == 200, path


def test_a_body_over_the_size_limit_gets_413_before_parsing(service: Harness) -> None:
    padding = "x" * MAX_MESSAGE_BYTES
    by_length = service.client.post("/v1/decide", json=decide_body(pad=padding))
    assert by_length.status_code == 413
    assert (error_of(by_length)["code"], error_of(by_length)["field"]) == ("too_large", None)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"trigger": "'
        for _ in range(4):
            yield b"y" * (MAX_MESSAGE_BYTES // 2)
        yield b'"}'

    chunked = service.client.post(
        "/v1/decide", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    assert error_of(chunked)["code"] == "too_large"
    assert service.spooled() == 0


def test_a_full_spool_gets_503_and_nothing_is_remembered(
    tmp_path: Path, snapshot_dir: Path
) -> None:
    for harness in make_harness(tmp_path, snapshot_dir, max_events=1):
        assert harness.client.post("/v1/decide", json=decide_body(event_id="e1")).status_code == 200
        full = harness.client.post("/v1/decide", json=decide_body(event_id="e2"))
        assert full.status_code == 503
        assert full.headers["Retry-After"] == "1"
        assert error_of(full)["code"] == "spool_full"
        assert harness.parts.decisions.lookup("e2") is None  # the id is free again
        ready = harness.client.get("/readyz")
        assert ready.status_code == 503
        assert any("full" in r for r in ready.json()["reasons"])
        outcome = harness.client.post("/v1/outcomes", json={"event_id": "e1", "outcome": "helpful"})
        assert outcome.status_code == 503
        assert [i.event_id for i in harness.impressions(harness.drain())] == ["e1"]
        retried = harness.client.post("/v1/decide", json=decide_body(event_id="e2"))
        assert retried.status_code == 200
        assert [i.event_id for i in harness.impressions(harness.drain())] == ["e2"]


def test_without_a_snapshot_decisions_get_503_and_the_service_is_not_ready(cold: Harness) -> None:
    response = cold.client.post("/v1/decide", json=decide_body())
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert error_of(response)["code"] == "no_snapshot"
    assert cold.client.get("/v1/policy").status_code == 503
    ready = cold.client.get("/readyz")
    assert ready.status_code == 503
    assert "no verified policy snapshot loaded yet" in ready.json()["reasons"]
    assert cold.client.get("/healthz").status_code == 200
    assert cold.client.get("/").status_code == 200
    assert cold.spooled() == 0


def test_ready_once_a_snapshot_is_loaded_and_the_drainer_reached_kafka(service: Harness) -> None:
    before = service.client.get("/readyz")
    assert before.status_code == 503
    assert before.json()["reasons"] == ["Kafka not reached yet by the spool's drainer"]
    service.drain()
    assert service.client.get("/readyz").json() == {"ready": True, "reasons": []}


def test_an_unknown_route_gets_404_in_the_apis_shape(service: Harness) -> None:
    response = service.client.post("/v1/nothing-here", json={})
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_metrics_count_decisions_by_why_requests_by_route_and_spool_depth(service: Harness) -> None:
    whys = [service.client.post("/v1/decide", json=decide_body()).json()["why"] for _ in range(3)]
    service.client.post("/v1/decide", json=decide_body(trigger="Z/none"))
    text = service.client.get("/metrics").text
    for why in set(whys):
        assert f'nudge_decisions_total{{api="v1",why="{why}"}} {float(whys.count(why))}' in text
    assert 'nudge_http_requests_total{route="/v1/decide",status="200"} 3.0' in text
    assert 'nudge_http_requests_total{route="/v1/decide",status="400"} 1.0' in text
    assert "nudge_spool_depth_events 3.0" in text
    decider = service.parts.decider()
    assert decider is not None
    assert f'nudge_snapshot_info{{version="{decider.version}"}} 1.0' in text


def test_the_status_page_shows_the_policy_version(service: Harness) -> None:
    service.client.post("/v1/decide", json=decide_body())
    page = service.client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    decider = service.parts.decider()
    assert decider is not None
    assert decider.version in page.text


def test_an_unexpected_failure_gets_500_in_the_apis_shape_and_logs_nothing(
    service: Harness,
) -> None:
    class Broken:
        def decide(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("VW exploded")

    service.parts.decider = lambda: Broken()  # type: ignore[assignment,return-value]
    client = TestClient(service.client.app, raise_server_exceptions=False)
    response = client.post(
        "/v1/decide", json=decide_body(), headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 500
    assert error_of(response) == {
        "code": "internal", "field": None, "message": "internal error: RuntimeError",
    }  # fmt: skip
    assert service.spooled() == 0


def test_a_wrong_method_is_counted_under_its_route(service: Harness) -> None:
    assert service.client.get("/v1/decide").status_code == 405
    text = service.client.get("/metrics").text
    assert 'nudge_http_requests_total{route="/v1/decide",status="405"} 1.0' in text
