"""Event-time guard edge cases: exact boundaries of the votes and the release, the release
order, `close` without a reference, the wall-clock bound, settings, a restore, rejection details.
(The main guard tests are in test_event_time_guard.py.)

Closed-form cases with skew X = 100 s, age H = 1,000 s and K = 3 confirming records (K = 2
where one vote should decide).
"""

from __future__ import annotations

import orjson
import pytest
from guard_fixtures import AGE, SKEW, T0, YEAR_1, YEAR_9999, K, decode, record, run, ts_of

from bandit.config import JoinConfig
from bandit.envelopes import Envelope, Source
from bandit.errors import InvalidEvent
from bandit.events import Event, EventRules, Reason, decode_event
from bandit.watermarks import EventTimeGuard


def started(k: int = K) -> EventTimeGuard:
    """A guard whose partition 0 has the reference T0 + k - 1."""
    g = EventTimeGuard(SKEW, k, AGE)
    run(g, *(record(T0 + i) for i in range(k)))
    assert g.reference == T0 + k - 1 and g.held == 0
    return g


def restored(g: EventTimeGuard) -> EventTimeGuard:
    state = orjson.loads(orjson.dumps(g.state()))
    return EventTimeGuard.from_state(
        state, JoinConfig(max_future_skew_s=SKEW, jump_confirm_records=K, max_event_age_s=AGE),
        decode,
    )  # fmt: skip


# ---- the release: order, boundaries, a chain -------------------------------------------------


def test_a_record_let_through_at_once_comes_after_the_held_records_it_releases() -> None:
    g = started()
    assert run(g, record(T0 + 150)) == ([], [])  # 148 s ahead: held
    # Within reach: it passes, the reference moves to T0 + 60 and T0 + 150 is then within reach.
    assert run(g, record(T0 + 60)) == ([T0 + 150, T0 + 60], [])  # in arrival order
    assert g.reference == T0 + 150 and g.held == 0


def test_a_held_record_exactly_the_skew_ahead_of_the_moved_reference_is_let_through() -> None:
    g = started()
    run(g, record(T0 + 152))
    assert run(g, record(T0 + 52)) == ([T0 + 152, T0 + 52], [])  # 152 = 52 + SKEW


def test_a_released_record_that_moves_the_reference_brings_more_held_records_within_reach() -> None:
    g = started()
    run(g, record(T0 + 240), record(T0 + 150))
    # T0 + 60 passes; T0 + 150 is within reach of it, T0 + 240 only of T0 + 150.
    assert run(g, record(T0 + 60)) == ([T0 + 240, T0 + 150, T0 + 60], [])
    assert g.reference == T0 + 240 and g.held == 0


def test_a_jump_releases_a_record_held_exactly_the_age_behind_it_and_refuses_one_older() -> None:
    g = started()
    jump = T0 + 1_200
    # T0 + 199 and T0 + 200 are held; the jump gets two agreeing votes, they do not.
    records = [record(T0 + 199), record(T0 + 200), record(jump), record(jump + 1)]
    assert run(g, *records) == ([], [])
    p, x = g.offer(record(jump + 2))
    assert [e.event.ts for e in p] == [T0 + 200, jump, jump + 1, jump + 2]
    assert [(ts_of(r), r.detail) for r in x] == [
        (
            T0 + 199,
            "event time 2026-01-05T08:03:19.000+00:00: 1001s behind the newest plausible event "
            "time of nudge.outcomes/0; events more than 1000s behind are no longer joined",
        )
    ]


# ---- votes at their boundaries ---------------------------------------------------------------


def test_a_later_record_exactly_the_age_after_a_held_one_agrees_with_it() -> None:
    g = started(k=2)  # one agreeing record confirms
    held = T0 + 5_000
    assert run(g, record(held)) == ([], [])
    assert run(g, record(held + AGE)) == ([held], [])  # believed; the later one is still ahead
    assert g.reference == held and g.held == 1


def test_a_later_record_exactly_the_skew_before_a_held_one_agrees_with_it() -> None:
    g = started(k=2)
    held = T0 + 5_000
    assert run(g, record(held), record(held - SKEW)) == ([held, held - SKEW], [])


def test_a_record_refused_as_too_old_does_not_vote() -> None:
    g = started()
    old = T0 + 2 - AGE - 1
    assert run(g, record(T0 + 10_000)) == ([], [])
    assert run(g, record(old), record(old), record(old)) == ([], [old, old, old])
    assert g.held == 1  # three disagreeing votes would have dead-lettered it


def test_two_held_records_confirmed_by_one_record_move_the_reference_to_the_higher() -> None:
    g = started()
    high, low = T0 + 4_500, T0 + 4_000  # 500 s apart: `low` disagrees with `high`
    assert run(g, record(high), record(low), record(high)) == ([], [])
    # The third record after `high` confirms it (2 for, 1 against) and `low` (2 for) at once.
    assert run(g, record(high)) == ([high, low, high, high], [])
    assert g.reference == high and g.held == 0


def test_a_lone_clock_dead_lettered_by_votes_says_how_many_disagreed_and_agreed() -> None:
    g = started()
    run(g, record(T0 + 10_000), record(T0 + 3), record(T0 + 4))
    p, x = g.offer(record(T0 + 5))
    assert [e.event.ts for e in p] == [T0 + 5] and [ts_of(r) for r in x] == [T0 + 10_000]
    assert x[0].detail == (
        "event time 2026-01-05T10:46:40.000+00:00: 3 later records of nudge.outcomes/0 are "
        "more than 100s behind it (or 1000s past it), 0 agree"
    )


# ---- close without a reference ---------------------------------------------------------------


def test_close_without_a_reference_believes_the_record_most_agreed_with_not_most_voted_on() -> None:
    g = EventTimeGuard(SKEW, K, AGE)
    far = T0 + 5_000
    # T0 gets two disagreeing votes, the first `far` one agreeing vote: neither is decided.
    assert run(g, record(T0), record(far), record(far)) == ([], [])
    passed, refused = g.close()
    assert [e.event.ts for e in passed] == [far, far] and [ts_of(r) for r in refused] == [T0]
    assert refused[0].detail.endswith(
        "5000s behind the newest plausible event time of nudge.outcomes/0; events more than "
        "1000s behind are no longer joined"
    )


def test_close_without_a_reference_breaks_a_tie_of_votes_by_arrival() -> None:
    g = EventTimeGuard(SKEW, K, AGE)
    far = T0 + 5_000
    # Votes: T0 one for (T0 + 50), one against (far): 0; T0 + 50 one against: -1; far none: 0.
    assert run(g, record(T0), record(T0 + 50), record(far)) == ([], [])
    passed, refused = g.close()
    assert [e.event.ts for e in passed] == [T0, T0 + 50] and [ts_of(r) for r in refused] == [far]
    assert refused[0].detail == (
        "event time 2026-01-05T09:23:20.000+00:00: more than 1000s ahead of the event times "
        "before it when the input ended; 0 later records agreed"
    )


# ---- the wall-clock bound, settings ----------------------------------------------------------


def test_the_wall_clock_bound_from_the_config_lets_exactly_the_bound_ahead_through() -> None:
    config = JoinConfig(
        max_future_skew_s=SKEW, jump_confirm_records=K, max_event_age_s=AGE,
        max_ahead_of_wall_clock_s=3_600,
    )  # fmt: skip
    g = EventTimeGuard.for_join(config)
    run(g, record(T0), record(T0 + 1), record(T0 + 2))
    wall = T0 + 2 - 3_600
    rec = record(T0 + 2)
    assert g.offer(rec, wall_time=wall) == ([rec], [])  # exactly the bound ahead: plausible
    late = record(T0 + 3)
    passed, refused = g.offer(late, wall_time=wall)
    assert passed == [] and [ts_of(r) for r in refused] == [T0 + 3]
    assert refused[0].detail == (
        "event time 2026-01-05T08:00:03.000+00:00: 3601s ahead of the wall clock"
    )
    assert refused[0].source == late.source


@pytest.mark.parametrize(("skew", "age"), [(0.5, AGE), (SKEW, 0.5)], ids=["skew", "age"])
def test_a_fraction_of_a_second_is_a_valid_skew_or_age(skew: float, age: float) -> None:
    g = EventTimeGuard(skew, K, age)
    assert (g.max_future_skew_s, g.max_age_s) == (skew, age)


def test_an_age_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="max_age_s > 0"):
        EventTimeGuard(SKEW, K, 0.0)


# ---- a restore -------------------------------------------------------------------------------


def test_a_restored_guard_keeps_each_partitions_reference() -> None:
    g = restored(started())
    assert g.reference_of("nudge.outcomes/0") == T0 + 2
    assert run(g, record(T0 + 50)) == ([T0 + 50], [])  # within reach: not held
    assert run(g, record(T0 + 50 - AGE - 1)) == ([], [T0 + 50 - AGE - 1])


def test_records_offered_after_a_restore_come_after_those_held_before_it() -> None:
    g = started()
    run(g, record(T0 + 150))
    g = restored(g)
    assert run(g, record(T0 + 60)) == ([T0 + 150, T0 + 60], [])  # arrival order across it


def test_held_records_the_current_rules_refuse_are_handed_out_at_restore() -> None:
    g = started()
    run(g, record(T0 + 5_000), record(T0 + 5_001), record(T0 + 5_002, partition=1))
    assert EventTimeGuard(SKEW, K, AGE).restore_rejected == []  # a fresh guard: none

    def refusing(raw: bytes) -> Event:
        if raw != f"{T0 + 5_001}".encode():
            raise InvalidEvent("unknown_namespace", "no namespace x")
        return decode(raw)

    config = JoinConfig(max_future_skew_s=SKEW, jump_confirm_records=K, max_event_age_s=AGE)
    resumed = EventTimeGuard.from_state(orjson.loads(orjson.dumps(g.state())), config, refusing)
    assert resumed.held == 1
    assert [(r.reason, float(r.raw)) for r in resumed.restore_rejected] == [
        ("unknown_namespace", T0 + 5_000),
        ("unknown_namespace", T0 + 5_002),
    ]


# ---- times that do not render -----------------------------------------------------------------


def test_a_record_stamped_before_year_1_utc_is_dead_lettered_with_its_time_as_a_number() -> None:
    # Valid RFC 3339, an hour before 0001-01-01T00:00:00Z: datetime cannot show it in UTC.
    raw = orjson.dumps(
        {"type": "outcome", "event_id": "ancient", "timestamp": "0001-01-01T00:00:00+01:00",
         "trigger": "quiz", "outcome": "helpful"}
    )  # fmt: skip
    event = decode_event(raw, EventRules(frozenset({"learner"})))
    assert event.ts == YEAR_1 - 3_600
    g = started()
    passed, refused = g.offer(Envelope(event, raw, Source("nudge.outcomes", 0, 99)))
    assert passed == [] and [r.reason for r in refused] == [Reason.IMPLAUSIBLE_EVENT_TIME.value]
    assert refused[0].detail.startswith(f"event time {YEAR_1 - 3_600}: ")


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        (YEAR_1, "0001-01-01T00:00:00.000+00:00"),
        (YEAR_9999, f"{YEAR_9999}"),  # past 2.5e11 (year 9892) as the number
    ],
    ids=["year-1", "year-9999"],
)
def test_a_dead_lettered_time_is_shown_as_text_from_year_1_and_as_a_number_past_9892(
    ts: float, shown: str
) -> None:
    g = started()
    # Year 1 is too old at once; year 9999 is held until three records of its partition disagree.
    later = [record(T0 + 3 + i) for i in range(3)] if ts > T0 else []
    refused = [r for rec in [record(ts), *later] for r in g.offer(rec)[1]]
    assert [r.detail.split(": ")[0] for r in refused] == [f"event time {shown}"]
