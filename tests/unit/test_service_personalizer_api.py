"""Personalizer's v1.0 API of `nudge serve` (rank, reward, activate), in memory.

The app runs over real parts; the spool is drained into an in-memory broker and decoded with
the consumer's decoder, so each test proves what the consumer would learn: a rank logs the
impression Personalizer's client was answered with, excluded actions are never chosen, a
deferred rank is logged only when activated (its held rewards after it), and a reward value
becomes the outcome whose configured reward is nearest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from decision_fixtures import QUIZ_FAILED, T0
from service_fixtures import (
    DEFERRED_EXPIRY_S,
    KEY,
    MAX_MESSAGE_BYTES,
    Harness,
    make_harness,
    snapshot_dir,
)

from bandit.events import OutcomeLabel

__all__ = ["snapshot_dir"]  # the module-scoped fixture, used by name

BASE = "/personalizer/v1.0"
ACTIONS: list[dict[str, Any]] = [
    {"id": "hint", "features": [{"kind": "hint"}, {"tone": "instructive"}]},
    {"id": "review_notes.v1", "features": [{"kind": "review_notes", "version": "v1"}]},
    {"id": "encourage", "features": [{"kind": "encourage", "style": {"tone": "friendly"}}]},
    {"id": "none", "features": [{"kind": "none"}]},
]
CONTEXT: list[dict[str, Any]] = [
    {"trigger": QUIZ_FAILED, "learner_id": "u000011"},
    {"learner": {"novice": True, "paid": 1, "profile": {"age": "50+"}}},
    {"course": {"difficulty": 3, "tags": ["business", "intro"]}},
    {"prior_ctr": 0.35},
]


@pytest.fixture
def service(tmp_path: Path, snapshot_dir: Path) -> Iterator[Harness]:
    client_headers = {"Ocp-Apim-Subscription-Key": KEY}
    for harness in make_harness(tmp_path, snapshot_dir):
        harness.client.headers.pop("Authorization")
        harness.client.headers.update(client_headers)
        yield harness


def rank_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contextFeatures": CONTEXT,
        "actions": ACTIONS,
        "deferActivation": False,
    }
    body.update(fields)
    return body


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "target"}, body
    return dict(body["error"])


def test_rank_answers_201_and_logs_the_impression_it_answered_with(service: Harness) -> None:
    response = service.client.post(f"{BASE}/rank", json=rank_body(eventId="rank-1"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"ranking", "eventId", "rewardActionId"}
    assert body["eventId"] == "rank-1"
    ranking = body["ranking"]
    assert ranking[0]["id"] == body["rewardActionId"]
    assert sorted(r["id"] for r in ranking) == sorted(a["id"] for a in ACTIONS)
    assert sum(r["probability"] for r in ranking) == pytest.approx(1.0)
    others = [r["probability"] for r in ranking[1:]]
    assert others == sorted(others, reverse=True)

    logged = service.drain()
    assert [(r.topic, r.key) for r in logged] == [
        (service.parts.config.kafka.impressions_topic, b"rank-1")
    ]
    (imp,) = service.impressions(logged)
    assert imp.chosen == body["rewardActionId"]
    assert imp.probability == ranking[0]["probability"]
    by_id = dict(zip(imp.action_ids, imp.pmf or (), strict=True))
    assert by_id == {r["id"]: r["probability"] for r in ranking}
    assert (imp.trigger, imp.learner_id, imp.ts) == (QUIZ_FAILED, "u000011", T0)
    assert imp.context == {
        "learner": {"novice": "true", "paid": 1, "profile.age": "50+", "prior_ctr": 0.35},
        "course": {"difficulty": 3, "tags.0": "business", "tags.1": "intro"},
    }
    assert imp.action_features[2] == {"kind": "encourage", "style.tone": "friendly"}


def test_rank_without_event_id_or_context_generates_the_id_and_uses_the_defaults(
    service: Harness,
) -> None:
    response = service.client.post(f"{BASE}/rank", json={"actions": ACTIONS})
    assert response.status_code == 201, response.text
    (imp,) = service.impressions(service.drain())
    assert imp.event_id == response.json()["eventId"]
    assert (imp.trigger, imp.learner_id, imp.context) == ("personalizer", "anonymous", {})


def test_excluded_actions_are_never_chosen_and_rank_last_with_probability_zero(
    service: Harness,
) -> None:
    excluded = ["encourage", "hint"]
    for _ in range(40):
        body = service.client.post(f"{BASE}/rank", json=rank_body(excludedActions=excluded)).json()
        assert body["rewardActionId"] not in excluded
        assert body["ranking"][-2:] == [
            {"id": "hint", "probability": 0.0},
            {"id": "encourage", "probability": 0.0},
        ]  # in request order
        assert sum(r["probability"] for r in body["ranking"][:-2]) == pytest.approx(1.0)
    imps = service.impressions(service.drain())
    assert len(imps) == 40
    assert {i.action_ids for i in imps} == {("review_notes.v1", "none")}


def test_a_deferred_rank_is_logged_only_on_activation_then_its_held_rewards(
    service: Harness,
) -> None:
    rank = service.client.post(
        f"{BASE}/rank", json=rank_body(eventId="later", deferActivation=True)
    )
    assert rank.status_code == 201
    service.clock.advance(5.0)
    assert (
        service.client.post(f"{BASE}/events/later/reward", json={"value": 1.0}).status_code == 204
    )
    assert (
        service.client.post(f"{BASE}/events/later/reward", json={"value": -1.0}).status_code == 204
    )
    assert service.drain() == []  # nothing logged before the activation

    service.clock.advance(60.0)
    assert service.client.post(f"{BASE}/events/later/activate").status_code == 204
    logged = service.drain()
    cfg = service.parts.config.kafka
    assert [(r.topic, r.key) for r in logged] == [
        (cfg.impressions_topic, b"later"), (cfg.outcomes_topic, b"later"),
        (cfg.outcomes_topic, b"later"),
    ]  # fmt: skip
    (imp,) = service.impressions(logged)
    outs = service.outcomes(logged)
    assert imp.ts == T0 + 65.0  # stamped at the activation
    assert imp.chosen == rank.json()["rewardActionId"]
    assert imp.probability == rank.json()["ranking"][0]["probability"]
    assert [(o.label, o.value, o.ts) for o in outs] == [
        (OutcomeLabel.HELPFUL, 1.0, imp.ts), (OutcomeLabel.NOT_HELPFUL, -1.0, imp.ts),
    ]  # fmt: skip

    # Activating again logs nothing more; a reward now goes straight to the log.
    assert service.client.post(f"{BASE}/events/later/activate").status_code == 204
    service.clock.advance(1.0)
    assert (
        service.client.post(f"{BASE}/events/later/reward", json={"value": 0.0}).status_code == 204
    )
    (late,) = service.drain()
    assert late.topic == cfg.outcomes_topic
    assert late.event.ts == T0 + 66.0


def test_a_deferred_rank_never_activated_expires_and_is_counted(service: Harness) -> None:
    service.client.post(f"{BASE}/rank", json=rank_body(eventId="forgotten", deferActivation=True))
    service.clock.advance(DEFERRED_EXPIRY_S + 1.0)
    activate = service.client.post(f"{BASE}/events/forgotten/activate")
    assert activate.status_code == 404
    assert error_of(activate)["code"] == "ResourceNotFound"
    # The service drops it within a few seconds of its expiry (not on every request).
    assert "nudge_deferred_expired_total 1.0" in service.client.get("/metrics").text
    assert service.drain() == []


REWARDS = [
    pytest.param(1.0, OutcomeLabel.HELPFUL, id="one-helpful"),
    pytest.param(0.8, OutcomeLabel.HELPFUL, id="nearer-helpful"),
    pytest.param(0.5, OutcomeLabel.IGNORED, id="tie-is-ignored"),
    pytest.param(0.0, OutcomeLabel.IGNORED, id="zero-ignored"),
    pytest.param(-0.7, OutcomeLabel.NOT_HELPFUL, id="nearer-not-helpful"),
]


@pytest.mark.parametrize(("value", "label"), REWARDS)
def test_a_reward_value_is_logged_as_the_nearest_outcome_with_the_value(
    service: Harness, value: float, label: OutcomeLabel
) -> None:
    event_id = service.client.post(f"{BASE}/rank", json=rank_body()).json()["eventId"]
    service.clock.advance(2.0)
    response = service.client.post(f"{BASE}/events/{event_id}/reward", json={"value": value})
    assert response.status_code == 204
    assert response.content == b""
    logged = service.drain()
    (out,) = service.outcomes(logged)
    assert (out.event_id, out.trigger, out.label, out.value, out.ts) == (
        event_id, QUIZ_FAILED, label, value, T0 + 2.0,
    )  # fmt: skip
    assert logged[-1].key == event_id.encode()


BAD_RANKS = [
    pytest.param({"contextFeatures": [{"learner": {}}, {"user": {"a": 1}}]},
                 "contextFeatures[1].user", id="unknown-namespace"),
    pytest.param({"contextFeatures": [{"trigger": "has space"}]}, "contextFeatures[0].trigger",
                 id="trigger-breaks-identifier"),
    pytest.param({"contextFeatures": [{"learner": {"a": 1}}, {"learner": {"a": 2}}]},
                 "contextFeatures[1].learner.a", id="feature-twice"),
    pytest.param({"contextFeatures": ["x"]}, "contextFeatures[0]", id="context-not-an-object"),
    pytest.param({"actions": [{"id": "a b", "features": []}]}, "actions[0].id",
                 id="action-id-breaks-identifier"),
    pytest.param({"actions": [{"id": "a", "features": [{"x": 1}, {"x": 2}]}]},
                 "actions[0].features[1].x", id="action-feature-twice"),
    pytest.param({"actions": [{"id": "a", "features": []}, {"id": "a", "features": []}]},
                 "actions[1].id", id="action-id-twice"),
    pytest.param({"actions": []}, "actions", id="no-actions"),
    pytest.param({"actions": None}, "actions", id="actions-null"),
    pytest.param({"excludedActions": ["nope"]}, "excludedActions[0]", id="excluded-unknown"),
    pytest.param({"excludedActions": [a["id"] for a in ACTIONS]}, "excludedActions",
                 id="all-excluded"),
    pytest.param({"eventId": "a:b"}, "eventId", id="event-id-breaks-identifier"),
    pytest.param({"colour": 1}, "colour", id="unknown-field"),
    pytest.param({"deferActivation": "maybe"}, "deferActivation", id="defer-not-boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "target"), BAD_RANKS)
def test_a_bad_rank_gets_400_bad_request_with_the_target_and_logs_nothing(
    service: Harness, change: dict[str, Any], target: str
) -> None:
    response = service.client.post(f"{BASE}/rank", json=rank_body(**change))
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["code"], error["target"]) == ("BadRequest", target), error
    assert service.spooled() == 0


@pytest.mark.parametrize(
    ("body", "target"),
    [
        pytest.param({}, "value", id="value-missing"),
        pytest.param({"value": "high"}, "value", id="value-not-a-number"),
        pytest.param({"value": 1, "extra": 2}, "extra", id="unknown-field"),
    ],
)
def test_a_bad_reward_gets_400_with_the_target(
    service: Harness, body: dict[str, Any], target: str
) -> None:
    event_id = service.client.post(f"{BASE}/rank", json=rank_body()).json()["eventId"]
    service.drain()
    response = service.client.post(f"{BASE}/events/{event_id}/reward", json=body)
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["target"]) == ("BadRequest", target)
    assert service.spooled() == 0


def test_an_event_id_in_the_path_must_meet_the_contract(service: Harness) -> None:
    response = service.client.post(f"{BASE}/events/a:b/activate")
    assert response.status_code == 400
    assert error_of(response)["target"] == "eventId"


@pytest.mark.parametrize("action", ["reward", "activate"])
def test_an_unknown_event_gets_404_resource_not_found(service: Harness, action: str) -> None:
    response = service.client.post(f"{BASE}/events/never-ranked/{action}", json={"value": 1.0})
    assert response.status_code == 404
    assert (error_of(response)["code"], error_of(response)["target"]) == (
        "ResourceNotFound", "eventId",
    )  # fmt: skip
    assert service.spooled() == 0


def test_a_reused_event_id_is_a_bad_request(service: Harness) -> None:
    assert service.client.post(f"{BASE}/rank", json=rank_body(eventId="dup")).status_code == 201
    again = service.client.post(f"{BASE}/rank", json=rank_body(eventId="dup"))
    assert again.status_code == 400
    assert error_of(again)["target"] == "eventId"
    assert len(service.drain()) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"Ocp-Apim-Subscription-Key": "wrong-key-0123456789"}, id="wrong-key"),
        pytest.param({"Authorization": "Bearer wrong-key-0123456789"}, id="wrong-bearer"),
    ],
)
def test_a_missing_or_wrong_key_gets_401_permission_denied(
    service: Harness, headers: dict[str, str]
) -> None:
    service.client.headers.pop("Ocp-Apim-Subscription-Key")
    for path, body in [("rank", rank_body()), ("events/e/reward", {"value": 1}),
                       ("events/e/activate", None)]:  # fmt: skip
        response = service.client.post(f"{BASE}/{path}", json=body, headers=headers)
        assert response.status_code == 401, path
        assert error_of(response)["code"] == "PermissionDenied"
    assert service.spooled() == 0


def test_a_bearer_key_works_for_personalizer_too(service: Harness) -> None:
    service.client.headers.pop("Ocp-Apim-Subscription-Key")
    response = service.client.post(
        f"{BASE}/rank", json=rank_body(), headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 201


def test_a_rank_over_the_size_limit_gets_413_in_personalizers_shape(service: Harness) -> None:
    big = [{"learner": {f"f{i}": "x" * 200 for i in range(MAX_MESSAGE_BYTES // 200)}}]
    response = service.client.post(f"{BASE}/rank", json=rank_body(contextFeatures=big))
    assert response.status_code == 413
    assert error_of(response)["code"] == "BadRequest"
    assert service.spooled() == 0


def test_a_full_spool_gets_503_service_unavailable_and_nothing_is_remembered(
    tmp_path: Path, snapshot_dir: Path
) -> None:
    for harness in make_harness(tmp_path, snapshot_dir, max_events=1):
        assert harness.client.post(f"{BASE}/rank", json=rank_body(eventId="r1")).status_code == 201
        full = harness.client.post(f"{BASE}/rank", json=rank_body(eventId="r2"))
        assert full.status_code == 503
        assert full.headers["Retry-After"] == "1"
        assert error_of(full)["code"] == "ServiceUnavailable"
        assert harness.parts.decisions.lookup("r2") is None
        reward = harness.client.post(f"{BASE}/events/r1/reward", json={"value": 1.0})
        assert reward.status_code == 503
        assert [i.event_id for i in harness.impressions(harness.drain())] == ["r1"]


def test_an_activation_the_full_spool_cannot_take_stays_deferred(
    tmp_path: Path, snapshot_dir: Path
) -> None:
    for harness in make_harness(tmp_path, snapshot_dir, max_events=2):
        assert (
            harness.client.post(
                f"{BASE}/rank", json=rank_body(eventId="d1", deferActivation=True)
            ).status_code
            == 201
        )
        assert (
            harness.client.post(f"{BASE}/events/d1/reward", json={"value": 1.0}).status_code == 204
        )
        assert harness.client.post(f"{BASE}/rank", json=rank_body(eventId="r1")).status_code == 201
        # Room for one more event, but the activation needs two (impression and reward).
        refused = harness.client.post(f"{BASE}/events/d1/activate")
        assert refused.status_code == 503
        waiting = harness.parts.decisions.lookup("d1")
        assert waiting is not None and waiting.deferred and not waiting.activated
        harness.drain()
        assert harness.client.post(f"{BASE}/events/d1/activate").status_code == 204
        logged = harness.drain()
        assert [(r.topic.split(".")[-1], r.key) for r in logged] == [
            ("impressions", b"d1"), ("outcomes", b"d1"),
        ]  # fmt: skip


def test_without_a_snapshot_rank_gets_503_service_unavailable(tmp_path: Path) -> None:
    for harness in make_harness(tmp_path, None):
        harness.client.headers["Ocp-Apim-Subscription-Key"] = KEY
        response = harness.client.post(f"{BASE}/rank", json=rank_body())
        assert response.status_code == 503
        assert error_of(response)["code"] == "ServiceUnavailable"
        assert "Retry-After" in response.headers


def test_decisions_and_rewards_are_counted_under_the_personalizer_api(service: Harness) -> None:
    event_id = service.client.post(f"{BASE}/rank", json=rank_body()).json()["eventId"]
    service.client.post(f"{BASE}/events/{event_id}/reward", json={"value": 1.0})
    text = service.client.get("/metrics").text
    assert 'nudge_decisions_total{api="personalizer"' in text
    assert 'nudge_outcomes_total{api="personalizer",outcome="helpful"} 1.0' in text
    assert (
        'nudge_http_requests_total{route="/personalizer/v1.0/events/{eventId}/reward",status="204"} 1.0'
        in text
    )
