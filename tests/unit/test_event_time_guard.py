"""The event-time guard: implausible event times are held or dead-lettered, never counted.

Closed-form cases with skew X = 100 s, age H = 1,000 s and K = 3 confirming records.
"""

from __future__ import annotations

from typing import Any

import pytest
from guard_fixtures import AGE, SKEW, T0, YEAR_1, YEAR_9999, K, record, run, ts_of

from bandit.config import JoinConfig
from bandit.events import Event, Outcome, OutcomeLabel
from bandit.watermarks import EventTimeGuard


def guard(**kwargs: Any) -> EventTimeGuard:
    return EventTimeGuard(SKEW, K, AGE, **kwargs)




def started(at: float = T0) -> EventTimeGuard:
    g = guard()
    run(g, record(at), record(at + 1), record(at + 2))
    assert g.reference == at + 2 and g.held == 0
    return g


def test_the_first_records_are_held_until_enough_of_them_agree_then_pass_in_order() -> None:
    g = guard()
    assert run(g, record(T0 + 5), record(T0)) == ([], [])
    assert g.held == 2 and g.reference == float("-inf")
    assert run(g, record(T0 + 2)) == ([T0 + 5, T0, T0 + 2], [])
    assert g.reference == T0 + 5


def test_a_lone_record_far_ahead_is_dead_lettered_once_k_later_records_disagree() -> None:
    g = started()
    assert run(g, record(T0 + 10_000)) == ([], [])
    assert g.held == 1 and g.reference == T0 + 2  # held: the reference does not move
    assert run(g, record(T0 + 3), record(T0 + 4)) == ([T0 + 3, T0 + 4], [])
    assert run(g, record(T0 + 5)) == ([T0 + 5], [T0 + 10_000])
    assert g.held == 0 and g.reference == T0 + 5


def test_a_genuine_gap_is_believed_once_k_records_agree_and_nothing_is_lost() -> None:
    g = started()
    later = T0 + 3 * 3600  # three hours without traffic
    assert run(g, record(later), record(later + 2)) == ([], [])
    assert run(g, record(later + 4)) == ([later, later + 2, later + 4], [])
    assert g.reference == later + 4
    assert run(g, record(later + 6)) == ([later + 6], [])  # plausible again: no holding


def test_sparse_traffic_with_gaps_wider_than_the_skew_is_believed_k_minus_1_records_late() -> None:
    g = started()
    sparse = [T0 + 400 * i for i in range(1, 6)]  # 400 s apart: beyond the skew, within the age
    passed, refused = run(g, *(record(t) for t in sparse))
    assert passed == sparse[:3] and refused == []  # each waits for two later records
    # A bounded input ends: the last two never got their confirmation, but each is within
    # the age of the record before it (sparse traffic, not a clock years off): believed.
    passed_at_end, refused_at_end = g.close()
    assert [e.event.ts for e in passed_at_end] == sparse[3:] and refused_at_end == []



def test_a_straggler_after_a_jump_does_not_outvote_it() -> None:
    g = started()
    later = T0 + 3600
    passed, refused = run(g, record(later), record(T0 + 3), record(later + 1), record(later + 2))
    assert refused == [] and sorted(passed) == sorted([T0 + 3, later, later + 1, later + 2])


def test_an_interleaved_clock_far_ahead_at_half_the_records_is_dead_lettered() -> None:
    g = started()
    bad = T0 + 10_000
    records = [record(bad if i % 2 == 0 else T0 + 3 + i) for i in range(10)]
    passed, refused = run(g, *records)
    assert refused == [bad] * 3 and bad not in passed and g.held == 2  # two await their votes
    assert g.reference < bad
    assert [ts_of(r) for r in g.close()[1]] == [bad, bad]


@pytest.mark.parametrize("absurd", [YEAR_9999, YEAR_1], ids=["year-9999", "year-1"])
def test_an_absurd_first_record_never_sets_the_reference(absurd: float) -> None:
    g = guard()
    passed, refused = run(g, record(absurd), record(T0), record(T0 + 1), record(T0 + 2))
    assert passed == [T0, T0 + 1, T0 + 2] and refused == [absurd]
    assert g.reference == T0 + 2


def test_a_record_more_than_the_age_behind_is_dead_lettered_at_once() -> None:
    g = started()
    assert run(g, record(T0 + 2 - AGE - 1)) == ([], [T0 + 2 - AGE - 1])
    assert run(g, record(T0 + 2 - AGE)) == ([T0 + 2 - AGE], [])  # exactly at the age: kept
    assert run(g, record(YEAR_1)) == ([], [YEAR_1])


def test_exactly_the_skew_ahead_is_plausible_a_little_more_is_held() -> None:
    g = started()
    assert run(g, record(T0 + 2 + SKEW)) == ([T0 + 2 + SKEW], [])
    assert run(g, record(T0 + 2 + 2 * SKEW + 0.5)) == ([], [])
    assert g.held == 1


def test_partitions_are_judged_apart_so_one_running_ahead_refuses_nothing_on_another() -> None:
    # Catching up a backlog, one topic is read hours of event time ahead of the other: each
    # partition is plausible on its own, and nothing on the slower one is "too old".
    g = started()
    ahead = T0 + 2 * AGE
    run(g, *(record(ahead + i, partition=1) for i in range(3)))
    passed, refused = run(g, record(T0 + 3, 0), record(T0 + 4, 0))
    assert refused == [] and passed == [T0 + 3, T0 + 4]
    assert g.reference_of("nudge.outcomes/0") == T0 + 4
    assert g.reference_of("nudge.outcomes/1") == ahead + 2 == g.reference


def test_a_jump_confirmed_on_one_partition_leaves_another_partitions_held_record_held() -> None:
    g = started()
    later = T0 + 3600
    assert run(g, record(later + 30, partition=1)) == ([], [])  # a new partition: no reference
    passed, _ = run(g, record(later, 0), record(later + 1, 0), record(later + 2, 0))
    assert passed == [later, later + 1, later + 2] and g.held == 1
    passed, _ = run(g, record(later + 31, 1), record(later + 32, 1))  # its own votes
    assert passed == [later + 30, later + 31, later + 32] and g.held == 0


def test_votes_come_only_from_the_held_records_partition() -> None:
    g = started()
    run(g, record(T0 + 10_000, partition=1))
    run(g, *(record(T0 + 3 + i, partition=0) for i in range(5)))
    assert g.held == 1  # partition 0 says nothing about partition 1's clock


def test_close_dead_letters_what_is_still_unconfirmed_and_further_ahead_than_the_age() -> None:
    g = started()
    run(g, record(T0 + 10_000), record(T0 + 10_001))  # one agreeing record: K is 3
    passed, refused = g.close()
    assert passed == [] and [ts_of(r) for r in refused] == [T0 + 10_000, T0 + 10_001]
    assert g.held == 0 and g.close() == ([], [])


def test_close_of_a_tiny_input_that_never_confirmed_keeps_its_consistent_records() -> None:
    g = guard()
    run(g, record(T0, 0), record(T0 + 30, 1))
    passed, refused = g.close()
    assert [e.event.ts for e in passed] == [T0, T0 + 30] and refused == []


def test_the_wall_clock_bound_is_off_by_default_and_applies_when_set() -> None:
    g = started()
    assert g.offer(record(T0 + 50), wall_time=T0 - 86_400)[0]  # off: wall time ignored
    bounded = EventTimeGuard(SKEW, K, AGE, max_ahead_of_wall_clock_s=3600)
    passed, refused = bounded.offer(record(T0 + 7200), wall_time=T0)
    assert passed == [] and [ts_of(r) for r in refused] == [T0 + 7200]
    assert "ahead of the wall clock" in refused[0].detail
    assert bounded.offer(record(T0 + 7200), wall_time=None) == ([], [])  # replay: no wall time


def test_state_round_trip_keeps_the_reference_the_held_records_and_their_votes() -> None:
    g = started()
    run(g, record(T0 + 10_000), record(T0 + 3))
    state = g.state()
    assert state["references"] == {"nudge.outcomes/0": T0 + 3} and len(state["held"]) == 1

    def decode(raw: bytes) -> Event:
        return Outcome("x", float(raw.decode()), "quiz", OutcomeLabel.HELPFUL, None)

    restored = EventTimeGuard.from_state(
        state, JoinConfig(max_future_skew_s=SKEW, jump_confirm_records=K), decode
    )
    assert restored.state()["held"] == state["held"]
    # The held record already has one disagreeing vote: two more and it goes.
    assert run(restored, record(T0 + 4), record(T0 + 5))[1] == [T0 + 10_000]


def test_a_fresh_state_restores_a_fresh_guard() -> None:
    def never(raw: bytes) -> Event:
        raise AssertionError(raw)

    g = EventTimeGuard.from_state({}, JoinConfig(), never)
    assert g.reference == float("-inf") and g.held == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_future_skew_s": 0.0}, "max_future_skew_s > 0"),
        ({"max_age_s": -1.0}, "max_age_s > 0"),
        ({"confirm_records": 1}, "confirm_records >= 2"),
    ],
)
def test_bad_settings_are_refused_naming_them(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"max_future_skew_s": SKEW, "confirm_records": K, "max_age_s": AGE}
    with pytest.raises(ValueError, match=message):
        EventTimeGuard(**{**args, **kwargs})


def test_with_two_confirming_records_one_agreeing_later_record_is_enough() -> None:
    g = EventTimeGuard(SKEW, 2, AGE)
    assert run(g, record(T0)) == ([], [])
    assert run(g, record(T0 + 1)) == ([T0, T0 + 1], [])
    assert run(g, record(T0 + 5_000)) == ([], [])
    assert run(g, record(T0 + 2), record(T0 + 3)) == ([T0 + 2, T0 + 3], [T0 + 5_000])
