"""The service's Prometheus metrics: the exposition of one process, and exact totals over
several worker processes sharing one multiprocess directory."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nudge.service.metrics import MULTIPROC_ENV, ServiceMetrics, prepare_multiprocess_dir

T = TypeVar("T")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: bytes) -> Samples:
    """Every sample of an exposition, keyed by its name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def single(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)


@pytest.mark.usefixtures("single")
def test_one_process_exposes_every_family_with_the_recorded_values() -> None:
    m = ServiceMetrics(clock=lambda: 1_000.0)
    m.decided("v1", "exploit", 0.002)
    m.decided("v1", "exploit", 0.0004)
    m.decided("personalizer", "explore", 0.3)
    m.request("/v1/decide", 200)
    m.request("/v1/decide", 200)
    m.request("/personalizer/v1.0/rank", 401)
    m.outcome("v1", "helpful")
    m.produce_error()
    m.deferred_expired(3)
    m.set_spool(5, 1234)
    m.set_snapshot("snap-000012", 900.0)

    body, content_type = m.render()
    s = parse(body)
    assert content_type.startswith("text/plain")
    assert value(s, "nudge_decisions_total", api="v1", why="exploit") == 2
    assert value(s, "nudge_decisions_total", api="personalizer", why="explore") == 1
    assert value(s, "nudge_decision_latency_seconds_bucket", api="v1", le="0.0005") == 1
    assert value(s, "nudge_decision_latency_seconds_bucket", api="v1", le="0.0025") == 2
    assert value(s, "nudge_decision_latency_seconds_count", api="v1") == 2
    assert value(s, "nudge_decision_latency_seconds_sum", api="v1") == pytest.approx(0.0024)
    assert value(s, "nudge_decision_latency_seconds_bucket", api="personalizer", le="0.25") == 0
    assert value(s, "nudge_decision_latency_seconds_bucket", api="personalizer", le="0.5") == 1
    assert value(s, "nudge_http_requests_total", route="/v1/decide", status="200") == 2
    assert value(s, "nudge_http_requests_total", route="/personalizer/v1.0/rank", status="401") == 1
    assert value(s, "nudge_outcomes_total", api="v1", outcome="helpful") == 1
    assert value(s, "nudge_produce_errors_total") == 1
    assert value(s, "nudge_deferred_expired_total") == 3
    assert value(s, "nudge_spool_depth_events") == 5
    assert value(s, "nudge_spool_depth_bytes") == 1234
    assert value(s, "nudge_snapshot_info", version="snap-000012") == 1
    assert value(s, "nudge_snapshot_created_timestamp_seconds") == 900
    assert value(s, "nudge_snapshot_age_seconds") == 100


@pytest.mark.usefixtures("single")
def test_snapshot_age_is_computed_at_each_scrape_and_only_the_served_version_shows() -> None:
    now = [1_000.0]
    m = ServiceMetrics(clock=lambda: now[0])
    assert not any(name.startswith("nudge_snapshot") for name, _ in parse(m.render()[0]))

    m.set_snapshot("snap-000001", 990.0)
    assert value(parse(m.render()[0]), "nudge_snapshot_age_seconds") == 10
    now[0] = 1_060.0
    m.set_snapshot("snap-000002", None)  # created time unknown: version only, no age
    s = parse(m.render()[0])
    assert [labels for name, labels in s if name == "nudge_snapshot_info"] == [
        frozenset({("version", "snap-000002")})
    ]
    assert ("nudge_snapshot_age_seconds", frozenset()) not in s


@pytest.mark.usefixtures("single")
def test_decisions_by_why_sums_over_apis_and_instances_do_not_share_counts() -> None:
    m, other = ServiceMetrics(), ServiceMetrics()
    for api, why in [("v1", "exploit"), ("personalizer", "exploit"), ("v1", "cold_start")]:
        m.decided(api, why, 0.001)
    other.decided("v1", "retest", 0.001)
    assert m.decisions_by_why() == {"cold_start": 1, "exploit": 2}
    assert other.decisions_by_why() == {"retest": 1}


def test_prepare_multiprocess_dir_empties_old_metric_files_and_sets_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "restored-after-the-test")
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old run")
    (directory / "README").write_text("not ours")
    prepare_multiprocess_dir(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["README"]
    assert os.environ[MULTIPROC_ENV] == str(directory)
    prepare_multiprocess_dir(tmp_path / "new")
    assert (tmp_path / "new").is_dir()


# ---- several processes: each function runs in a fresh (spawned) interpreter ------------------


def record_after_import(directory: str) -> int:
    """A worker that imported prometheus_client before the variable was set (one uvicorn
    worker run in the parent): its counts must still reach the shared files."""
    os.environ[MULTIPROC_ENV] = directory
    m = ServiceMetrics()
    for _ in range(3):
        m.decided("v1", "exploit", 0.002)
    m.decided("v1", "explore", 0.02)
    m.decided("v1", "explore", 0.02)
    m.produce_error()
    m.set_spool(7, 700)
    return os.getpid()


def record_inherited(directory: str) -> int:
    """A worker started with the variable already in its environment."""
    assert os.environ[MULTIPROC_ENV] == directory
    m = ServiceMetrics()
    for _ in range(4):
        m.decided("personalizer", "exploit", 0.002)
    m.decided("v1", "forced", 0.0001)
    m.produce_error()
    m.produce_error()
    m.set_spool(3, 300)  # the most recent reading of the shared spool
    return os.getpid()


def scrape() -> tuple[bytes, dict[str, int], int]:
    m = ServiceMetrics()
    m.set_snapshot("snap-000007", None)
    body, _ = m.render()
    return body, m.decisions_by_why(), os.getpid()


def in_fresh_process(fn: Callable[..., T], *args: str) -> T:
    """`fn(*args)` in a new interpreter (spawn: nothing of this process inherited)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result(timeout=120)


def test_a_scrape_in_any_worker_sums_every_workers_counts_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prometheus"
    monkeypatch.setenv(MULTIPROC_ENV, "placeholder")  # restored after the test
    prepare_multiprocess_dir(directory)
    monkeypatch.delenv(MULTIPROC_ENV)
    first = in_fresh_process(record_after_import, str(directory))
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    second = in_fresh_process(record_inherited, str(directory))
    body, by_why, scraper = in_fresh_process(scrape)

    assert len({first, second, scraper}) == 3
    s = parse(body)
    assert value(s, "nudge_decisions_total", api="v1", why="exploit") == 3
    assert value(s, "nudge_decisions_total", api="v1", why="explore") == 2
    assert value(s, "nudge_decisions_total", api="v1", why="forced") == 1
    assert value(s, "nudge_decisions_total", api="personalizer", why="exploit") == 4
    assert value(s, "nudge_decision_latency_seconds_count", api="v1") == 6
    assert value(s, "nudge_decision_latency_seconds_bucket", api="v1", le="0.0025") == 4
    assert value(s, "nudge_decision_latency_seconds_count", api="personalizer") == 4
    assert value(s, "nudge_produce_errors_total") == 3
    assert value(s, "nudge_spool_depth_events") == 3
    assert value(s, "nudge_spool_depth_bytes") == 300
    assert value(s, "nudge_snapshot_info", version="snap-000007") == 1  # the scraper's own
    assert by_why == {"exploit": 7, "explore": 2, "forced": 1}
