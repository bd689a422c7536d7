"""Join bounds edge cases: byte counts, the caps at their exact limits and in arrival order,
windows closed early, the learned ids' floor and cap, a restore, `reopen`.
(The main tests of the bounds are in test_join_bounds.py.)

Window 100 s, lateness 10 s: a closed window is forgotten 110 s after it ends.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from bandit.config import JoinConfig, RewardConfig
from bandit.envelopes import Envelope, Rejected, Source
from bandit.errors import CheckpointError, InvalidEvent
from bandit.events import Event, Impression, Outcome, OutcomeLabel, Reason
from bandit.join import JoinedEvent, RewardJoin

WINDOW, LATENESS = 100.0, 10.0
T0 = 1_767_600_000.0  # a multiple of 100: learned-id buckets of 100 s start at T0
FIRST = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS)
COMBINE = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, mode="combine")
REWARDS = RewardConfig()
HELPFUL = OutcomeLabel.HELPFUL
NEG_INF = float("-inf")

_offsets = itertools.count()
_made: dict[bytes, Event] = {}  # every test message's bytes -> the event it was made from


def decode(raw: bytes) -> Event:
    """The event a test message was made from (what decoding its wire bytes would give)."""
    return _made[raw]


def _envelope(event: Event, text: str, size: int | None, topic: str) -> Envelope[Any]:
    raw = text.encode()
    raw = raw if size is None else raw.ljust(size, b".")
    _made[raw] = event
    return Envelope(event, raw, Source(topic, 0, next(_offsets)))


def impression(event_id: str, ts: float, size: int | None = None) -> Envelope[Impression]:
    """An impression; `size`: its message padded to that many bytes."""
    event = Impression(
        event_id=event_id, ts=ts, trigger="quiz", learner_id="l1", context={},
        action_ids=("hint", "none"), action_features=({}, {}), chosen_index=0,
        probability=0.5, policy_version="v1",
    )  # fmt: skip
    return _envelope(event, f"impression {event_id} {ts}", size, "nudge.impressions")


def outcome(event_id: str, ts: float, size: int | None = None) -> Envelope[Outcome]:
    event = Outcome(event_id, ts, "quiz", HELPFUL, None)
    return _envelope(event, f"outcome {event_id} {ts}", size, "nudge.outcomes")


def feed(join: RewardJoin, *envs: Envelope[Any]) -> tuple[list[JoinedEvent], list[Rejected]]:
    for env in envs:
        join.add(env)
    return join.drain()


def closes(joined: list[JoinedEvent]) -> list[tuple[str, str, bool, bool]]:
    return [(j.impression.event_id, j.label.value, j.defaulted, j.closed_early) for j in joined]


def reasons(rejected: list[Rejected]) -> list[tuple[str, str]]:
    return [(r.reason, r.detail) for r in rejected]


def restore(join: RewardJoin, config: JoinConfig, compact: bool = False) -> RewardJoin:
    state = orjson.loads(orjson.dumps(join.state()))
    return RewardJoin.from_state(state, config, REWARDS, decode, compact=compact)


# ---- byte counts -----------------------------------------------------------------------------


def test_pending_bytes_count_the_impression_and_its_outcomes_until_it_settles() -> None:
    join = RewardJoin(COMBINE, REWARDS)
    assert join.pending_bytes == 0
    feed(join, impression("a", T0, size=100))
    assert join.pending_bytes == 100
    feed(join, outcome("a", T0 + 1, size=40), outcome("a", T0 + 2, size=30))
    assert join.pending_bytes == 170
    join.advance(T0 + WINDOW + LATENESS)
    assert join.pending == 0 and join.pending_bytes == 0


def test_in_mode_first_an_outcome_that_settles_leaves_no_pending_bytes() -> None:
    join = RewardJoin(FIRST, REWARDS)
    joined, _ = feed(join, impression("a", T0, size=100), outcome("a", T0 + 1, size=40))
    assert closes(joined) == [("a", "helpful", False, False)] and join.pending_bytes == 0


def test_waiting_bytes_drop_by_the_outcome_that_finds_its_impression() -> None:
    join = RewardJoin(FIRST, REWARDS)
    feed(join, outcome("a", T0, size=50), outcome("b", T0, size=70))
    assert (join.waiting, join.waiting_bytes) == (2, 120)
    feed(join, impression("a", T0))
    assert (join.waiting, join.waiting_bytes) == (1, 70)


# ---- the caps: exact limits, order -----------------------------------------------------------


def test_exactly_at_the_pending_byte_cap_nothing_is_closed_early() -> None:
    join = RewardJoin(JoinConfig(max_pending_bytes=65_536), REWARDS)
    joined, _ = feed(join, impression("a", T0, size=32_768), impression("b", T0, size=32_768))
    assert joined == [] and join.pending_bytes == 65_536
    joined, _ = feed(join, impression("c", T0, size=1))
    assert closes(joined) == [("a", "ignored", True, True)]


def test_exactly_at_the_waiting_byte_cap_no_outcome_is_refused() -> None:
    join = RewardJoin(JoinConfig(max_waiting_bytes=65_536), REWARDS)
    _, rejected = feed(join, outcome("a", T0, size=32_768), outcome("b", T0, size=32_768))
    assert rejected == [] and join.waiting_bytes == 65_536
    c = outcome("c", T0)
    _, rejected = feed(join, c)
    assert [r.raw[:9] for r in rejected] == [b"outcome a"]
    assert join.waiting_bytes == 32_768 + len(c.raw)


def test_windows_ending_together_close_early_in_arrival_order_not_by_id() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_pending_impressions=2)
    join = RewardJoin(config, REWARDS)
    joined, _ = feed(join, impression("b", T0), impression("a", T0), impression("c", T0))
    assert closes(joined) == [("b", "ignored", True, True)]


def test_restored_pending_impressions_keep_their_arrival_order_for_the_cap() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_pending_impressions=2)
    join = RewardJoin(config, REWARDS)
    feed(join, impression("b", T0), impression("a", T0))
    resumed = restore(join, config)
    joined, _ = feed(resumed, impression("c", T0))
    assert closes(joined) == [("b", "ignored", True, True)]


def test_a_joined_outcome_does_not_stop_the_cap_refusing_the_longest_waiting() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_waiting_outcomes=1)
    join = RewardJoin(config, REWARDS)
    joined, _ = feed(join, outcome("a", T0), impression("a", T0))  # waited, then joined
    assert closes(joined) == [("a", "helpful", False, False)]
    _, rejected = feed(join, outcome("g1", T0 + 1), outcome("g2", T0 + 2))
    assert [(r.reason, r.raw) for r in rejected] == [
        (Reason.JOIN_STATE_FULL.value, b"outcome g1 1767600001.0")
    ]
    assert join.waiting == 1


# ---- windows closed early ---------------------------------------------------------------------


def test_a_window_closed_early_after_its_outcome_arrived_is_learned_with_it_marked_early() -> None:
    config = JoinConfig(
        window_s=WINDOW, allowed_lateness_s=LATENESS, mode="combine", max_pending_impressions=1
    )
    join = RewardJoin(config, REWARDS)
    joined, _ = feed(join, impression("a", T0), outcome("a", T0 + 1), impression("b", T0 + 2))
    assert closes(joined) == [("a", "helpful", False, True)]


def test_an_outcome_exactly_at_the_end_of_a_window_closed_early_is_refused_as_state_full() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_pending_impressions=1)
    join = RewardJoin(config, REWARDS)
    feed(join, impression("a", T0), impression("b", T0))  # a is closed early
    _, rejected = feed(join, outcome("a", T0 + WINDOW), outcome("a", T0 + WINDOW + 1))
    assert reasons(rejected) == [
        (
            Reason.JOIN_STATE_FULL.value,
            "window of a was closed early: pending impressions at the cap",
        ),
        (Reason.LATE_OUTCOME.value, "window of a already closed"),
    ]


# ---- learned ids: the floor, the cap, a checkpoint ---------------------------------------------


def test_an_impression_at_the_learned_ids_floor_is_joined_one_second_older_refused() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_event_age_s=3_200)
    join = RewardJoin(config, REWARDS)
    join.advance(T0 + 3_200 + LATENESS + 50)  # watermark T0 + 3,250: ids before T0 forgotten
    joined, rejected = feed(join, impression("at", T0), impression("before", T0 - 1))
    assert closes(joined) == [("at", "ignored", True, False)]  # its window is long closed
    assert reasons(rejected) == [
        (
            Reason.IMPLAUSIBLE_EVENT_TIME.value,
            "impression before is older than the learned ids reach back (1s before them): it "
            "may have been learned",
        )
    ]


def test_over_the_learned_id_cap_ids_are_kept_while_the_join_still_covers_their_windows() -> None:
    # 32 buckets of 100 s; the join covers 2 x window + lateness = 210 s behind the watermark.
    config = JoinConfig(
        window_s=WINDOW, allowed_lateness_s=LATENESS, max_event_age_s=3_200, max_learned_ids=1_000
    )
    join = RewardJoin(config, REWARDS)
    first = impression("i0", T0)
    feed(join, first, *(impression(f"i{n}", T0 + 0.05 * n) for n in range(1, 1_001)))
    join.advance(T0 + 150 + LATENESS)  # watermark T0 + 150: all 1,001 learned, over the cap
    assert len(join.drain()[0]) == 1_001 and join.learned_ids == 1_001
    join.advance(T0 + 300 + LATENESS)  # the bucket [T0, T0 + 100) ends 200 s behind: kept
    assert join.learned_ids == 1_001
    _, rejected = feed(join, first)  # its closed window is forgotten, its id is not
    assert reasons(rejected) == [
        (Reason.DUPLICATE_IMPRESSION.value, "impression i0 was learned before")
    ]
    join.advance(T0 + 310 + LATENESS)  # now 210 s behind: it may go
    assert join.learned_ids == 0


def test_ids_learned_before_any_watermark_survive_a_checkpoint() -> None:
    config = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, max_pending_impressions=1)
    join = RewardJoin(config, REWARDS)
    first = impression("a", T0)
    feed(join, first, impression("b", T0))  # a closed early and learned; no watermark yet
    resumed = restore(join, config)
    assert resumed.learned_ids == 1
    resumed.advance(T0 + 300)  # a's closed window is forgotten (b is settled)
    resumed.drain()
    joined, rejected = feed(resumed, first)
    assert closes(joined) == [] and [r.reason for r in rejected] == [
        Reason.DUPLICATE_IMPRESSION.value
    ]


# ---- restore ---------------------------------------------------------------------------------


def _busy_join() -> RewardJoin:
    """Two pending impressions (one with two outcomes), two outcomes waiting, a watermark."""
    join = RewardJoin(COMBINE, REWARDS)
    feed(
        join, impression("a", T0, size=300), outcome("a", T0 + 1, size=60),
        outcome("a", T0 + 2, size=50), impression("b", T0 + 3, size=200),
        outcome("x", T0 + 4, size=70), outcome("y", T0 + 5, size=80),
    )  # fmt: skip
    join.advance(T0 + 5)
    assert (join.pending_bytes, join.waiting_bytes) == (610, 150)
    return join


@pytest.mark.parametrize("compact", [False, True], ids=["decoded", "compact"])
def test_a_restore_keeps_the_byte_counts_and_the_saved_sources(compact: bool) -> None:
    join = _busy_join()
    resumed = restore(join, COMBINE, compact=compact)
    assert (resumed.pending, resumed.waiting) == (2, 2)
    assert (resumed.pending_bytes, resumed.waiting_bytes) == (610, 150)
    assert resumed.state() == join.state()


def test_a_restore_dead_letters_what_the_current_rules_refuse_and_keeps_their_outcomes() -> None:
    join = RewardJoin(COMBINE, REWARDS)
    a, b, c = impression("a", T0), impression("b", T0 + 1), impression("c", T0 + 2)
    out_a, out_b, out_x = outcome("a", T0 + 3), outcome("b", T0 + 4), outcome("x", T0 + 5)
    refused = {a.raw, b.raw, out_x.raw}

    def refusing(raw: bytes) -> Event:
        if raw in refused:
            raise InvalidEvent("unknown_namespace", "no namespace x")
        return decode(raw)

    feed(join, a, out_a, b, out_b, c, out_x)
    state = orjson.loads(orjson.dumps(join.state()))
    resumed = RewardJoin.from_state(state, COMBINE, REWARDS, refusing)
    assert (resumed.pending, resumed.waiting) == (1, 2)  # c; the outcomes of a and b
    _, rejected = resumed.drain()
    assert [(r.reason, r.raw) for r in rejected] == [
        ("unknown_namespace", a.raw), ("unknown_namespace", b.raw),
        ("unknown_namespace", out_x.raw),
    ]  # fmt: skip


def test_a_compact_join_keeps_no_decoded_impression_and_decodes_it_once_to_settle() -> None:
    calls: list[bytes] = []

    def counting(raw: bytes) -> Event:
        calls.append(raw)
        return decode(raw)

    env = impression("a", T0)
    join = RewardJoin(FIRST, REWARDS, counting, keep_decoded=0)
    feed(join, env)
    assert calls == []
    joined, _ = feed(join, outcome("a", T0 + 1))
    assert calls == [env.raw] and [j.impression for j in joined] == [env.event]
    saved = RewardJoin(FIRST, REWARDS)
    feed(saved, env)
    resumed = RewardJoin.from_state(saved.state(), FIRST, REWARDS, counting, compact=True)
    calls.clear()
    feed(resumed, outcome("a", T0 + 1))
    assert calls == [env.raw]  # restored as bytes: decoded again to settle


def test_a_pending_impression_that_no_longer_decodes_is_named_when_it_settles() -> None:
    def wrong(raw: bytes) -> Event:
        return Outcome("a", T0, "quiz", HELPFUL, None)

    join = RewardJoin(FIRST, REWARDS, wrong, keep_decoded=0)
    join.add(impression("a", T0))
    with pytest.raises(CheckpointError, match=r"^pending a no longer decodes to an impression$"):
        join.close_all()


# ---- reopen ----------------------------------------------------------------------------------


@pytest.mark.parametrize("compact", [False, True], ids=["decoded", "compact"])
def test_reopen_hands_back_every_saved_message_and_empties_the_join(compact: bool) -> None:
    imp_a, out_a = impression("a", T0, size=300), outcome("a", T0 + 1, size=60)
    imp_b, out_x = impression("b", T0 + 3, size=200), outcome("x", T0 + 4, size=70)
    join = RewardJoin(COMBINE, REWARDS, decode if compact else None)
    feed(join, imp_a, out_a, imp_b, out_x)
    join.advance(T0 + 4)
    assert join.reopen() == [imp_a, out_a, imp_b, out_x]
    assert (join.pending, join.waiting, join.pending_bytes, join.waiting_bytes) == (0, 0, 0, 0)
    assert join.watermark == NEG_INF
    feed(join, imp_a, out_a, imp_b, out_x)  # offered again: the same state as before
    assert (join.pending, join.waiting, join.pending_bytes, join.waiting_bytes) == (
        2, 1, 560, 70,
    )  # fmt: skip
