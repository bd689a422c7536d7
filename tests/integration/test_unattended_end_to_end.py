"""Issue 11 against the real broker, through `nudge consume`: a bad clock poisons neither the
run nor the restart after it; a re-sent impression and a repeated JSON key are dead-lettered."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import orjson
import pytest

from bandit.config import KafkaConfig
from streams.kafka_io import Producer, ensure_topics, read_topic
from streams.stats import Ledger
from tests.unit.unattended_fixtures import impression, outcome

pytestmark = pytest.mark.kafka

T0 = datetime.fromisoformat("2026-01-05T08:00:00+00:00").timestamp()
YEAR_2030 = datetime.fromisoformat("2030-01-01T00:00:00+00:00").timestamp()
YEAR_9999 = datetime.fromisoformat("9999-12-31T23:00:00+00:00").timestamp()


def pairs(n: int, start: float, prefix: str) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        ts = start + 2.0 * i
        out += [("i", impression(f"{prefix}{i}", ts)), ("o", outcome(f"{prefix}{i}", ts + 1))]
    return out


def publish(cfg: KafkaConfig, messages: list[tuple[str, bytes]]) -> None:
    ensure_topics(cfg, [cfg.impressions_topic, cfg.outcomes_topic], 1)
    producer = Producer(cfg)
    for kind, value in messages:
        producer.send(cfg.impressions_topic if kind == "i" else cfg.outcomes_topic, None, value)
    producer.close()


def consume(dep: Any, name: str) -> dict[str, Any]:
    stats_path = dep.workdir / f"{name}.json"
    done = dep.nudge("consume", "--until-idle", "3", "--stats-json", str(stats_path))
    assert done.returncode == 0, done.stderr
    return dict(orjson.loads(stats_path.read_bytes()))


def ledger_json(ids: list[str]) -> dict[str, Any]:
    ledger = Ledger.of(ids)
    return {"count": ledger.count, "digest": f"{ledger.digest:016x}"}


def test_a_bad_clock_poisons_neither_the_run_nor_the_restart(deployment):
    # Before the fix the first run ended with its watermark at 9999 (both partitions idle),
    # saved it, and the second run defaulted all 300 of its impressions.
    dep = deployment(join={"idle_partition_s": 1})
    first = pairs(300, T0, "a")
    first.insert(200, ("o", outcome("ghost", YEAR_2030)))
    first.insert(400, ("i", impression("far", YEAR_9999)))
    publish(dep.config.kafka, first)
    run1 = consume(dep, "run1")
    assert (run1["learned"], run1["defaulted"]) == (300, 0)

    publish(dep.config.kafka, pairs(300, T0 + 600, "b"))
    run2 = consume(dep, "run2")

    assert (run2["learned"], run2["defaulted"]) == (600, 0)
    ids = [f"a{i}" for i in range(300)] + [f"b{i}" for i in range(300)]
    assert run2["ledger"] == ledger_json(ids)
    assert run2["dead_letters_by_reason"] == {"implausible_event_time": 2}
    assert run2["pending"] == 0 and run2["held"] == 0
    letters = read_topic(dep.config.kafka, dep.config.kafka.dead_letter_topic)
    assert sorted(orjson.loads(v)["original"] for _, v, _ in letters) == sorted(
        [outcome("ghost", YEAR_2030).decode(), impression("far", YEAR_9999).decode()]
    )


def test_a_resent_impression_and_a_repeated_key_are_dead_lettered_not_learned(deployment):
    # Before the fix both were learned: the re-sent impression a second time (the join had
    # forgotten its closed window), the repeated-key message as an impression.
    dep = deployment()
    messages = pairs(400, T0, "e")  # 800 s: e0's window and its retention are long over
    messages.append(("i", impression("e0", T0)))
    messages.append(("i", b'{"type":"outcome",' + impression("two-faced", T0 + 790)[1:]))
    messages += pairs(10, T0 + 800, "f")
    publish(dep.config.kafka, messages)

    stats = consume(dep, "stats")

    assert stats["ledger"] == ledger_json(
        [f"e{i}" for i in range(400)] + [f"f{i}" for i in range(10)]
    )
    assert stats["dead_letters_by_reason"] == {"duplicate_impression": 1, "duplicate_key": 1}
    assert stats["learned_ids"] == 410
    letters = read_topic(dep.config.kafka, dep.config.kafka.dead_letter_topic)
    assert Counter(h["reason"].decode() for _, _, h in letters) == {
        "duplicate_impression": 1,
        "duplicate_key": 1,
    }


def test_catching_up_two_days_of_backlog_learns_every_event(deployment):
    # Reported in review: with a day-long backlog, Kafka's byte-bounded fetches read the
    # outcomes topic (small records) hours of event time ahead of the impressions; a guard
    # judging every partition against the fastest one refused 1,960 of 6,000 impressions as
    # too old. Each partition is now judged on its own.
    dep = deployment(simulator={"mean_gap_s": 60.0, "duplicate_fraction": 0.0})
    summary = dep.simulate("--events", "3000", "--seed", "5")
    stats = consume(dep, "backlog")
    expected = summary["expected"]
    assert isinstance(expected, dict)
    assert stats["learned"] == expected["learned"] == 3000
    assert "implausible_event_time" not in stats["dead_letters_by_reason"]
    assert stats["dead_letters_by_reason"] == expected["dead_letters_by_reason"]
