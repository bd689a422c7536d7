"""Kafka stopped for 30 s while `nudge serve` answers 5,000 decisions: none fails, the spool
holds the impressions and drains them in order when the broker is back; each is learned once."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from streams.stats import Ledger
from tests.integration.conftest import ROOT, Deployment
from tests.integration.serving import (
    API_KEY,
    get,
    metric,
    serving,
    spool_depth,
    stats,
    wait_drained,
)

pytestmark = pytest.mark.kafka

DECISIONS = 5000
OUTAGE_S = 30.0
PORT = 19492  # its own broker (and +1..+3): stopping it disturbs no other test


def _kafka(action: str, data: Path) -> None:
    env = {**os.environ, "KAFKA_PORT": str(PORT), "KAFKA_DATA_DIR": str(data)}
    subprocess.run([str(ROOT / "scripts" / "kafka"), action], check=True, cwd=ROOT, env=env)


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("kafka-outage")
    _kafka("start", data)
    try:
        yield data
    finally:
        _kafka("stop", data)


def test_decisions_never_fail_while_kafka_is_down_and_every_impression_is_learned_once(
    deployment: Callable[..., Deployment], own_broker: Path, tmp_path: Path
) -> None:
    dep = deployment(
        kafka={"bootstrap_servers": f"127.0.0.1:{PORT}", "connect_timeout_s": 5},
        serve={"spool_directory": str(tmp_path / "spool"), "produce_timeout_s": 3},
    )
    first = dep.nudge("consume", "--until-idle", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    ids: list[str] = []
    seen_during_outage: dict[str, object] = {}
    with serving(dep) as base:
        outage = threading.Thread(
            target=_outage, args=(base, own_broker, seen_during_outage), daemon=True
        )
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            started = time.monotonic()
            for n in range(DECISIONS):
                if n == 500:
                    outage.start()
                event_id = f"out-{n:05d}"
                body = {
                    "trigger": "A/quiz-3/quiz-failed",
                    "learner_id": f"u{n % 97:04d}",
                    "context": {"learner": {"novice": n % 2}},
                    "candidates": ["hint", "review_notes.v1", "none"],
                    "event_id": event_id,
                }
                response = client.post("/v1/decide", json=body)
                assert response.status_code == 200, response.text
                ids.append(event_id)
                if n % 3 == 0 and response.json()["action"] != "none":
                    r = client.post(
                        "/v1/outcomes", json={"event_id": event_id, "outcome": "helpful"}
                    )
                    assert r.status_code == 202, r.text
                # ~100 decisions/s: the 30 s outage falls in the middle of the run
                time.sleep(max(0.0, started + (n + 1) / 100 - time.monotonic()))
        outage.join(timeout=180)
        assert not outage.is_alive()
        wait_drained(base, timeout_s=180)

    # During the outage decisions went on, the spool grew and readiness said why.
    assert seen_during_outage["spool"] > 100, seen_during_outage
    assert seen_during_outage["ready"] == 503, seen_during_outage
    assert seen_during_outage["produce_errors"] >= 1, seen_during_outage
    learned = stats(dep)
    ledger = Ledger.of(ids)
    assert learned["ledger"] == {"count": ledger.count, "digest": f"{ledger.digest:016x}"}
    reasons = learned["dead_letters_by_reason"]
    assert set(reasons) <= {"duplicate_impression", "duplicate_outcome"}, reasons


def _outage(base: str, data: Path, seen: dict[str, object]) -> None:
    """Stop the broker for 30 s, look at the service meanwhile, start it again."""
    _kafka("stop", data)
    stopped = time.monotonic()
    time.sleep(OUTAGE_S - 5)
    seen["spool"] = spool_depth(base)
    seen["ready"], seen["ready_body"] = get(f"{base}/readyz")
    seen["produce_errors"] = metric(base, "nudge_produce_errors_total")
    time.sleep(max(0.0, stopped + OUTAGE_S - time.monotonic()))
    _kafka("start", data)
