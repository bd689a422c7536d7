"""Reward join edge cases: exact window boundaries, early outcomes, rejection details, a fresh
start from an empty saved state. (The main join tests are in test_join.py.)"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bandit.config import JoinConfig, RewardConfig
from bandit.envelopes import Envelope, Rejected, Source
from bandit.errors import CheckpointError
from bandit.events import Event, Impression, Outcome, OutcomeLabel, Reason
from bandit.join import JoinedEvent, RewardJoin

WINDOW = 100.0
LATENESS = 10.0
T0 = 1_767_600_000.0
FIRST = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS)
COMBINE = JoinConfig(window_s=WINDOW, allowed_lateness_s=LATENESS, mode="combine")
REWARDS = RewardConfig(send_nothing=0.25)  # helpful 1, not_helpful -1, ignored 0
HELPFUL, NOT_HELPFUL = OutcomeLabel.HELPFUL, OutcomeLabel.NOT_HELPFUL

_offsets = itertools.count()


def impression(event_id: str, ts: float, chosen: str = "hint") -> Envelope[Impression]:
    event = Impression(
        event_id=event_id,
        ts=ts,
        trigger="quiz_failed",
        learner_id="learner-1",
        context={},
        action_ids=("hint", "none"),
        action_features=({}, {}),
        chosen_index=("hint", "none").index(chosen),
        probability=0.5,
        policy_version="v1",
    )
    raw = f"impression {event_id} {ts}".encode()
    return Envelope(event, raw, Source("nudge.impressions", 0, next(_offsets)))


def outcome(
    event_id: str, ts: float, label: OutcomeLabel = HELPFUL, trigger: str = "quiz_failed"
) -> Envelope[Outcome]:
    raw = f"outcome {event_id} {ts} {label.value} {trigger}".encode()
    event = Outcome(event_id, ts, trigger, label, None)
    return Envelope(event, raw, Source("nudge.outcomes", 0, next(_offsets)))


def feed(join: RewardJoin, *envs: Envelope[Any]) -> tuple[list[JoinedEvent], list[Rejected]]:
    for env in envs:
        join.add(env)
    return join.drain()


def summary(joined: list[JoinedEvent]) -> list[tuple[str, str, float, bool]]:
    return [(j.impression.event_id, j.label.value, j.reward, j.defaulted) for j in joined]


def never_decode(raw: bytes) -> Event:
    raise AssertionError(f"nothing saved, nothing to decode: {raw!r}")


def test_an_empty_saved_state_restores_a_fresh_join() -> None:
    # The consumer's first start has no checkpoint: it restores from {}.
    join = RewardJoin.from_state({}, FIRST, REWARDS, never_decode)
    assert (join.pending, join.waiting, join.watermark) == (0, 0, float("-inf"))
    joined, rejected = feed(join, impression("e1", T0), outcome("e1", T0 + 5))
    assert summary(joined) == [("e1", "helpful", 1.0, False)] and rejected == []


def test_an_impression_whose_window_ends_exactly_at_the_watermark_is_defaulted_at_once() -> None:
    join = RewardJoin(FIRST, REWARDS)
    join.advance(T0 + WINDOW + LATENESS)  # watermark T0 + WINDOW
    joined, _ = feed(join, impression("e1", T0))  # window [T0, T0 + WINDOW]: closed
    assert summary(joined) == [("e1", "ignored", 0.0, True)]
    assert join.pending == 0


def test_a_defaulted_impression_that_sent_nothing_earns_send_nothing() -> None:
    join = RewardJoin(FIRST, REWARDS)
    feed(join, impression("e1", T0, chosen="none"))
    join.close_all()
    joined, _ = join.drain()
    assert summary(joined) == [("e1", "ignored", 0.25, True)]


def test_in_mode_first_the_first_of_two_early_outcomes_settles_the_second_is_a_duplicate() -> None:
    join = RewardJoin(FIRST, REWARDS)
    joined, rejected = feed(
        join,
        outcome("e1", T0 + 10, HELPFUL),
        outcome("e1", T0 + 20, NOT_HELPFUL),
        impression("e1", T0),
    )
    assert summary(joined) == [("e1", "helpful", 1.0, False)]
    assert [(r.reason, r.detail) for r in rejected] == [
        (Reason.DUPLICATE_OUTCOME.value, "e1 already has its outcome")
    ]


def rejections(
    config: JoinConfig, *envs: Envelope[Any], close: bool = False
) -> list[tuple[str, str]]:
    join = RewardJoin(config, REWARDS)
    for env in envs:
        join.add(env)
        join.advance(env.event.ts)
    if close:
        join.close_all()
    return [(r.reason, r.detail) for r in join.drain()[1]]


@pytest.mark.parametrize(
    ("config", "envs", "close", "expected"),
    [
        (
            FIRST,
            [impression("e1", T0), impression("e1", T0 + 1)],
            False,
            (Reason.DUPLICATE_IMPRESSION, "impression e1 seen before"),
        ),
        (  # settled by its first outcome: a second one inside the window is a duplicate...
            FIRST,
            [impression("e1", T0), outcome("e1", T0 + 5), outcome("e1", T0 + WINDOW, NOT_HELPFUL)],
            False,
            (Reason.DUPLICATE_OUTCOME, "e1 already has its outcome"),
        ),
        (  # ...one beyond it is late
            FIRST,
            [impression("e1", T0), outcome("e1", T0 + 5), outcome("e1", T0 + WINDOW + 1)],
            False,
            (Reason.LATE_OUTCOME, "window of e1 already closed"),
        ),
        (  # defaulted by the watermark: any later outcome is late
            FIRST,
            [impression("e1", T0), impression("e2", T0 + WINDOW + LATENESS), outcome("e1", T0 + 50)],
            False,
            (Reason.LATE_OUTCOME, "window of e1 already closed"),
        ),
        (
            FIRST,
            [impression("e1", T0), outcome("e1", T0 + 5, trigger="other")],
            False,
            (Reason.TRIGGER_MISMATCH, "outcome trigger 'other', impression 'quiz_failed'"),
        ),
        (
            FIRST,
            [impression("e1", T0), outcome("e1", T0 + 150)],
            False,
            (Reason.LATE_OUTCOME, "outcome 150.0s after its impression; window is 100.0s"),
        ),
        (
            COMBINE,
            [impression("e1", T0), outcome("e1", T0 + 5), outcome("e1", T0 + 5)],
            False,
            (Reason.DUPLICATE_OUTCOME, "e1: same outcome twice"),
        ),
        (  # the watermark passes the outcome's wait (window_s) with no impression
            FIRST,
            [outcome("e9", T0), impression("e1", T0 + WINDOW + LATENESS)],
            False,
            (Reason.UNMATCHED_OUTCOME, "no impression e9 arrived"),
        ),
        (  # the input ends with no impression
            FIRST,
            [outcome("e9", T0)],
            True,
            (Reason.UNMATCHED_OUTCOME, "no impression e9 arrived"),
        ),
    ],
    ids=[
        "duplicate-impression", "duplicate-outcome-at-window-end", "late-after-settled",
        "late-after-default", "trigger-mismatch", "late-beyond-window", "same-outcome-twice",
        "unmatched-expired", "unmatched-at-close",
    ],
)  # fmt: skip
def test_every_rejection_says_why_in_its_detail(
    config: JoinConfig, envs: list[Envelope[Any]], close: bool, expected: tuple[Reason, str]
) -> None:
    reason, detail = expected
    assert rejections(config, *envs, close=close) == [(reason.value, detail)]


def test_state_is_refused_until_the_results_are_drained() -> None:
    join = RewardJoin(FIRST, REWARDS)
    join.add(impression("e1", T0))
    join.close_all()
    with pytest.raises(CheckpointError, match=r"^drain\(\) the join before saving its state$"):
        join.state()
