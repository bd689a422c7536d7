"""`nudge consume --metrics-port 0` against the real broker: /metrics, scraped while it runs,
agrees with the stats JSON the same run writes when stopped."""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.kafka

EVENTS, SEED, INVALID = 5_000, 13, 0.02
METRICS_LINE = re.compile(r"metrics at http://127\.0\.0\.1:(\d+)/metrics")


def _scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (local test server)
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scraped_metrics_match_the_stats_of_the_same_run(deployment):
    dep = deployment()
    summary = dep.simulate(
        "--events", str(EVENTS), "--seed", str(SEED), "--invalid-fraction", str(INVALID)
    )
    messages = summary["messages"]
    stats_path = dep.workdir / "stats.json"
    proc = dep.popen("consume", "--metrics-port", "0", "--stats-json", str(stats_path))
    lines: list[str] = []
    assert proc.stderr is not None
    drain = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    drain.start()
    try:
        deadline = time.monotonic() + 60
        while not (ports := [m[1] for ln in list(lines) if (m := METRICS_LINE.search(ln))]):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        url = f"http://127.0.0.1:{ports[0]}/metrics"

        # Wait until every message is read and nothing more is learned: the join holds the
        # impressions whose windows the event time has not passed yet (no end of input here).
        history: list[tuple[float, float]] = []
        deadline = time.monotonic() + 120
        while True:
            s = _scrape(url)
            lag = sum(v for (name, _), v in s.items() if name == "nudge_consumer_lag_messages")
            # -1: not yet there (the endpoint is up before the consumer is built)
            consumed = s.get(("nudge_consumer_consumed_total", frozenset()), -1)
            history.append((consumed, s.get(("nudge_consumer_learned_total", frozenset()), -1)))
            if consumed == messages and lag == 0 and len(set(history[-4:])) == 1:
                break
            assert time.monotonic() < deadline, history[-5:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # stopped: open windows stay open, nothing more learned
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    drain.join(timeout=10)

    stats = orjson.loads(stats_path.read_bytes())
    assert 0 < stats["learned"] < summary["impressions"]  # some windows still open, as scraped
    assert s[("nudge_consumer_learned_total", frozenset())] == stats["learned"]
    assert s[("nudge_consumer_consumed_total", frozenset())] == stats["consumed"]
    assert s[("nudge_consumer_pending_impressions", frozenset())] == stats["pending"]
    scraped_letters = {
        dict(labels)["reason"]: v
        for (name, labels), v in s.items()
        if name == "nudge_consumer_dead_letters_total"
    }
    assert scraped_letters == stats["dead_letters_by_reason"]
    assert len(scraped_letters) >= 2
    partitions = {
        dict(labels)["partition"]
        for (name, labels), _ in s.items()
        if name == "nudge_consumer_lag_messages"
    }
    assert len(partitions) == 2 * dep.config.kafka.topic_partitions
    assert s[("nudge_consumer_snapshot_sequence", frozenset())] >= 1
