"""kill -9 the consumer at random moments, restart it each time: every event learned exactly once."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import orjson
import pytest

from bandit.errors import CheckpointError
from bandit.simulation.traffic import simulate_traffic
from bandit.simulation.world import World
from streams.checkpoints import CheckpointStore
from streams.kafka_io import read_topic
from streams.stats import Ledger

pytestmark = pytest.mark.kafka

EVENTS, SEED, INVALID, KILLS = 20_000, 23, 0.02, 5


def test_kill_nine_at_random_points_then_restart_learns_every_event_exactly_once(deployment):
    # Small batches and frequent checkpoints so kills land between and inside checkpoints.
    dep = deployment(
        kafka={"max_poll_records": 300},
        checkpoint={"every_events": 700, "every_s": 0.5, "keep": 2},
    )
    dep.simulate("--events", str(EVENTS), "--seed", str(SEED), "--invalid-fraction", str(INVALID))
    truth = simulate_traffic(
        World(SEED, dep.config.simulator.learners, dep.config.simulator.courses),
        dep.config.simulator, dep.config.join, EVENTS, SEED, INVALID,
    )  # fmt: skip
    store = CheckpointStore(dep.config.checkpoint.directory)
    rng = random.Random(SEED)
    consumed_at_kill: list[int] = []
    for _ in range(KILLS):
        before = _consumed(store)
        proc = dep.popen("consume")
        deadline = time.monotonic() + 60
        while _consumed(store) <= before and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until this run has checkpointed progress...
        time.sleep(rng.uniform(0.0, 0.4))  # ...then kill at a random point after it
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        consumed_at_kill.append(_consumed(store))
    # Every run made progress and the stream was still unfinished at the last kill.
    assert all(b > a for a, b in zip([0, *consumed_at_kill], consumed_at_kill, strict=False))
    assert consumed_at_kill[-1] < len(truth.messages), consumed_at_kill

    stats_path = dep.workdir / "stats.json"
    done = dep.nudge("consume", "--until-idle", "3", "--stats-json", str(stats_path))
    assert done.returncode == 0, done.stderr
    stats = orjson.loads(stats_path.read_bytes())

    assert stats["starts"] == KILLS + 1
    assert stats["consumed"] == len(truth.messages)
    assert stats["learned"] == truth.impressions
    expected = Ledger.of(truth.valid_event_ids)
    assert stats["ledger"] == {"count": expected.count, "digest": f"{expected.digest:016x}"}
    assert stats["dead_letters_by_reason"] == dict(truth.expected_dead_letters)
    # Dead letters are at least once across a crash; their key (source coordinates) dedupes them.
    letters = read_topic(dep.config.kafka, dep.config.kafka.dead_letter_topic)
    distinct = {key: orjson.loads(value)["reason"] for key, value, _ in letters}
    assert Counter(distinct.values()) == truth.expected_dead_letters


def _consumed(store: CheckpointStore) -> int:
    """Messages covered by the current checkpoint (retrying a read that races a prune)."""
    for _ in range(5):
        try:
            ckpt = store.latest()
            return int(ckpt.stats["consumed"]) if ckpt else 0
        except (OSError, CheckpointError):
            time.sleep(0.01)
    raise AssertionError("checkpoint unreadable five times in a row")
