"""A consumer stopped and restarted over the same checkpoint directory ends exactly where one
uninterrupted run does (in-memory I/O, real VW)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from consumer_fixtures import BOUNDED, MAX_POLL_RECORDS, Stream, distinct_reasons, make_stream

from bandit.ports import Record
from streams.consumer import RunOptions, StreamLearner
from streams.memory import ManualClock, MemorySource
from streams.stats import ConsumerStats


class StoppingSource(MemorySource):
    """Asks its consumer to stop (as SIGTERM does) during its `stop_at`-th poll."""

    def __init__(self, stream: Stream, clock: ManualClock, stop_at: int) -> None:
        super().__init__(
            stream.broker, stream.topics, max_poll_records=MAX_POLL_RECORDS, clock=clock
        )
        self.stop_at = stop_at
        self.polls = 0
        self.learner: StreamLearner | None = None

    def poll(self, timeout_ms: int) -> list[Record]:
        self.polls += 1
        if self.polls == self.stop_at and self.learner is not None:
            self.learner.request_stop()
        return super().poll(timeout_ms)


def outcome(stats: ConsumerStats) -> dict[str, Any]:
    """What a run must end with, whatever stops and restarts it had on the way."""
    return {
        "consumed": stats.consumed,
        "learned": stats.learned,
        "ledger": stats.ledger,
        "defaulted": stats.defaulted,
        "outcomes_learned": dict(stats.outcomes_learned),
        "dead_letters_by_reason": dict(stats.dead_letters_by_reason),
        "reward_sum": pytest.approx(stats.reward_sum),
    }


def test_an_uninterrupted_run_learns_every_valid_event_once_and_dead_letters_the_rest(
    tmp_path: Path,
) -> None:
    stream = make_stream(tmp_path)

    stats = stream.consumer().run(BOUNDED)

    assert stats.consumed == len(stream.truth.messages)
    assert stats.learned == stream.truth.impressions
    assert stats.ledger == stream.expected_ledger()
    assert dict(stats.dead_letters_by_reason) == dict(stream.truth.expected_dead_letters)
    assert distinct_reasons(stream.dead_letters()) == stream.truth.expected_dead_letters
    assert len(stream.dead_letters()) == stats.dead_lettered  # no crash: each written once


@pytest.mark.parametrize("first_run", [RunOptions(), BOUNDED], ids=["unbounded", "bounded"])
@pytest.mark.parametrize("stop_at", [3, 9, 14])
def test_stopped_and_restarted_consumer_ends_like_an_uninterrupted_one(
    tmp_path: Path, stop_at: int, first_run: RunOptions
) -> None:
    whole = make_stream(tmp_path / "whole")
    expected = outcome(whole.consumer().run(BOUNDED))
    stream = make_stream(tmp_path / "restarted")
    clock = ManualClock()
    source = StoppingSource(stream, clock, stop_at)
    first = stream.consumer(clock, source=source)
    source.learner = first

    stopped = first.run(first_run)  # a stop is not the end of the input: windows stay open

    assert 0 < stopped.consumed < len(stream.truth.messages)
    assert first.join.pending > 0
    second = stream.consumer()
    assert second.resumed_from == first.sequence
    final = second.run(BOUNDED)
    assert final.starts == 2
    assert outcome(final) == expected
    assert final.ledger == stream.expected_ledger()
    assert distinct_reasons(stream.dead_letters()) == stream.truth.expected_dead_letters
