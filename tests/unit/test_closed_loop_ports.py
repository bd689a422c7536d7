"""The closed loop's decision port: the library in process, or `nudge serve` over HTTP.

The HTTP port is tested above the wire with `httpx.MockTransport`: a handler that answers with
the library port shows that what the loop logs through HTTP is byte for byte what it logs in
process (the same request fields, event times and pmf order). The real service is exercised by
tests/integration/test_closed_loop_http.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import orjson
import pytest

from bandit.config import Config, load_config
from bandit.errors import ServiceError
from bandit.events import OutcomeLabel
from bandit.simulation.closed_loop import ClosedLoop, LoopOptions, RoundReport, ensure_snapshot
from bandit.simulation.decision_port import LibraryPort, PolicyView
from nudge.service.client import HttpPort, policy_view, served_decision
from streams.memory import MemoryBroker, MemorySink

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = LoopOptions(rounds=2, decisions_per_round=300, seed=7, snapshot_wait_s=0.05)


def _config(tmp_path: Path, name: str) -> Config:
    environ = {"NUDGE_SNAPSHOTS__DIRECTORY": str(tmp_path / name / "snapshots")}
    return load_config(ROOT / "config.yaml", environ=environ)


def _end_offsets(cfg: Config, broker: MemoryBroker) -> Callable[[], dict[str, int]]:
    topics = (cfg.kafka.impressions_topic, cfg.kafka.outcomes_topic)
    return lambda: {f"{t}/0": broker.end_offset(t, 0) for t in topics if t in broker.topics()}


def _logged(broker: MemoryBroker) -> list[tuple[str, bytes | None, bytes | None]]:
    return [(t, r.key, r.value) for t in sorted(broker.topics()) for r in broker.records(t)]


def _library_loop(cfg: Config) -> tuple[list[RoundReport], MemoryBroker]:
    broker = MemoryBroker()
    ensure_snapshot(cfg, OPTIONS.seed)
    port = LibraryPort.open(cfg, MemorySink(broker), OPTIONS.seed)
    try:
        reports = ClosedLoop(cfg, OPTIONS, port, _end_offsets(cfg, broker)).run(lambda r: None)
    finally:
        port.close()
    return reports, broker


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _service(port: LibraryPort) -> Callable[[httpx.Request], httpx.Response]:
    """A stand-in for `nudge serve`: our API answered by the library port."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/policy":
            view = port.policy()
            body = {"version": view.version, "trained_through": dict(view.trained_through),
                    "examples": view.examples}  # fmt: skip
            return httpx.Response(200, json=body)
        req = orjson.loads(request.content)
        if request.url.path == "/v1/decide":
            d = port.decide(
                req["trigger"], req["learner_id"], req["context"], req["candidates"],
                req["event_id"], _seconds(req["timestamp"]),
            )  # fmt: skip
            pmf = [
                {"action": a, "probability": p}
                for a, p in zip(req["candidates"], d.pmf, strict=True)
            ]
            body = {"event_id": req["event_id"], "action": d.action, "why": d.why,
                    "probability": d.probability, "pmf": pmf[::-1],  # any order will do
                    "policy_version": d.policy_version}  # fmt: skip
            return httpx.Response(200, json=body)
        port.report_outcome(
            req["event_id"], req["trigger"], OutcomeLabel(req["outcome"]), req["value"],
            _seconds(req["timestamp"]),
        )  # fmt: skip
        return httpx.Response(202, json={"event_id": req["event_id"], "accepted": True})

    return handle


def test_the_loop_over_http_logs_byte_for_byte_what_the_library_loop_logs(
    tmp_path: Path,
) -> None:
    lib_cfg = _config(tmp_path, "library")
    lib_reports, lib_broker = _library_loop(lib_cfg)

    cfg = _config(tmp_path, "http")
    broker = MemoryBroker()
    ensure_snapshot(cfg, OPTIONS.seed)
    service = LibraryPort.open(cfg, MemorySink(broker), OPTIONS.seed)
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        answer = _service(service)(request)
        service.flush()  # the service logs what it accepted (through its spool)
        return answer

    client = HttpPort("http://nudge.test", "k" * 20, transport=httpx.MockTransport(handle))
    try:
        http_reports = ClosedLoop(cfg, OPTIONS, client, _end_offsets(cfg, broker)).run(
            lambda r: None
        )
    finally:
        client.close()
        service.close()

    assert len(_logged(lib_broker)) > 2 * OPTIONS.decisions_per_round
    assert _logged(broker) == _logged(lib_broker)
    assert [r.as_dict() | {"waited_s": 0} for r in http_reports] == [
        r.as_dict() | {"waited_s": 0} for r in lib_reports
    ]
    assert {r.headers["Authorization"] for r in requests} == {"Bearer " + "k" * 20}


def test_the_loop_waits_until_the_topics_hold_what_it_sent_before_trusting_the_policy(
    tmp_path: Path,
) -> None:
    """A service logs a little after it answers: end offsets read right after a round are
    short, and a snapshot trained through them would not cover the round."""
    cfg = _config(tmp_path, "late")
    broker = MemoryBroker()
    sink = MemorySink(broker)
    ensure_snapshot(cfg, OPTIONS.seed)
    port = LibraryPort.open(cfg, sink, OPTIONS.seed)
    read = _end_offsets(cfg, broker)
    unflushed_at_each_look: list[int] = []

    def late_end_offsets() -> dict[str, int]:
        unflushed_at_each_look.append(sink.unflushed)
        if len(unflushed_at_each_look) % 4 == 0:
            sink.flush()  # the messages reach the topics only on every 4th look
        return read()

    def learner_always_caught_up() -> PolicyView:
        view = LibraryPort.policy(port)
        return PolicyView(view.version, read(), view.examples)

    port.flush = lambda: None  # type: ignore[method-assign]  # the service's spool drains later
    port.policy = learner_always_caught_up  # type: ignore[method-assign]
    options = LoopOptions(rounds=2, decisions_per_round=200, seed=7, snapshot_wait_s=30.0)
    try:
        reports = ClosedLoop(cfg, options, port, late_end_offsets).run(lambda r: None)
    finally:
        port.close()
    assert [r.caught_up for r in reports] == [True, True]
    # Looks: 1 before the first round; 2-4 after it (flushed on the 4th); 5-8 after the second.
    assert len(unflushed_at_each_look) == 8, unflushed_at_each_look
    assert all(n > 0 for n in unflushed_at_each_look[1:4] + unflushed_at_each_look[4:8])
    assert len(_logged(broker)) >= 400


def _port(
    handler: Callable[[httpx.Request], httpx.Response], wait_s: float = 10.0
) -> tuple[HttpPort, list[float]]:
    pauses: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    port = HttpPort(
        "http://nudge.test/", None, wait_s=wait_s, transport=httpx.MockTransport(handler),
        sleep=sleep, clock=lambda: now[0],
    )  # fmt: skip
    return port, pauses


POLICY = {"version": "nudge-000003", "trained_through": {"t.impressions/0": 12}, "examples": 9}


def test_a_503_is_retried_after_its_retry_after_until_the_service_answers() -> None:
    answers = [
        httpx.Response(503, headers={"Retry-After": "1"},
                       json={"error": {"code": "no_snapshot", "field": None, "message": "…"}}),
        httpx.Response(503, headers={"Retry-After": "30"}, json={}),
        httpx.Response(200, json=POLICY),
    ]  # fmt: skip
    port, pauses = _port(lambda request: answers.pop(0))
    view = port.policy()
    assert (view.version, dict(view.trained_through), view.examples) == (
        "nudge-000003", {"t.impressions/0": 12}, 9,
    )  # fmt: skip
    assert pauses == [1.0, 2.0]  # a long Retry-After is capped: recovery is noticed soon


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (401, {"code": "unauthorized", "field": None, "message": "wrong key"},
         "401 unauthorized: wrong key"),
        (400, {"code": "unknown_namespace", "field": "context.x", "message": "not configured"},
         "400 unknown_namespace (context.x): not configured"),
        (409, {"code": "duplicate_event_id", "field": "event_id", "message": "used"},
         "409 duplicate_event_id (event_id): used"),
    ],
)  # fmt: skip
def test_a_refusal_other_than_503_fails_at_once_naming_the_code_and_field(
    status: int, error: dict[str, object], expected: str
) -> None:
    port, pauses = _port(lambda request: httpx.Response(status, json={"error": error}))
    with pytest.raises(ServiceError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        port.report_outcome("e1", "A/quiz-1/quiz-failed", OutcomeLabel.HELPFUL, 1.0, 1.7e9)
    assert pauses == []


def test_an_unreachable_service_is_retried_until_wait_s_then_named_in_the_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    port, pauses = _port(refuse, wait_s=3.0)
    with pytest.raises(ServiceError, match=r"GET http://nudge.test/v1/policy: cannot connect"):
        port.policy()
    assert sum(pauses) == pytest.approx(3.0) and len(pauses) == 6


def test_a_request_that_may_have_arrived_is_not_sent_again() -> None:
    calls: list[httpx.Request] = []

    def time_out(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("no answer", request=request)

    port, _ = _port(time_out)
    with pytest.raises(ServiceError, match="ReadTimeout"):
        port.decide("A/quiz-1/quiz-failed", "u1", {}, ["hint", "none"], "e1", 1.7e9)
    assert len(calls) == 1  # a retry could log the decision twice


def test_the_pmf_is_returned_in_the_order_of_the_candidates_asked_about() -> None:
    body = {"action": "none", "probability": 0.7, "why": "exploit", "policy_version": "p",
            "pmf": [{"action": "none", "probability": 0.7}, {"action": "hint", "probability": 0.3}]}  # fmt: skip
    assert served_decision(body, ["hint", "none"]).pmf == (0.3, 0.7)
    with pytest.raises(ServiceError, match="unexpected body"):
        served_decision(body, ["hint", "none", "peer_norm"])


def test_a_policy_answer_without_the_examples_count_is_refused() -> None:
    with pytest.raises(ServiceError, match="examples"):
        policy_view({k: v for k, v in POLICY.items() if k != "examples"})


def test_an_api_key_without_a_service_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nudge.cli import main

    assert main(["loop", "--api-key", "k" * 20]) == 2
    assert "--api-key is for the service: give --http URL too" in capsys.readouterr().err
