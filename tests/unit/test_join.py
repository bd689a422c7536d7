"""Unit tests of the event-time reward join (`bandit.join`)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from bandit.config import JoinConfig, RewardConfig
from bandit.envelopes import Envelope, Rejected, Source
from bandit.errors import CheckpointError
from bandit.events import (
    Event,
    EventRules,
    Impression,
    Outcome,
    OutcomeLabel,
    Reason,
    decode_event,
    timestamp_text,
)
from bandit.join import JoinedEvent, RewardJoin, join_events

WINDOW = 100.0
LATENESS = 10.0
T0 = 1_767_600_000.0  # 2026-01-05T08:00:00Z, whole seconds so the wire timestamp is exact
CONFIG = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS)
COMBINE = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, mode="combine")
REWARDS = RewardConfig()  # helpful 1, not_helpful -1, ignored 0, value_weight 0
RULES = EventRules(frozenset({"learner"}))

HELPFUL, NOT_HELPFUL, IGNORED = OutcomeLabel.HELPFUL, OutcomeLabel.NOT_HELPFUL, OutcomeLabel.IGNORED

_offsets = itertools.count()


def decode(raw: bytes) -> Event:
    return decode_event(raw, RULES)


def impression(
    event_id: str, ts: float, trigger: str = "quiz_failed", chosen: int = 0
) -> Envelope[Impression]:
    """An impression envelope whose raw bytes are valid wire JSON decoding to the same event."""
    event = Impression(
        event_id=event_id,
        ts=ts,
        trigger=trigger,
        learner_id="learner-1",
        context={"learner": {"level": "novice"}},
        action_ids=("hint", "none"),
        action_features=({"kind": "hint"}, {}),
        chosen_index=chosen,
        probability=0.5,
        policy_version="v1",
    )
    raw = orjson.dumps(
        {
            "type": "impression",
            "event_id": event_id,
            "timestamp": timestamp_text(ts),
            "trigger": trigger,
            "learner_id": "learner-1",
            "context": {"learner": {"level": "novice"}},
            "actions": [{"id": "hint", "features": {"kind": "hint"}}, {"id": "none"}],
            "chosen": event.action_ids[chosen],
            "probability": 0.5,
            "policy_version": "v1",
        }
    )
    return Envelope(event, raw, Source("nudge.impressions", 0, next(_offsets)))


def outcome(
    event_id: str,
    ts: float,
    label: OutcomeLabel = HELPFUL,
    value: float | None = None,
    trigger: str = "quiz_failed",
) -> Envelope[Outcome]:
    """An outcome envelope whose raw bytes are valid wire JSON decoding to the same event."""
    event = Outcome(event_id, ts, trigger, label, value)
    wire: dict[str, Any] = {
        "type": "outcome",
        "event_id": event_id,
        "timestamp": timestamp_text(ts),
        "trigger": trigger,
        "outcome": label.value,
    }
    if value is not None:
        wire["value"] = value
    return Envelope(event, orjson.dumps(wire), Source("nudge.outcomes", 0, next(_offsets)))


def copy_of(env: Envelope[Any]) -> Envelope[Any]:
    """The same message delivered again (same bytes, a new offset)."""
    return Envelope(env.event, env.raw, Source(env.source.topic, 0, next(_offsets)))


def feed(join: RewardJoin, *envs: Envelope[Any]) -> tuple[list[JoinedEvent], list[Rejected]]:
    for env in envs:
        join.add(env)
    return join.drain()


def run_stream(
    join: RewardJoin, envs: Iterable[Envelope[Any]]
) -> tuple[list[JoinedEvent], list[Rejected]]:
    """Add each event, then advance to the highest event time seen (as streaming does)."""
    joined: list[JoinedEvent] = []
    rejected: list[Rejected] = []
    high = float("-inf")
    for env in envs:
        join.add(env)
        high = max(high, env.event.ts)
        join.advance(high)
        j, r = join.drain()
        joined += j
        rejected += r
    return joined, rejected


def finish(join: RewardJoin) -> tuple[list[JoinedEvent], list[Rejected]]:
    join.close_all()
    return join.drain()


def summary(joined: list[JoinedEvent]) -> list[tuple[str, str, float | None, float, bool]]:
    return [(j.impression.event_id, j.label.value, j.value, j.reward, j.defaulted) for j in joined]


def reasons(rejected: list[Rejected]) -> list[str]:
    return [r.reason for r in rejected]


def test_wire_helpers_decode_to_the_constructed_events() -> None:
    imp, out = impression("e1", T0, chosen=1), outcome("e1", T0 + 5, NOT_HELPFUL, value=2.0)
    assert decode(imp.raw) == imp.event
    assert decode(out.raw) == out.event


# ---- outcome after / before its impression --------------------------------------------------


@pytest.mark.parametrize(("label", "reward"), [(HELPFUL, 1.0), (NOT_HELPFUL, -1.0), (IGNORED, 0.0)])
def test_outcome_after_impression_joins_at_once_with_the_configured_reward(
    label: OutcomeLabel, reward: float
) -> None:
    join = RewardJoin(CONFIG, REWARDS)
    assert feed(join, impression("e1", T0)) == ([], [])
    assert join.pending == 1

    joined, rejected = feed(join, outcome("e1", T0 + 30, label))

    assert rejected == []
    assert len(joined) == 1
    event = joined[0]
    assert event.impression.event_id == "e1"
    assert (event.label, event.value, event.reward, event.defaulted) == (label, None, reward, False)
    assert join.pending == 0


def test_outcome_before_impression_is_held_and_joins_when_the_impression_arrives() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    assert feed(join, outcome("e1", T0 + 3, NOT_HELPFUL)) == ([], [])
    assert join.waiting == 1

    joined, rejected = feed(join, impression("e1", T0))

    assert rejected == []
    assert summary(joined) == [("e1", "not_helpful", None, -1.0, False)]
    assert join.waiting == 0
    assert join.pending == 0


def test_held_outcome_survives_watermark_below_its_wait_deadline() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    join.add(outcome("e1", T0 + 3))
    join.advance(T0 + 3 + WINDOW + LATENESS - 0.5)  # watermark just below ts + window
    assert join.drain() == ([], [])

    joined, rejected = feed(join, impression("e1", T0))
    assert rejected == []
    assert summary(joined) == [("e1", "helpful", None, 1.0, False)]


# ---- no outcome: the default after the window -----------------------------------------------


def test_impression_without_outcome_defaults_exactly_when_the_watermark_passes_its_window() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    join.add(impression("e1", T0))

    join.advance(T0 + WINDOW)  # watermark T0 + window - lateness: the window is still open
    assert join.drain() == ([], [])
    join.advance(T0 + WINDOW + LATENESS - 0.001)  # watermark just below the window's end
    assert join.drain() == ([], [])
    assert join.pending == 1

    join.advance(T0 + WINDOW + LATENESS)  # watermark == ts + window: closes
    joined, rejected = join.drain()

    assert rejected == []
    assert summary(joined) == [("e1", "ignored", None, 0.0, True)]
    assert join.pending == 0


def test_default_outcome_label_and_reward_come_from_the_config() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, default_outcome="not_helpful")
    join = RewardJoin(config, RewardConfig(not_helpful=-0.25))
    join.add(impression("e1", T0))
    joined, _ = finish(join)
    assert summary(joined) == [("e1", "not_helpful", None, -0.25, True)]


def test_watermark_never_moves_backwards() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    join.advance(T0 + 50)
    join.advance(T0)
    assert join.watermark == T0 + 50 - LATENESS


def test_impression_arriving_after_its_window_closed_is_defaulted_immediately() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    join.advance(T0 + 500)
    joined, rejected = feed(join, impression("e1", T0))
    assert rejected == []
    assert summary(joined) == [("e1", "ignored", None, 0.0, True)]


# ---- late outcomes ----------------------------------------------------------------------------


def test_outcome_beyond_the_window_is_late_and_the_impression_still_gets_the_default() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    late = outcome("e1", T0 + WINDOW + 1)
    joined, rejected = feed(join, impression("e1", T0), late)

    assert joined == []
    assert reasons(rejected) == [Reason.LATE_OUTCOME]
    assert rejected[0].raw == late.raw
    assert rejected[0].source == late.source

    join.advance(T0 + WINDOW + LATENESS)
    joined, rejected = join.drain()
    assert rejected == []
    assert summary(joined) == [("e1", "ignored", None, 0.0, True)]


def test_outcome_exactly_at_the_window_end_still_counts() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    joined, rejected = feed(join, impression("e1", T0), outcome("e1", T0 + WINDOW))
    assert rejected == []
    assert summary(joined) == [("e1", "helpful", None, 1.0, False)]


def test_early_outcome_beyond_the_window_is_late_when_its_impression_arrives() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    joined, rejected = feed(join, outcome("e1", T0 + WINDOW + 5), impression("e1", T0))
    assert joined == []
    assert reasons(rejected) == [Reason.LATE_OUTCOME]
    assert summary(finish(join)[0]) == [("e1", "ignored", None, 0.0, True)]


def test_outcome_arriving_after_the_watermark_closed_the_window_is_late() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    join.add(impression("e1", T0))
    join.advance(T0 + WINDOW + LATENESS)
    joined, _ = join.drain()
    assert summary(joined) == [("e1", "ignored", None, 0.0, True)]

    joined, rejected = feed(join, outcome("e1", T0 + 50))  # inside the window, but too late

    assert joined == []
    assert reasons(rejected) == [Reason.LATE_OUTCOME]


# ---- duplicates -------------------------------------------------------------------------------


def test_same_outcome_twice_is_a_duplicate_outcome() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    first = outcome("e1", T0 + 10)
    again = copy_of(first)
    joined, rejected = feed(join, impression("e1", T0), first, again)

    assert summary(joined) == [("e1", "helpful", None, 1.0, False)]
    assert reasons(rejected) == [Reason.DUPLICATE_OUTCOME]
    assert rejected[0].source == again.source


def test_second_different_outcome_in_mode_first_is_a_duplicate_outcome() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    joined, rejected = feed(
        join, impression("e1", T0), outcome("e1", T0 + 10), outcome("e1", T0 + 20, NOT_HELPFUL)
    )
    assert summary(joined) == [("e1", "helpful", None, 1.0, False)]
    assert reasons(rejected) == [Reason.DUPLICATE_OUTCOME]


def test_duplicate_outcome_in_mode_combine_is_rejected_and_counted_once() -> None:
    join = RewardJoin(COMBINE, RewardConfig(value_weight=1.0))
    first = outcome("e1", T0 + 10, value=3.0)
    joined, rejected = feed(join, impression("e1", T0), first, copy_of(first))
    assert joined == []
    assert reasons(rejected) == [Reason.DUPLICATE_OUTCOME]
    assert summary(finish(join)[0]) == [("e1", "helpful", 3.0, 4.0, False)]


@pytest.mark.parametrize("settled", [False, True], ids=["pending", "settled"])
def test_same_impression_twice_is_a_duplicate_impression(settled: bool) -> None:
    join = RewardJoin(CONFIG, REWARDS)
    first = impression("e1", T0)
    join.add(first)
    if settled:
        join.add(outcome("e1", T0 + 1))
    again = copy_of(first)
    join.add(again)
    joined, rejected = finish(join)

    assert [j.impression.event_id for j in joined] == ["e1"]
    assert reasons(rejected) == [Reason.DUPLICATE_IMPRESSION]
    assert rejected[0].source == again.source


@pytest.mark.parametrize("config", [CONFIG, COMBINE], ids=["first", "combine"])
def test_two_copies_of_an_early_outcome_give_one_join_and_one_duplicate(config: JoinConfig) -> None:
    join = RewardJoin(config, REWARDS)
    early = outcome("e1", T0 + 10, NOT_HELPFUL)
    join.add(early)
    join.add(copy_of(early))
    assert join.waiting == 2
    join.add(impression("e1", T0))
    joined, rejected = finish(join)

    assert summary(joined) == [("e1", "not_helpful", None, -1.0, False)]
    assert reasons(rejected) == [Reason.DUPLICATE_OUTCOME]


# ---- mismatches and unmatched outcomes --------------------------------------------------------


@pytest.mark.parametrize("early", [False, True], ids=["outcome-after", "outcome-before"])
def test_outcome_with_another_trigger_is_a_trigger_mismatch(early: bool) -> None:
    join = RewardJoin(CONFIG, REWARDS)
    imp, out = impression("e1", T0, trigger="quiz_failed"), outcome("e1", T0 + 5, trigger="idle")
    joined, rejected = feed(join, *((out, imp) if early else (imp, out)))

    assert joined == []
    assert reasons(rejected) == [Reason.TRIGGER_MISMATCH]
    assert summary(finish(join)[0]) == [("e1", "ignored", None, 0.0, True)]


def test_outcome_without_impression_is_unmatched_once_the_watermark_passes_its_wait() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    orphan = outcome("ghost", T0)
    join.add(orphan)

    join.advance(T0 + WINDOW + LATENESS - 0.001)
    assert join.drain() == ([], [])
    assert join.waiting == 1

    join.advance(T0 + WINDOW + LATENESS)  # watermark == ts + window
    joined, rejected = join.drain()

    assert joined == []
    assert reasons(rejected) == [Reason.UNMATCHED_OUTCOME]
    assert rejected[0].raw == orphan.raw
    assert join.waiting == 0


def test_unmatched_wait_can_be_configured_separately() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, unmatched_wait_s=20)
    join = RewardJoin(config, REWARDS)
    join.add(outcome("ghost", T0))
    join.advance(T0 + 20 + LATENESS - 0.001)
    assert join.drain() == ([], [])
    join.advance(T0 + 20 + LATENESS)
    assert reasons(join.drain()[1]) == [Reason.UNMATCHED_OUTCOME]


def test_close_all_settles_open_windows_and_rejects_waiting_outcomes() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    joined, rejected = feed(
        join, impression("e1", T0), outcome("ghost", T0 + 1), outcome("ghost", T0 + 2, IGNORED)
    )
    assert (joined, rejected) == ([], [])

    joined, rejected = finish(join)

    assert summary(joined) == [("e1", "ignored", None, 0.0, True)]
    assert reasons(rejected) == [Reason.UNMATCHED_OUTCOME, Reason.UNMATCHED_OUTCOME]
    assert (join.pending, join.waiting) == (0, 0)
    assert finish(join) == ([], [])


# ---- mode combine -----------------------------------------------------------------------------


def test_combine_waits_for_the_window_then_earliest_label_wins_and_values_are_summed() -> None:
    join = RewardJoin(COMBINE, RewardConfig(value_weight=0.5))
    joined, rejected = feed(
        join,
        impression("e1", T0),
        outcome("e1", T0 + 40, HELPFUL, value=1.0),  # arrives first, but is not the earliest
        outcome("e1", T0 + 20, NOT_HELPFUL, value=2.0),
        outcome("e1", T0 + 60, IGNORED),  # no value: adds nothing
    )
    assert (joined, rejected) == ([], [])

    join.advance(T0 + WINDOW + LATENESS - 0.001)
    assert join.drain() == ([], [])

    join.advance(T0 + WINDOW + LATENESS)
    joined, rejected = join.drain()

    assert rejected == []
    # earliest label not_helpful (-1) + 0.5 * (1 + 2)
    assert summary(joined) == [("e1", "not_helpful", 3.0, pytest.approx(0.5), False)]


def test_combine_with_only_valueless_outcomes_has_no_value() -> None:
    join = RewardJoin(COMBINE, RewardConfig(value_weight=0.5))
    feed(join, impression("e1", T0), outcome("e1", T0 + 5, HELPFUL))
    assert summary(finish(join)[0]) == [("e1", "helpful", None, 1.0, False)]


def test_combine_fresh_outcome_after_the_watermark_closed_the_window_is_late() -> None:
    join = RewardJoin(COMBINE, REWARDS)
    feed(join, impression("e1", T0), outcome("e1", T0 + 5))
    join.advance(T0 + WINDOW + LATENESS)
    assert summary(join.drain()[0]) == [("e1", "helpful", None, 1.0, False)]
    # a distinct outcome, inside the window by its timestamp, arriving after the close
    joined, rejected = feed(join, outcome("e1", T0 + 6, NOT_HELPFUL))
    assert joined == []
    assert len(rejected) == 1


def test_combine_fresh_outcome_after_close_is_reported_as_late_outcome() -> None:
    join = RewardJoin(COMBINE, REWARDS)
    feed(join, impression("e1", T0), outcome("e1", T0 + 5))
    join.advance(T0 + WINDOW + LATENESS)
    join.drain()
    _, rejected = feed(join, outcome("e1", T0 + 6, NOT_HELPFUL))
    assert reasons(rejected) == [Reason.LATE_OUTCOME]


# ---- order independence -----------------------------------------------------------------------


def synthetic_stream(
    seed: int, n: int, mode: str
) -> tuple[list[Envelope[Any]], dict[str, tuple[str, float | None, float, bool]]]:
    """Impressions (every 2 s) with 0, 1 or (in combine mode) 2 in-window outcomes, in ts order.

    Also returns the expected result per event id, computed independently of the join.
    """
    rng = random.Random(seed)
    labels = [HELPFUL, NOT_HELPFUL, IGNORED]
    rewards = RewardConfig(value_weight=0.5)
    envs: list[Envelope[Any]] = []
    expected: dict[str, tuple[str, float | None, float, bool]] = {}
    for i in range(n):
        event_id = f"e{i:04d}"
        ts = T0 + 2.0 * i
        chosen = rng.randrange(2)
        envs.append(impression(event_id, ts, chosen=chosen))
        k = rng.choice([0, 1, 1, 2] if mode == "combine" else [0, 1, 1, 1])
        delays = sorted(rng.sample(range(1, int(WINDOW)), k))  # distinct, inside the window
        outs = [(delay, rng.choice(labels), rng.choice([None, 1.0, 2.0])) for delay in delays]
        for delay, label, value in outs:
            envs.append(outcome(event_id, ts + delay, label, value))
        if not outs:
            expected[event_id] = ("ignored", None, 0.0, True)
        else:
            values = [v for _, _, v in outs if v is not None]
            total = sum(values) if values else None
            label = outs[0][1]
            reward = rewards.of(label, total, ("hint", "none")[chosen])
            expected[event_id] = (label.value, total, reward, False)
    envs.sort(key=lambda e: e.event.ts)
    return envs, expected


def disorder(envs: list[Envelope[Any]], seed: int, max_delay: float) -> list[Envelope[Any]]:
    """Arrival order: each event arrives at ts + U(0, max_delay); with max_delay < lateness no
    event is ever behind the watermark when it arrives."""
    rng = random.Random(seed)
    arrival = [(env.event.ts + rng.uniform(0, max_delay), i) for i, env in enumerate(envs)]
    return [envs[i] for _, i in sorted(arrival)]


@pytest.mark.parametrize("mode", ["first", "combine"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_join_result_does_not_depend_on_arrival_order_within_the_lateness(
    mode: str, seed: int
) -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, mode=mode)
    rewards = RewardConfig(value_weight=0.5)
    envs, expected = synthetic_stream(seed, 200, mode)
    shuffled = disorder(envs, seed + 100, max_delay=LATENESS * 0.9)
    seen: set[str] = set()
    early = 0
    for env in shuffled:
        if isinstance(env.event, Impression):
            seen.add(env.event.event_id)
        else:
            early += env.event.event_id not in seen
    assert early > 0  # the disorder is real: some outcomes overtake their impressions

    def result(stream: list[Envelope[Any]]) -> dict[str, tuple[str, float | None, float, bool]]:
        join = RewardJoin(config, rewards)
        joined, rejected = run_stream(join, stream)
        j, r = finish(join)
        joined, rejected = joined + j, rejected + r
        assert rejected == []
        counts = Counter(e.impression.event_id for e in joined)
        assert set(counts) == set(expected)
        assert max(counts.values()) == 1  # every impression joined exactly once
        return {e.impression.event_id: summary([e])[0][1:] for e in joined}

    in_order = result(envs)
    assert in_order == expected
    assert result(shuffled) == in_order


def test_join_events_matches_streaming_and_close() -> None:
    envs, _ = synthetic_stream(7, 50, "combine")
    envs.append(outcome("ghost", T0 + 3))
    joined, rejected = join_events(disorder(envs, 8, 5.0), COMBINE, REWARDS)

    join = RewardJoin(COMBINE, REWARDS)
    expected_joined, expected_rejected = run_stream(join, disorder(envs, 8, 5.0))
    j, r = finish(join)
    assert summary(joined) == summary(expected_joined + j)
    assert rejected == expected_rejected + r
    assert reasons(rejected) == [Reason.UNMATCHED_OUTCOME]


# ---- state round trip -------------------------------------------------------------------------


def messy_stream(mode: str) -> list[Envelope[Any]]:
    """A disordered stream with every kind of rejection, so the saved state has pending,
    waiting and closed entries at the cut."""
    envs, _ = synthetic_stream(11, 120, mode)
    envs = disorder(envs, 12, LATENESS * 0.9)
    extra = [
        outcome("ghost-1", T0 + 30),
        outcome("ghost-2", T0 + 150),
        outcome("ghost-3", T0 + 170),
        copy_of(envs[10]),
        copy_of(envs[40]),
        copy_of(next(e for e in envs if e.event.event_id == "e0020")),
        outcome("e0050", T0 + 100 + WINDOW + 1),  # beyond e0050's window
        outcome("e0060", T0 + 125, trigger="idle"),
    ]
    for env in extra:  # each arrives about when its event time says
        at = next((i for i, e in enumerate(envs) if e.event.ts > env.event.ts), len(envs))
        envs.insert(at, env)
    return envs


@pytest.mark.parametrize("mode", ["first", "combine"])
def test_state_round_trip_gives_the_same_results_as_an_uninterrupted_join(mode: str) -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, mode=mode)
    envs = messy_stream(mode)
    cut = next(i for i, e in enumerate(envs) if e.event.ts > T0 + 172)  # after ghost-3

    whole = RewardJoin(config, REWARDS)
    expected = run_stream(whole, envs)
    tail = finish(whole)
    expected_joined, expected_rejected = expected[0] + tail[0], expected[1] + tail[1]
    assert {r.reason for r in expected_rejected} >= {
        Reason.UNMATCHED_OUTCOME,
        Reason.LATE_OUTCOME,
        Reason.TRIGGER_MISMATCH,
    }

    first = RewardJoin(config, REWARDS)
    joined_a, rejected_a = run_stream(first, envs[:cut])
    assert first.pending > 0 and first.waiting > 0
    state = orjson.loads(orjson.dumps(first.state()))  # JSON-ready
    assert state["closed"]

    resumed = RewardJoin.from_state(state, config, REWARDS, decode)
    assert (resumed.pending, resumed.waiting, resumed.watermark) == (
        first.pending,
        first.waiting,
        first.watermark,
    )
    # run_stream restarts its high-water mark: seed it with what the first half had seen
    resumed.advance(max(e.event.ts for e in envs[:cut]))
    assert resumed.drain() == ([], [])
    joined_b, rejected_b = run_stream(resumed, envs[cut:])
    tail = finish(resumed)

    assert summary(joined_a + joined_b + tail[0]) == summary(expected_joined)
    assert rejected_a + rejected_b + tail[1] == expected_rejected


def test_state_of_a_fresh_join_round_trips() -> None:
    state = RewardJoin(CONFIG, REWARDS).state()
    assert state == {"watermark": None, "pending": [], "waiting": [], "closed": []}
    join = RewardJoin.from_state(state, CONFIG, REWARDS, decode)
    assert join.watermark == float("-inf")


def test_state_refuses_while_results_are_not_drained() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    join.add(impression("e1", T0))
    join.add(outcome("e1", T0 + 1))
    with pytest.raises(CheckpointError, match="drain"):
        join.state()
    join.drain()
    join.add(outcome("ghost", T0))
    join.close_all()  # only a rejection in flight
    with pytest.raises(CheckpointError, match="drain"):
        join.state()
    join.drain()
    assert join.state()["pending"] == []


def test_from_state_rejects_saved_messages_the_current_rules_refuse_and_keeps_the_rest() -> None:
    join = RewardJoin(CONFIG, REWARDS)
    feed(join, impression("e1", T0), outcome("e9", T0 + 1))  # e1 pending, e9 waiting
    state = join.state()
    strict = EventRules(frozenset())  # the "learner" namespace is no longer configured
    restored = RewardJoin.from_state(state, CONFIG, REWARDS, lambda raw: decode_event(raw, strict))
    joined, rejected = restored.drain()
    assert joined == [] and restored.pending == 0 and restored.waiting == 1
    assert [r.reason for r in rejected] == ["unknown_namespace"]
    assert "refused by the current config" in rejected[0].detail


def test_restored_closed_window_is_forgotten_when_the_watermark_passes_its_retention() -> None:
    # e1 settled by its outcome: closed until deadline T0 + 100 plus retention 100 + 10, i.e.
    # until the watermark (event time - 10) reaches T0 + 210: event time T0 + 220.
    join = RewardJoin(CONFIG, REWARDS)
    feed(join, impression("e1", T0), outcome("e1", T0 + 5))
    state = join.state()
    assert state["closed"] == [["e1", T0 + WINDOW, True]]
    resumed = RewardJoin.from_state(state, CONFIG, REWARDS, decode)

    resumed.advance(T0 + 219)
    assert resumed.state()["closed"] == [["e1", T0 + WINDOW, True]]
    resumed.advance(T0 + 220)

    assert resumed.state()["closed"] == []  # restored entries are pruned like live ones
    # Only the learned ids remember e1 now: late, not a duplicate of its closed window.
    _, rejected = feed(resumed, outcome("e1", T0 + 6))
    assert [(r.reason, r.detail) for r in rejected] == [
        ("late_outcome", "e1 was learned long before: window closed")
    ]


def test_restored_orphan_outcome_is_unmatched_exactly_when_the_watermark_passes_its_wait() -> None:
    # An outcome with no impression waits unmatched_wait_s (= window, 100) of event time: until
    # the watermark (event time - 10) reaches T0 + 100, i.e. event time T0 + 110.
    join = RewardJoin(CONFIG, REWARDS)
    ghost = outcome("ghost", T0)
    feed(join, ghost)
    state = join.state()
    assert len(state["waiting"]) == 1
    resumed = RewardJoin.from_state(state, CONFIG, REWARDS, decode)

    resumed.advance(T0 + 109)
    assert resumed.drain() == ([], []) and resumed.waiting == 1
    resumed.advance(T0 + 110)

    joined, rejected = resumed.drain()
    assert joined == [] and reasons(rejected) == [Reason.UNMATCHED_OUTCOME]
    assert (rejected[0].raw, rejected[0].source) == (ghost.raw, ghost.source)
    assert resumed.waiting == 0
