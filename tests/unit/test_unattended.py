"""Issue 11, "unattended for months": the consumer (in memory, real VW) against a bad clock, a
re-sent impression, a repeated JSON key and state that would grow without bound."""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from unattended_fixtures import (
    IMPRESSIONS,
    OUTCOMES,
    T0,
    YEAR_1,
    YEAR_2030,
    YEAR_9999,
    Deployment,
    config,
    impression,
    outcome,
    pairs,
    pause,
)

from bandit.envelopes import partition_key
from streams.checkpoints import CheckpointStore
from streams.consumer import RunOptions
from streams.stats import Ledger

UNBOUNDED = RunOptions()  # stopped (as by SIGTERM) once everything written was read


def reasons(dep: Deployment) -> Counter[str]:
    return Counter(reason for reason, _ in dep.dead_letters())


def ids(n: int, prefix: str = "e") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# ---- 1. event-time poisoning -----------------------------------------------------------------


def test_one_outcome_stamped_2030_does_not_default_the_impressions_after_it(
    tmp_path: Path,
) -> None:
    # Measured before the fix: 1,759 of 3,000 impressions defaulted, 1,758 outcomes "late". A
    # pause of the producer (both partitions idle) let the 2030 outcome become the watermark.
    dep = Deployment(config(tmp_path))
    messages = pairs(600)
    messages.insert(200, (OUTCOMES, outcome("ghost", YEAR_2030)))
    messages.insert(700, pause(6.0))

    stats = dep.run(messages).stats

    assert (stats.learned, stats.defaulted) == (600, 0)
    assert stats.ledger == Ledger.of(ids(600))
    assert reasons(dep) == {"implausible_event_time": 1}


def test_an_impression_stamped_9999_poisons_neither_the_checkpoint_nor_the_restart(
    tmp_path: Path,
) -> None:
    # Before: the checkpoint kept the watermark at 9999 and every impression after the restart
    # (300 of 300) was defaulted at once.
    dep = Deployment(config(tmp_path))
    first = pairs(300)
    first.insert(100, (IMPRESSIONS, impression("far", YEAR_9999)))
    dep.run(first)
    ckpt = dep.checkpoint()
    assert max(ckpt.join_state["watermarks"].values()) < T0 + 3600
    assert ckpt.join_state["join"]["watermark"] < T0 + 3600

    stats = dep.run(pairs(300, T0 + 600, "f")).stats

    assert (stats.learned, stats.defaulted) == (600, 0)
    assert stats.ledger == Ledger.of(ids(300) + ids(300, "f"))
    assert reasons(dep) == {"implausible_event_time": 1}


def test_a_checkpoint_from_before_the_guard_with_an_absurd_watermark_does_not_poison_a_restart(
    tmp_path: Path,
) -> None:
    dep = Deployment(config(tmp_path))
    dep.run(pairs(300))
    good = dep.checkpoint()
    # What the consumer saved before this fix after one record stamped 9999: that record
    # pending, its partition's highest event time and the join's watermark at 9999.
    far = impression("far", YEAR_9999)
    offset = dep.broker.append(IMPRESSIONS, None, far).offset
    join = dict(good.join_state["join"])
    join.pop("learned_ids", None)
    join["watermark"] = YEAR_9999 - 60
    join["pending"] = [
        {"impression": {"raw": base64.b64encode(far).decode(), "source": [IMPRESSIONS, 0, offset]},
         "outcomes": []}
    ]  # fmt: skip
    offsets = {**good.offsets, partition_key(IMPRESSIONS, 0): offset + 1}
    old_format = {"join": join, "watermarks": {partition_key(IMPRESSIONS, 0): YEAR_9999,
                                               partition_key(OUTCOMES, 0): T0 + 600}}  # fmt: skip
    store = CheckpointStore(dep.config.checkpoint.directory)
    store.save(replace(good, sequence=good.sequence + 1, offsets=offsets, join_state=old_format))

    stats = dep.run(pairs(300, T0 + 600, "f")).stats

    assert (stats.learned, stats.defaulted) == (600, 0)
    assert reasons(dep) == {"implausible_event_time": 1}  # the saved record, checked again
    assert dep.checkpoint().join_state["join"]["watermark"] < T0 + 3600


def test_an_impression_stamped_in_year_1_is_dead_lettered_not_learned(tmp_path: Path) -> None:
    # Before: accepted, and learned at once with the default outcome.
    dep = Deployment(config(tmp_path))
    messages = pairs(300)
    messages.insert(300, (IMPRESSIONS, impression("ancient", YEAR_1)))

    stats = dep.run(messages).stats

    assert (stats.learned, stats.defaulted) == (300, 0)
    assert stats.ledger == Ledger.of(ids(300))
    assert reasons(dep) == {"implausible_event_time": 1}


def test_an_outcome_stamped_hours_ahead_is_dead_lettered_soon_not_kept_in_every_checkpoint(
    tmp_path: Path,
) -> None:
    # Before: it waited in memory (and in every checkpoint) until event time reached it.
    dep = Deployment(config(tmp_path))
    messages = pairs(300)
    messages.insert(100, (OUTCOMES, outcome("early-bird", T0 + 6 * 3600)))

    learner = dep.run(messages, UNBOUNDED)

    assert learner.join.waiting == 0 and learner.guard.held == 0
    state = orjson.dumps(dep.checkpoint().join_state)
    assert base64.b64encode(outcome("early-bird", T0 + 6 * 3600)) not in state
    assert reasons(dep) == {"implausible_event_time": 1}


def test_a_genuine_gap_in_traffic_is_learned_as_usual(tmp_path: Path) -> None:
    dep = Deployment(config(tmp_path))
    messages = [*pairs(200), pause(6.0), *pairs(200, T0 + 3 * 3600, "g")]  # 3 h, nobody online

    stats = dep.run(messages).stats

    assert (stats.learned, stats.defaulted, stats.dead_lettered) == (400, 0, 0)


def test_records_held_at_a_stop_are_saved_and_learned_once_after_the_restart(
    tmp_path: Path,
) -> None:
    dep = Deployment(config(tmp_path))
    later = T0 + 3 * 3600
    # The first record after a gap is held (unconfirmed) when the consumer is stopped.
    first = dep.run([*pairs(100), (IMPRESSIONS, impression("g0", later))], UNBOUNDED)
    assert first.guard.held == 1
    assert len(dep.checkpoint().join_state["event_time"]["held"]) == 1

    second = dep.run([(OUTCOMES, outcome("g0", later + 1)), *pairs(100, later + 2, "h")], UNBOUNDED)

    assert second.guard.held == 0 and second.join.pending == 0
    assert second.stats.ledger == Ledger.of([*ids(100), "g0", *ids(100, "h")])
    assert (second.stats.defaulted, second.stats.dead_lettered) == (0, 0)


def test_with_a_wall_clock_bound_a_record_stamped_days_ahead_of_now_is_dead_lettered(
    tmp_path: Path,
) -> None:
    now = time.time()
    dep = Deployment(config(tmp_path, max_ahead_of_wall_clock_s=3600))
    messages = pairs(100, now - 1000)
    messages.insert(50, (IMPRESSIONS, impression("tomorrow", now + 2 * 86400)))

    stats = dep.run(messages).stats

    assert stats.ledger == Ledger.of(ids(100))
    [(reason, body)] = dep.dead_letters()
    assert reason == "implausible_event_time" and "ahead of the wall clock" in body["detail"]


# ---- 2. learned twice ------------------------------------------------------------------------


def test_an_impression_resent_after_its_window_is_dead_lettered_not_learned_twice(
    tmp_path: Path,
) -> None:
    # Before: learned again (the join forgets closed ids after window_s + allowed_lateness_s).
    dep = Deployment(config(tmp_path))
    # 800 s of event time: e0's window closed at T0 + 300 and the join forgot it 360 s later.
    messages = pairs(400)
    messages.append((IMPRESSIONS, impression("e0", T0)))
    messages += pairs(10, T0 + 800, "f")

    stats = dep.run(messages).stats

    assert stats.ledger == Ledger.of(ids(400) + ids(10, "f"))
    assert reasons(dep) == {"duplicate_impression": 1}


def test_an_impression_resent_after_a_restart_is_still_a_duplicate(tmp_path: Path) -> None:
    dep = Deployment(config(tmp_path))
    dep.run(pairs(300))
    assert "learned_ids" in dep.checkpoint().join_state["join"]

    stats = dep.run([(IMPRESSIONS, impression("e7", T0 + 14)), *pairs(10, T0 + 600, "f")]).stats

    assert stats.ledger == Ledger.of(ids(300) + ids(10, "f"))
    assert reasons(dep) == {"duplicate_impression": 1}


def test_a_message_with_a_repeated_type_key_is_dead_lettered(tmp_path: Path) -> None:
    # Before: orjson kept the last "type" and the message was learned as an impression.
    dep = Deployment(config(tmp_path))
    twice = b'{"type":"outcome",' + impression("two-faced", T0 + 100)[1:]
    messages = pairs(300)
    messages.insert(100, (IMPRESSIONS, twice))

    stats = dep.run(messages).stats

    assert stats.ledger == Ledger.of(ids(300))
    assert reasons(dep) == {"duplicate_key": 1}
    [(_, body)] = dep.dead_letters()
    assert "'type' appears twice" in body["detail"]


# ---- 3. unbounded state ----------------------------------------------------------------------


def test_pending_impressions_are_capped_the_oldest_closed_early_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: no cap (100,000 such impressions: 635 MB resident, 78 MB per checkpoint).
    dep = Deployment(config(tmp_path, max_pending_impressions=100))
    messages = [(IMPRESSIONS, impression(f"e{i}", T0)) for i in range(1_000)]  # one timestamp

    with caplog.at_level(logging.INFO, logger="nudge.consume"):
        learner = dep.run(messages, UNBOUNDED)

    assert learner.join.pending == 100
    assert (learner.stats.learned, learner.stats.closed_early) == (900, 900)
    assert len(dep.checkpoint().join_state["join"]["pending"]) == 100
    summary = learner.summary()
    assert summary["closed_early"] == 900 and summary["pending"] == 100
    assert summary["pending_bytes"] == sum(len(v) for _, v in messages[900:])  # the newest
    progress = [r.getMessage() for r in caplog.records if "consumed=" in r.getMessage()]
    assert progress and all("closed_early=" in line for line in progress)
    assert int(progress[-1].split("closed_early=")[1].split()[0]) > 0


def test_waiting_outcomes_are_capped_the_longest_waiting_dead_lettered(tmp_path: Path) -> None:
    dep = Deployment(config(tmp_path, max_waiting_outcomes=100))
    messages = [(OUTCOMES, outcome(f"ghost{i}", T0 + 0.01 * i)) for i in range(1_000)]

    learner = dep.run(messages, UNBOUNDED)

    assert learner.join.waiting == 100
    assert reasons(dep) == {"join_state_full": 900}
    assert learner.stats.dead_letters_by_reason["join_state_full"] == 900
    assert len(dep.checkpoint().join_state["join"]["waiting"]) == 100


def test_catching_up_a_backlog_with_one_topic_read_far_ahead_loses_nothing(
    tmp_path: Path,
) -> None:
    # Kafka bounds fetches by bytes: small outcomes come ten times as many per poll as
    # impressions, so while catching up on 50 hours of traffic (pairs 60 s apart) the outcomes
    # partition runs more than a day (join.max_event_age_s) ahead of the impressions one in
    # event time. Each partition is plausible on its own: nothing may be refused as too old.
    dep = Deployment(config(tmp_path))
    dep.fetch_records = {IMPRESSIONS: 20, OUTCOMES: 200}
    messages = [
        m
        for i in range(3000)
        for m in (
            (IMPRESSIONS, impression(f"b{i}", T0 + 60.0 * i)),
            (OUTCOMES, outcome(f"b{i}", T0 + 60.0 * i + 1)),
        )
    ]
    learner = dep.run(messages, gap_s=0.0)
    assert reasons(dep) == Counter()
    assert learner.stats.learned == 3000
    assert learner.stats.defaulted == 0


def test_saved_messages_a_tightened_config_refuses_are_dead_lettered_not_a_failed_restart(
    tmp_path: Path,
) -> None:
    # Reported in review: a restart with a lower limit (or a namespace removed) failed with
    # "saved message ... no longer decodes" on every start until the config was reverted.
    dep = Deployment(config(tmp_path))
    dep.run([(IMPRESSIONS, impression(f"p{i}", T0 + 2.0 * i)) for i in range(5)], UNBOUNDED)
    assert dep.checkpoint().join_state["join"]["pending"]  # open windows saved
    tight = config(tmp_path)
    tight = tight.model_copy(
        update={"limits": tight.limits.model_copy(update={"max_message_bytes": 256})}
    )
    dep.config = tight  # the same broker and checkpoints, restarted with the new config
    learner = dep.run([])
    assert learner.stats.learned == 0
    refused = [body for reason, body in dep.dead_letters() if reason == "too_large"]
    assert len(refused) == 5
    assert all("refused by the current config" in body["detail"] for body in refused)
