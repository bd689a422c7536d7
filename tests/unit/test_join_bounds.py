"""The join left unattended: learned ids outlive closed windows, the state has caps, and replay's
`join_events` goes through the same event-time guard as the consumer.

Window 100 s, lateness 10 s (closed windows are forgotten 110 s after they end).
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from bandit.config import JoinConfig, RewardConfig
from bandit.envelopes import Envelope, Rejected, Source
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

WINDOW, LATENESS = 100.0, 10.0
T0 = 1_767_600_000.0
CONFIG = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS)
REWARDS = RewardConfig()
RULES = EventRules(namespaces=frozenset({"learner"}))
YEAR_2030 = 1_893_456_000.0
YEAR_1 = -62_135_596_800.0

_offsets = itertools.count()


def decode(raw: bytes) -> Event:
    return decode_event(raw, RULES)


def impression(event_id: str, ts: float) -> Envelope[Impression]:
    raw = orjson.dumps(
        {
            "type": "impression", "event_id": event_id, "timestamp": timestamp_text(ts),
            "trigger": "quiz", "learner_id": "l1", "context": {"learner": {"level": "novice"}},
            "actions": [{"id": "hint"}, {"id": "none"}], "chosen": "hint", "probability": 0.5,
        }
    )  # fmt: skip
    event = decode(raw)
    assert isinstance(event, Impression)
    return Envelope(event, raw, Source("nudge.impressions", 0, next(_offsets)))


def outcome(event_id: str, ts: float) -> Envelope[Outcome]:
    raw = orjson.dumps(
        {"type": "outcome", "event_id": event_id, "timestamp": timestamp_text(ts),
         "trigger": "quiz", "outcome": "helpful"}
    )  # fmt: skip
    event = decode(raw)
    assert isinstance(event, Outcome)
    return Envelope(event, raw, Source("nudge.outcomes", 0, next(_offsets)))


def again(env: Envelope[Any]) -> Envelope[Any]:
    """The same bytes delivered again, at a new offset."""
    return Envelope(env.event, env.raw, Source(env.source.topic, 0, next(_offsets)))


def stream(join: RewardJoin, *envs: Envelope[Any]) -> tuple[list[JoinedEvent], list[Rejected]]:
    joined: list[JoinedEvent] = []
    rejected: list[Rejected] = []
    for env in envs:
        join.add(env)
        join.advance(env.event.ts)
        j, r = join.drain()
        joined += j
        rejected += r
    return joined, rejected


def pairs(n: int, start: float = T0, prefix: str = "p") -> list[Envelope[Any]]:
    """`n` impressions 2 s apart, each with its outcome a second later."""
    envs: list[Envelope[Any]] = []
    for i in range(n):
        ts = start + 2.0 * i
        envs += [impression(f"{prefix}{i}", ts), outcome(f"{prefix}{i}", ts + 1)]
    return envs


# ---- learned twice (issue 11, part 2) ---------------------------------------------------------


def test_an_impression_resent_after_its_window_and_lateness_is_a_duplicate() -> None:
    first = impression("e0", T0)
    join = RewardJoin(CONFIG, REWARDS)
    stream(join, first, outcome("e0", T0 + 1))
    # Traffic moves event time far past e0's window and its retention (T0 + 210).
    stream(join, *pairs(300, T0 + 5))
    joined, rejected = stream(join, again(first))
    assert joined == []
    assert [(r.reason, r.raw) for r in rejected] == [(Reason.DUPLICATE_IMPRESSION, first.raw)]
    assert "learned before" in rejected[0].detail


def test_learned_ids_survive_a_checkpoint_round_trip() -> None:
    first = impression("e0", T0)
    join = RewardJoin(CONFIG, REWARDS)
    stream(join, first, outcome("e0", T0 + 1), *pairs(300, T0 + 5))
    state = orjson.loads(orjson.dumps(join.state()))
    assert "learned_ids" in state and join.learned_ids == 301
    resumed = RewardJoin.from_state(state, CONFIG, REWARDS, decode)
    assert stream(resumed, again(first))[1][0].reason == Reason.DUPLICATE_IMPRESSION


def test_an_impression_older_than_the_learned_ids_reach_is_refused() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_event_age_s=1_000)
    join = RewardJoin(config, REWARDS)
    stream(join, *pairs(10, T0 + 5_000))
    joined, rejected = stream(join, impression("old", T0))
    assert joined == [] and [r.reason for r in rejected] == [Reason.IMPLAUSIBLE_EVENT_TIME]
    assert "may have been learned" in rejected[0].detail


# ---- event-time poisoning through replay's join_events (part 1) -------------------------------


def test_join_events_is_not_poisoned_by_one_outcome_stamped_2030() -> None:
    envs = pairs(300)
    envs.insert(100, outcome("ghost", YEAR_2030))
    joined, rejected = join_events(envs, CONFIG, REWARDS)
    assert len(joined) == 300 and not any(j.defaulted for j in joined)
    assert [r.reason for r in rejected] == [Reason.IMPLAUSIBLE_EVENT_TIME]


def test_join_events_does_not_learn_an_impression_stamped_in_year_1() -> None:
    envs = pairs(50)
    envs.insert(40, impression("ancient", YEAR_1))
    joined, rejected = join_events(envs, CONFIG, REWARDS)
    assert "ancient" not in {j.impression.event_id for j in joined}
    assert [r.reason for r in rejected] == [Reason.IMPLAUSIBLE_EVENT_TIME]


def test_join_events_keeps_a_genuine_gap_in_traffic() -> None:
    envs = pairs(50) + pairs(50, T0 + 6 * 3600, "q")  # six hours without events
    joined, rejected = join_events(envs, CONFIG, REWARDS)
    assert len(joined) == 100 and rejected == [] and not any(j.defaulted for j in joined)


# ---- bounded state (part 3) ------------------------------------------------------------------


def test_past_the_pending_cap_the_oldest_impression_is_closed_early_with_the_default() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_pending_impressions=3)
    join = RewardJoin(config, REWARDS)
    for i in range(5):
        join.add(impression(f"e{i}", T0))  # one timestamp: nothing closes on the watermark
    joined, rejected = join.drain()
    assert [(j.impression.event_id, j.defaulted, j.closed_early) for j in joined] == [
        ("e0", True, True),
        ("e1", True, True),
    ]
    assert join.pending == 3 and rejected == []
    # An outcome for a window closed early is not "late": the state was full.
    join.add(outcome("e0", T0 + 5))
    assert [r.reason for r in join.drain()[1]] == [Reason.JOIN_STATE_FULL]


def test_the_pending_byte_cap_counts_the_saved_bytes() -> None:
    size = len(impression("e0", T0).raw)
    config = JoinConfig(max_pending_bytes=65_536)
    join = RewardJoin(config, REWARDS)
    n = 65_536 // size + 3
    for i in range(n):
        join.add(impression(f"e{i}", T0))
    assert join.pending_bytes <= 65_536 < join.pending_bytes + size
    assert len(join.drain()[0]) == n - join.pending


def test_past_the_waiting_cap_the_longest_waiting_outcome_is_rejected() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_waiting_outcomes=2)
    join = RewardJoin(config, REWARDS)
    for i in range(4):
        join.add(outcome(f"ghost{i}", T0 + i))
    _, rejected = join.drain()
    assert [r.reason for r in rejected] == [Reason.JOIN_STATE_FULL] * 2
    assert [orjson.loads(r.raw)["event_id"] for r in rejected] == ["ghost0", "ghost1"]
    assert join.waiting == 2 and "the longest waiting goes first" in rejected[0].detail
    join.add(impression("ghost3", T0 + 2))  # a waiting outcome still joins
    joined, _ = join.drain()
    assert [(j.impression.event_id, j.label) for j in joined] == [("ghost3", OutcomeLabel.HELPFUL)]
    assert join.waiting == 1 and join.waiting_bytes == len(outcome("ghost2", T0 + 2).raw)


def test_a_compact_join_keeps_pending_impressions_as_bytes_and_decodes_them_to_settle() -> None:
    join = RewardJoin(CONFIG, REWARDS, decode)
    env = impression("e0", T0)
    joined, _ = stream(join, env, outcome("e0", T0 + 1))
    assert [j.impression for j in joined] == [env.event]
    state = RewardJoin(CONFIG, REWARDS)
    state.add(impression("e1", T0))
    resumed = RewardJoin.from_state(state.state(), CONFIG, REWARDS, decode, compact=True)
    resumed.close_all()
    assert [j.impression.event_id for j in resumed.drain()[0]] == ["e1"]


def test_a_compact_join_decodes_again_only_past_the_pending_it_keeps_decoded() -> None:
    decoded: list[bytes] = []

    def counting(raw: bytes) -> Any:
        decoded.append(raw)
        return decode(raw)

    join = RewardJoin(CONFIG, REWARDS, counting, keep_decoded=1)
    first, second, third = impression("k0", T0), impression("k1", T0), impression("k2", T0)
    for env in (first, second):
        join.add(env)
    join.close_all()  # k0 kept decoded, k1 as bytes only
    assert [j.impression for j in join.drain()[0]] == [first.event, second.event]
    assert decoded == [second.raw]
    join.add(third)  # k0 settled: its place is free again
    join.close_all()
    assert [j.impression for j in join.drain()[0]] == [third.event]
    assert decoded == [second.raw]


def test_a_closed_early_window_survives_a_checkpoint_round_trip() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_pending_impressions=1)
    join = RewardJoin(config, REWARDS)
    join.add(impression("e0", T0))
    join.add(impression("e1", T0))
    join.drain()
    state = join.state()
    assert ["e0", T0 + WINDOW, False, True] in state["closed"]
    resumed = RewardJoin.from_state(state, config, REWARDS, decode)
    resumed.add(outcome("e0", T0 + 5))
    assert [r.reason for r in resumed.drain()[1]] == [Reason.JOIN_STATE_FULL]


@pytest.mark.parametrize(
    ("join", "message"),
    [
        ({"max_event_age_s": 100.0}, "max_event_age_s (100.0) must cover"),
        ({"window_s": 50_000.0, "allowed_lateness_s": 10.0}, "= 100010.0"),
    ],
)
def test_the_age_must_cover_what_the_join_still_uses(join: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        JoinConfig(**join)


def test_in_mode_combine_outcome_bytes_count_against_the_pending_byte_cap() -> None:
    # Reported in review: mode combine kept each outcome in its open window without checking
    # the cap, so `max_pending_bytes` could be exceeded by outcomes alone.
    imp_size, out_size = len(impression("e0", T0).raw), len(outcome("e0", T0 + 1).raw)
    cap = 65_536
    config = JoinConfig(mode="combine", max_pending_bytes=cap)
    join = RewardJoin(config, REWARDS)
    n = cap // (imp_size + out_size) + 3
    for i in range(n):
        join.add(impression(f"e{i}", T0 + i))
        join.add(outcome(f"e{i}", T0 + i + 1))
    assert join.pending_bytes <= cap
    closed = join.drain()[0]
    assert closed and all(j.closed_early and not j.defaulted for j in closed)


def test_an_outcome_for_an_impression_learned_long_ago_is_late_not_unmatched() -> None:
    # Reported in review: once the closed window was forgotten (110 s after it ended here),
    # an outcome for it was dead-lettered as `unmatched_outcome`; the learned ids still know it.
    join = RewardJoin(CONFIG, REWARDS)
    join.add(impression("e1", T0))
    join.advance(T0 + 500)  # window closed (defaulted) and forgotten
    join.drain()
    join.add(outcome("e1", T0 + 520))
    join.advance(T0 + 1000)
    _, rejected = join.drain()
    assert [r.reason for r in rejected] == ["late_outcome"]


def test_closed_windows_are_capped_when_the_watermark_never_ends_any() -> None:
    # Found by the fault campaign: 100,000 impressions with one timestamp, past the pending
    # cap, left every closed window in memory (and checkpoints): the watermark never passed
    # their retention. The oldest are forgotten past max_closed_windows; the learned ids
    # still know them.
    config = JoinConfig(max_pending_impressions=10, max_closed_windows=1_000)
    join = RewardJoin(config, REWARDS)
    for i in range(3_000):
        join.add(impression(f"e{i}", T0))
    joined, rejected = join.drain()
    assert len(joined) == 3_000 - join.pending and rejected == []
    assert len(join.state()["closed"]) == 1_000
    join.add(outcome("e0", T0 + 1))  # its closed window was forgotten: late, via learned ids
    assert [r.reason for r in join.drain()[1]] == ["late_outcome"]
