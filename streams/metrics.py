"""Prometheus metrics of `nudge consume` (`--metrics-port`), read from the live consumer when
scraped: nothing is counted twice or kept in sync, the scrape copies the consumer's own stats.

The HTTP endpoint runs in a daemon thread while the consumer loop owns the Kafka client, which
is not thread-safe; so a scrape reads only plain values the loop leaves behind (the counters,
the join's sizes, the lag of the last poll), never the client itself.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from bandit.errors import UsageError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from streams.consumer import StreamLearner

__all__ = ["ConsumerCollector", "ConsumerReading", "MetricsEndpoint", "read_learner"]

RATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class ConsumerReading:
    """The consumer's numbers at one instant. Counts are cumulative since the first start
    (restored from the checkpoint); ages are seconds since this process last wrote a
    checkpoint / published a snapshot (since its start before the first)."""

    consumed: int
    impressions: int
    outcomes: int
    learned: int
    learned_by_outcome: Mapping[str, int]
    dead_letters_by_reason: Mapping[str, int]
    closed_early: int
    lag_by_partition: Mapping[str, int]
    pending_impressions: int
    waiting_outcomes: int
    held: int
    checkpoints: int
    checkpoint_age_s: float
    snapshots: int
    snapshot_sequence: int
    snapshot_age_s: float


def read_learner(learner: StreamLearner) -> ConsumerReading:
    """What a scrape reads of a running `StreamLearner`, from another thread.

    `dict(counter)` copies a dict in one step under the GIL, so a reason first seen while
    copying cannot break the iteration; `lags` is a new dict each loop, never mutated.
    """
    s = learner.stats
    return ConsumerReading(
        consumed=s.consumed,
        impressions=s.impressions,
        outcomes=s.outcomes,
        learned=s.learned,
        learned_by_outcome=dict(s.outcomes_learned),
        dead_letters_by_reason=dict(s.dead_letters_by_reason),
        closed_early=s.closed_early,
        lag_by_partition=learner.lags,
        pending_impressions=learner.join.pending,
        waiting_outcomes=learner.join.waiting,
        held=learner.guard.held,
        checkpoints=s.checkpoints,
        checkpoint_age_s=learner.checkpoint_age_s,
        snapshots=s.snapshots,
        snapshot_sequence=s.snapshot_sequence,
        snapshot_age_s=learner.snapshot_age_s,
    )


class _Rates:
    """Messages and learned events per second over about the last `window_s`, from the
    readings of successive scrapes (the first: since the collector was made)."""

    def __init__(self, window_s: float, now: float, first: ConsumerReading) -> None:
        self._window = window_s
        self._samples: deque[tuple[float, int, int]] = deque([(now, first.consumed, first.learned)])
        self._lock = threading.Lock()  # two scrapes at once must not interleave their updates

    def update(self, now: float, reading: ConsumerReading) -> tuple[float, float]:
        with self._lock:
            self._samples.append((now, reading.consumed, reading.learned))
            # Keep as base the newest sample at least a window old: the rate spans >= window_s.
            while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
                self._samples.popleft()
            then, consumed, learned = self._samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return 0.0, 0.0
        return (reading.consumed - consumed) / elapsed, (reading.learned - learned) / elapsed


class ConsumerCollector:
    """A prometheus_client collector: `read()` at every scrape, rendered as metric families."""

    def __init__(
        self,
        read: Callable[[], ConsumerReading],
        clock: Callable[[], float] = time.monotonic,
        rate_window_s: float = RATE_WINDOW_S,
    ) -> None:
        self._read = read
        self._clock = clock
        self._window_s = rate_window_s
        self._rates = _Rates(rate_window_s, clock(), read())

    def collect(self) -> Iterable[Metric]:
        r = self._read()
        per_s, learned_per_s = self._rates.update(self._clock(), r)
        p = "nudge_consumer_"

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(p + name, doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(p + name, doc, value=value)

        learned_by = CounterMetricFamily(
            p + "learned_by_outcome", "Events learned, by joined outcome.", labels=["outcome"]
        )
        for outcome, n in sorted(r.learned_by_outcome.items()):
            learned_by.add_metric([outcome], n)
        dead = CounterMetricFamily(
            p + "dead_letters", "Messages dead-lettered, by reason.", labels=["reason"]
        )
        for reason, n in sorted(r.dead_letters_by_reason.items()):
            dead.add_metric([reason], n)
        lag = GaugeMetricFamily(
            p + "lag_messages", "Messages not yet read, by topic/partition (last poll).",
            labels=["partition"],
        )  # fmt: skip
        for partition, n in sorted(r.lag_by_partition.items()):
            lag.add_metric([partition], n)
        return [
            counter("consumed", "Messages read from the impression and outcome topics.", r.consumed),
            counter("impressions", "Valid impressions read.", r.impressions),
            counter("outcomes", "Valid outcomes read.", r.outcomes),
            counter("learned", "Joined events learned (each impression once).", r.learned),
            learned_by,
            dead,
            counter("closed_early", "Impressions learned before their window ended (state full).",
                    r.closed_early),
            lag,
            gauge("pending_impressions", "Impressions waiting for their window to close.",
                  r.pending_impressions),
            gauge("waiting_outcomes", "Outcomes waiting for their impression.",
                  r.waiting_outcomes),
            gauge("held_records", "Records held back by the event-time guard.", r.held),
            counter("checkpoints", "Checkpoints written.", r.checkpoints),
            gauge("checkpoint_age_seconds", "Seconds since this process last wrote a checkpoint "
                  "(since its start before the first).", r.checkpoint_age_s),
            counter("snapshots", "Snapshots published.", r.snapshots),
            gauge("snapshot_sequence", "Sequence number of the last published snapshot.",
                  r.snapshot_sequence),
            gauge("snapshot_age_seconds", "Seconds since this process last published a snapshot "
                  "(since its start before the first).", r.snapshot_age_s),
            gauge("messages_per_second", f"Messages read per second over the last "
                  f"~{self._window_s:.0f} s of scrapes.", per_s),
            gauge("learned_per_second", "Events learned per second, same window.", learned_per_s),
        ]  # fmt: skip


class MetricsEndpoint:
    """`GET /metrics` on host:port in a daemon thread: process metrics at once, the consumer's
    from `watch(learner)` on. Port 0 binds a free port (`port` tells which)."""

    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        try:
            server, self._thread = start_http_server(port, host, self.registry)
        except OSError as exc:  # taken port, unknown host, no permission
            raise UsageError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; pick another "
                "--metrics-port / --metrics-host"
            ) from None
        self._server: WSGIServer = server
        self.host = host
        self.port = int(server.server_port)

    def watch(self, learner: StreamLearner) -> None:
        """Serve `learner`'s metrics from now on."""
        self.registry.register(ConsumerCollector(lambda: read_learner(learner)))

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
