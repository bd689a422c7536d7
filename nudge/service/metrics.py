"""Prometheus metrics of the decision service, correct with several uvicorn worker processes.

Any one worker answers a scrape, so counts must be shared. `nudge serve` calls
`prepare_multiprocess_dir` in the parent before uvicorn starts its workers; they inherit
PROMETHEUS_MULTIPROC_DIR, each writes its values to its own files there (prometheus_client's
multiprocess mode) and a scrape merges the files of every worker, dead ones included, so
totals never go back. Without the variable (tests, embedding) the metrics live in a private
registry of this process.

The snapshot (version, created time, age) is not merged: each worker loads snapshots itself,
so the worker that answers reports the one it serves, at scrape time (a version label in the
shared files would keep every version any worker ever loaded).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["MULTIPROC_ENV", "ServiceMetrics", "multiprocess_dir", "prepare_multiprocess_dir"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A decision takes about a millisecond in process; HTTP and a slow VW model push it to tens.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def prepare_multiprocess_dir(path: Path) -> None:
    """Create `path` or empty it of metric files, and set PROMETHEUS_MULTIPROC_DIR to it.

    Call in the parent before the workers start (they inherit the variable): files left by
    an earlier run would add its counts to this one's. One service per directory.
    """
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)


def multiprocess_dir() -> Path | None:
    """The shared metrics directory of this process (PROMETHEUS_MULTIPROC_DIR), if set."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def _sync_value_class(multiprocess: bool) -> None:
    """prometheus_client picks in-memory or file-backed values once, when first imported; a
    process that set the variable after importing it (one uvicorn worker run in the parent)
    would keep its counts to itself. Re-pick only on a mismatch: two file-backed value
    classes in one process would write the same files through separate maps."""
    if getattr(values.ValueClass, "_multiprocess", False) != multiprocess:
        values.ValueClass = values.get_value_class()


class _SnapshotCollector:
    """The snapshot this process serves: `nudge_snapshot_info{version}` 1, its creation time
    and its age, computed when scraped."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.current: tuple[str, float | None] | None = None  # replaced whole: no lock needed

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "nudge_snapshot_info",
            "The policy snapshot the answering worker serves (value 1, version as a label).",
            labels=["version"],
        )
        created = GaugeMetricFamily(
            "nudge_snapshot_created_timestamp_seconds",
            "When the consumer created the served snapshot (Unix time).",
        )
        age = GaugeMetricFamily(
            "nudge_snapshot_age_seconds", "Seconds since the served snapshot was created."
        )
        current = self.current
        if current is not None:
            version, created_at = current
            info.add_metric([version], 1.0)
            if created_at is not None:
                created.add_metric([], created_at)
                age.add_metric([], max(0.0, self._clock() - created_at))
        return [info, created, age]


class ServiceMetrics:
    """The service's counters, latency histogram and gauges, and their exposition text.

    Labels are closed sets given by the app: `api` is "v1" or "personalizer", `why` a
    decision's why, `route` the route's template (never the raw path: one series per event
    id would grow without end), `outcome` an outcome label. So the labelled children are
    looked up once per combination and kept (`labels()` costs more than the increment).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._dir = multiprocess_dir()
        _sync_value_class(self._dir is not None)
        own = CollectorRegistry()
        self._decisions = Counter(
            "nudge_decisions", "Decisions served, by API and why.", ["api", "why"], registry=own
        )
        self._latency = Histogram(
            "nudge_decision_latency_seconds", "Time to decide, in the app (not the network).",
            ["api"], buckets=LATENCY_BUCKETS_S, registry=own,
        )  # fmt: skip
        self._requests = Counter(
            "nudge_http_requests", "HTTP requests answered, by route template and status.",
            ["route", "status"], registry=own,
        )  # fmt: skip
        self._outcomes = Counter(
            "nudge_outcomes", "Outcomes and rewards accepted, by API and outcome label.",
            ["api", "outcome"], registry=own,
        )  # fmt: skip
        self._produce_errors = Counter(
            "nudge_produce_errors", "Failed attempts to send spooled events to Kafka.",
            registry=own,
        )  # fmt: skip
        self._deferred_expired = Counter(
            "nudge_deferred_expired", "Deferred events dropped unactivated after their expiry.",
            registry=own,
        )  # fmt: skip
        # Every worker sees the same shared spool: the most recent reading is the true one.
        self._spool_events = Gauge(
            "nudge_spool_depth_events", "Events in the spool, not yet in Kafka.",
            multiprocess_mode="mostrecent", registry=own,
        )  # fmt: skip
        self._spool_bytes = Gauge(
            "nudge_spool_depth_bytes", "Bytes of the events in the spool.",
            multiprocess_mode="mostrecent", registry=own,
        )  # fmt: skip
        self._snapshot = _SnapshotCollector(clock)
        self._decided: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._answered: dict[tuple[str, int], Counter] = {}
        self._accepted: dict[tuple[str, str], Counter] = {}
        if self._dir is None:
            self._registry = own
        else:
            self._registry = CollectorRegistry()
            MultiProcessCollector(self._registry, str(self._dir))
        self._registry.register(self._snapshot)

    @property
    def multiprocess(self) -> bool:
        """True when the values are shared with the other workers through files."""
        return self._dir is not None

    def decided(self, api: str, why: str, seconds: float) -> None:
        """One decision served: counted by why, its time in the latency histogram."""
        children = self._decided.get((api, why))
        if children is None:  # a dict's setdefault is atomic: threads may race, harmlessly
            children = self._decided.setdefault(
                (api, why), (self._decisions.labels(api, why), self._latency.labels(api))
            )
        count, latency = children
        count.inc()
        latency.observe(seconds)

    def request(self, route: str, status: int) -> None:
        """One HTTP request answered with `status`."""
        child = self._answered.get((route, status))
        if child is None:
            child = self._answered.setdefault(
                (route, status), self._requests.labels(route, str(status))
            )
        child.inc()

    def outcome(self, api: str, label: str) -> None:
        """One outcome (or Personalizer reward, as its outcome label) accepted."""
        child = self._accepted.get((api, label))
        if child is None:
            child = self._accepted.setdefault((api, label), self._outcomes.labels(api, label))
        child.inc()

    def produce_error(self) -> None:
        """One failed attempt to produce to Kafka (the events stay in the spool)."""
        self._produce_errors.inc()

    def deferred_expired(self, n: int) -> None:
        """`n` deferred events expired without being activated."""
        self._deferred_expired.inc(n)

    def set_spool(self, events: int, size_bytes: int) -> None:
        """The spool's depth as just read."""
        self._spool_events.set(events)
        self._spool_bytes.set(size_bytes)

    def set_snapshot(self, version: str, created_at: float | None) -> None:
        """The snapshot this worker now serves; `created_at` in Unix seconds, if known."""
        self._snapshot.current = (version, created_at)

    def decisions_by_why(self) -> dict[str, int]:
        """Decisions served by why, summed over APIs and over every worker process."""
        totals: dict[str, int] = {}
        for family in self._registry.collect():
            if family.name != "nudge_decisions":
                continue
            for sample in family.samples:
                if sample.name == "nudge_decisions_total":
                    why = sample.labels["why"]
                    totals[why] = totals.get(why, 0) + round(sample.value)
        return dict(sorted(totals.items()))

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric, and its content type."""
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
