"""Event-time alignment of the partitions read: catching up on a backlog, the topic that runs
ahead in event time is paused, so outcomes do not pile up waiting for impressions not read yet
(issue 13: 17,002 outcomes of a 100k backlog were dead-lettered `join_state_full`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bandit.ports import Record
from bandit.read_alignment import partitions_to_pause
from tests.unit.unattended_fixtures import (
    IMPRESSIONS,
    OUTCOMES,
    T0,
    Deployment,
    LiveSource,
    config,
    impression,
    outcome,
)

IMP, OUT = f"{IMPRESSIONS}/0", f"{OUTCOMES}/0"


def test_a_partition_ahead_of_the_slowest_one_with_records_left_is_paused() -> None:
    assert partitions_to_pause({IMP: 100.0, OUT: 131.0}, {IMP: 5, OUT: 5}, 30.0) == {OUT}
    assert partitions_to_pause({IMP: 100.0, OUT: 130.0}, {IMP: 5, OUT: 5}, 30.0) == frozenset()


def test_the_slowest_partition_is_never_paused_so_reading_always_progresses() -> None:
    highest = {"a/0": 0.0, "a/1": 1000.0, "b/0": 5000.0}
    paused = partitions_to_pause(highest, {"a/0": 1, "a/1": 1, "b/0": 1}, 30.0)
    assert paused == {"a/1", "b/0"}
    assert "a/0" not in paused


def test_a_caught_up_partition_neither_holds_others_back_nor_is_paused() -> None:
    # The impressions are all read: the outcomes far ahead must still be read to the end.
    assert partitions_to_pause({IMP: 0.0, OUT: 9999.0}, {IMP: 0, OUT: 7}, 30.0) == frozenset()
    # A partition without a known lag (not fetched yet) counts as caught up.
    assert partitions_to_pause({IMP: 0.0, OUT: 9999.0}, {OUT: 7}, 30.0) == frozenset()


def test_a_partition_not_read_yet_holds_every_other_one_back() -> None:
    assert partitions_to_pause({OUT: 50.0}, {IMP: 3, OUT: 3}, 30.0) == {OUT}


class _WaitingProbe(LiveSource):
    """Notes the outcomes waiting for their impression at every poll."""

    most_waiting = 0

    def poll(self, timeout_ms: int) -> list[Record]:
        if self.learner is not None:
            type(self).most_waiting = max(type(self).most_waiting, self.learner.join.waiting)
        return super().poll(timeout_ms)


def _catch_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **join: float | None
) -> tuple[Deployment, int]:
    """3,000 pairs written before the consumer starts; outcomes fetched 10x as many per poll
    (Kafka fills fetches by bytes), so unaligned the outcomes run hours ahead."""
    import tests.unit.unattended_fixtures as fixtures

    _WaitingProbe.most_waiting = 0
    monkeypatch.setattr(fixtures, "LiveSource", _WaitingProbe)
    dep = Deployment(config(tmp_path, max_waiting_outcomes=500, **join))
    dep.fetch_records = {IMPRESSIONS: 20, OUTCOMES: 200}
    messages = [
        m
        for i in range(3000)
        for m in (
            (IMPRESSIONS, impression(f"b{i}", T0 + 2.0 * i)),
            (OUTCOMES, outcome(f"b{i}", T0 + 2.0 * i + 1)),
        )
    ]
    dep.run(messages, gap_s=0.0)
    return dep, _WaitingProbe.most_waiting


def _reasons(dep: Deployment) -> Counter[str]:
    return Counter(reason for reason, _ in dep.dead_letters())


def test_catching_up_aligned_keeps_waiting_outcomes_few_and_learns_every_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep, most_waiting = _catch_up(tmp_path, monkeypatch)
    learner = dep.consumers[-1]
    assert _reasons(dep) == Counter()
    assert learner.stats.learned == 3000
    assert learner.stats.defaulted == 0
    # 30 s of slack at one outcome per 2 s, plus one poll's worth (200) read past it.
    assert most_waiting <= 250
    assert learner.stats.read_pauses > 0


def test_catching_up_unaligned_overflows_the_waiting_outcomes_the_reported_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep, most_waiting = _catch_up(tmp_path, monkeypatch, max_read_ahead_s=None)
    learner = dep.consumers[-1]
    assert most_waiting == 500  # at the cap
    assert _reasons(dep)["join_state_full"] > 1000
    assert learner.stats.defaulted > 1000
    assert learner.stats.read_pauses == 0
