"""The closed loop on the production path: the simulated platform asks `nudge serve` over HTTP,
the service logs to Kafka (through its spool), `nudge consume` learns and publishes snapshots,
the service hot-reloads them; the true reward per decision climbs as in the library loop."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from bandit.simulation.closed_loop import ensure_snapshot
from streams.kafka_io import end_offsets
from tests.integration.closed_loop_checks import (
    DECISIONS,
    ROUNDS,
    SEED,
    check_final_policy,
    check_rounds,
)
from tests.integration.conftest import Deployment
from tests.integration.serving import API_KEY, get, serving, wait_drained

pytestmark = pytest.mark.kafka


def _metric_total(base: str, name: str) -> float:
    """The sum of every sample of counter `name` in /metrics."""
    _, body = get(f"{base}/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    )


def test_the_closed_loop_over_http_learns_as_the_library_loop_does(
    deployment: Callable[..., Deployment], tmp_path: Path
) -> None:
    dep = deployment(
        simulator={"learners": 1000}, serve={"spool_directory": str(tmp_path / "spool")}
    )
    ensure_snapshot(dep.config, SEED)  # the service is ready once it has a snapshot
    consumer = dep.popen("consume")
    report = dep.workdir / "rounds.json"
    try:
        with serving(dep, workers=2) as base:
            done = dep.nudge(
                "loop", "--rounds", str(ROUNDS), "--decisions", str(DECISIONS),
                "--seed", str(SEED), "--report-json", str(report), "--wait", "90",
                "--http", base, "--api-key", API_KEY, timeout=900,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            wait_drained(base)
            # Every decision and outcome went through the service, which logged them all.
            decisions = _metric_total(base, "nudge_decisions_total")
            outcomes = _metric_total(base, "nudge_outcomes_total")
    finally:
        consumer.send_signal(signal.SIGTERM)
        _, err = consumer.communicate(timeout=120)
    assert consumer.returncode == 0, err
    k = dep.config.kafka
    logged = end_offsets(k, [k.impressions_topic, k.outcomes_topic])
    assert decisions == ROUNDS * DECISIONS == logged[f"{k.impressions_topic}/0"]
    assert outcomes == logged[f"{k.outcomes_topic}/0"] > 0

    check_rounds(orjson.loads(report.read_bytes()))
    check_final_policy(dep)
