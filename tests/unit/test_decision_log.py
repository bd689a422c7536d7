"""The decision service's memory of recent decisions (`nudge.service.decision_log`): unique event
ids, expiry of both kinds, deferred impressions with the outcomes that wait for activation, and
one table shared by several processes. The tables are in the spool's database, so a decision and
its spooled impression commit together or not at all."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from bandit.errors import StorageError
from nudge.service import decision_log as decision_log_module
from nudge.service.decision_log import DB_FILE, DecisionLog, EventIdReused, LoggedDecision
from streams.memory import ManualClock
from streams.spool import Spool, SpoolFull, SpoolMessage

REMEMBER_S = 100.0
DEFERRED_S = 30.0


def open_spool(directory: Path, max_events: int = 1_000_000) -> Spool:
    return Spool(directory, max_events=max_events, max_bytes=1 << 30)


def open_log(directory: Path, clock: ManualClock, spool: Spool | None = None) -> DecisionLog:
    return DecisionLog(
        spool or open_spool(directory),
        remember_s=REMEMBER_S,
        deferred_expiry_s=DEFERRED_S,
        clock=clock,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000.0)


@pytest.fixture
def log(tmp_path: Path, clock: ManualClock) -> DecisionLog:
    return open_log(tmp_path, clock)


def rows(directory: Path) -> int:
    with sqlite3.connect(directory / DB_FILE) as db:
        return int(db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])


def test_a_recorded_decision_is_looked_up_by_its_event_id(log: DecisionLog) -> None:
    log.record("e1", "A/quiz-3/quiz-failed", 12.5)
    assert log.lookup("e1") == LoggedDecision(
        "e1", "A/quiz-3/quiz-failed", 12.5, deferred=False, activated=False, created_at=1_000.0
    )
    assert log.lookup("e2") is None


def test_a_reused_event_id_is_refused_and_the_first_decision_kept(
    log: DecisionLog, clock: ManualClock
) -> None:
    log.record("e1", "A/quiz", 1.0)
    clock.advance(7.0)

    with pytest.raises(EventIdReused) as caught:
        log.record("e1", "B/video", 2.0, deferred_impression=b"imp")

    assert str(caught.value) == (
        "event id 'e1' is already used by a decision for trigger 'A/quiz' made 7 s ago; "
        "each decision needs its own"
    )
    decision = log.lookup("e1")
    assert decision is not None and (decision.trigger, decision.deferred) == ("A/quiz", False)


def test_forgetting_a_decision_frees_its_event_id(log: DecisionLog) -> None:
    log.record("e1", "A/quiz", 1.0, deferred_impression=b"imp")
    log.hold_outcome("e1", b"outcome")
    log.forget("e1")

    assert log.lookup("e1") is None
    log.record("e1", "B/video", 2.0, deferred_impression=b"imp2")
    assert log.activate("e1") == (b"imp2", [])  # nothing held for the forgotten one


def test_a_decision_is_remembered_for_remember_s_then_its_id_is_free(
    tmp_path: Path, log: DecisionLog, clock: ManualClock
) -> None:
    log.record("e1", "A/quiz", 1.0)
    clock.advance(REMEMBER_S - 0.5)
    assert log.lookup("e1") is not None
    clock.advance(0.5)

    assert log.lookup("e1") is None  # invisible as soon as it expires...
    assert rows(tmp_path) == 1
    assert log.expire() == 0  # ...deleted by expire (not a deferred one)
    assert rows(tmp_path) == 0
    log.record("e1", "B/video", 2.0)
    assert log.lookup("e1") is not None


def test_an_expired_id_can_be_reused_before_expire_deletes_it(
    log: DecisionLog, clock: ManualClock
) -> None:
    log.record("e1", "A/quiz", 1.0)
    clock.advance(REMEMBER_S)
    log.record("e1", "B/video", 2.0)
    decision = log.lookup("e1")
    assert decision is not None and decision.trigger == "B/video"


def test_a_deferred_decision_never_activated_is_dropped_after_deferred_expiry_s(
    tmp_path: Path, log: DecisionLog, clock: ManualClock
) -> None:
    log.record("waits", "A/quiz", 1.0, deferred_impression=b"imp")
    log.record("plain", "A/quiz", 1.0)
    log.hold_outcome("waits", b"helpful")
    clock.advance(DEFERRED_S)

    assert log.lookup("waits") is None
    assert log.activate("waits") is None
    assert log.expire() == 1
    assert log.lookup("plain") is not None  # a plain decision lives remember_s
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM held_outcomes").fetchone() == (0,)


def test_an_activated_decision_is_remembered_for_remember_s_from_its_activation(
    log: DecisionLog, clock: ManualClock
) -> None:
    log.record("e1", "A/quiz", 1.0, deferred_impression=b"imp")
    clock.advance(DEFERRED_S - 1)
    assert log.activate("e1") == (b"imp", [])
    clock.advance(REMEMBER_S - 1)

    assert log.expire() == 0
    decision = log.lookup("e1")
    assert decision is not None and (decision.deferred, decision.activated) == (True, True)
    clock.advance(1)
    assert log.lookup("e1") is None


def test_held_outcomes_come_with_the_activation_in_arrival_order_exactly_once(
    log: DecisionLog,
) -> None:
    log.record("e1", "A/quiz", 1.0, deferred_impression=b"impression")
    log.record("e2", "A/quiz", 1.0, deferred_impression=b"other")
    assert log.hold_outcome("e1", b"first")
    assert log.hold_outcome("e2", b"not mine")
    assert log.hold_outcome("e1", b"second")

    assert log.activate("e1") == (b"impression", [b"first", b"second"])
    assert log.activate("e1") is None
    assert not log.hold_outcome("e1", b"late")  # activated: the caller sends it at once
    assert log.activate("e2") == (b"other", [b"not mine"])


@pytest.mark.parametrize("event_id", ["plain", "unknown"])
def test_only_a_deferred_decision_can_be_activated_or_hold_outcomes(
    log: DecisionLog, event_id: str
) -> None:
    log.record("plain", "A/quiz", 1.0)
    assert log.activate(event_id) is None
    assert not log.hold_outcome(event_id, b"helpful")


def impression(event_id: str) -> list[SpoolMessage]:
    return [SpoolMessage("impressions", event_id.encode(), b"{}")]


def test_a_decision_and_its_impression_commit_together_or_not_at_all(
    tmp_path: Path, clock: ManualClock
) -> None:
    spool = open_spool(tmp_path, max_events=2)
    log = open_log(tmp_path, clock, spool)
    with spool.transaction() as tx:
        log.record("e1", "A/quiz", 1.0, tx=tx)
        tx.append(impression("e1"))
    with pytest.raises(SpoolFull), spool.transaction() as tx:
        log.record("e2", "A/quiz", 1.0, tx=tx)
        tx.append([*impression("e2"), *impression("e2")])  # room for one only
    with pytest.raises(EventIdReused), spool.transaction() as tx:
        tx.append(impression("e3"))
        log.record("e1", "B/video", 2.0, tx=tx)

    decision = log.lookup("e1")
    assert decision is not None and decision.trigger == "A/quiz"
    assert log.lookup("e2") is None  # the id is free again
    assert spool.depth()[0] == 1  # neither e2's nor e3's impression


def test_an_activation_rolled_back_stays_deferred_with_its_held_outcomes(
    tmp_path: Path, clock: ManualClock
) -> None:
    spool = open_spool(tmp_path, max_events=1)
    log = open_log(tmp_path, clock, spool)
    log.record("d1", "A/quiz", 1.0, deferred_impression=b"imp")
    log.hold_outcome("d1", b"helpful")

    with pytest.raises(SpoolFull), spool.transaction() as tx:
        released = log.activate("d1", tx=tx)
        assert released == (b"imp", [b"helpful"])
        tx.append([*impression("d1"), *impression("d1")])

    waiting = log.lookup("d1")
    assert waiting is not None and (waiting.deferred, waiting.activated) == (True, False)
    assert log.activate("d1") == (b"imp", [b"helpful"])


def test_expired_rows_are_deleted_every_so_many_records(
    tmp_path: Path, log: DecisionLog, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decision_log_module, "EXPIRE_EVERY", 10)
    for i in range(100):  # one decision a second, each remembered 100 s
        log.record(f"e{i}", "A/quiz", float(i))
        clock.advance(REMEMBER_S / 20)
    assert rows(tmp_path) <= 20 + 10


def test_deferred_decisions_dropped_by_the_expiry_inside_record_are_still_reported_once(
    log: DecisionLog, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decision_log_module, "EXPIRE_EVERY", 3)
    log.record("d1", "A/quiz", 1.0, deferred_impression=b"imp")
    log.record("d2", "A/quiz", 1.0, deferred_impression=b"imp")
    clock.advance(DEFERRED_S + 1)
    log.record("e1", "A/quiz", 2.0)  # the third record: its own expiry drops d1 and d2
    assert log.lookup("d1") is None
    assert log.expire() == 2
    assert log.expire() == 0


def test_a_closed_log_refuses_use_and_a_reopened_one_remembers(
    tmp_path: Path, log: DecisionLog, clock: ManualClock
) -> None:
    log.record("e1", "A/quiz", 1.0, deferred_impression=b"imp")
    log.hold_outcome("e1", b"helpful")
    log.close()
    log.close()  # safe twice
    with pytest.raises(StorageError, match="is closed"):
        log.lookup("e1")

    assert open_log(tmp_path, clock).activate("e1") == (b"imp", [b"helpful"])


def record_from_another_process(
    directory: str,
    name: str,
    count: int,
    shared: list[str],
    start: Barrier,
    results: multiprocessing.queues.Queue[tuple[int, int]],
) -> None:
    """A worker: record `count` ids of its own and every shared id; puts (recorded, refused)
    of the shared ones on `results`."""
    spool = open_spool(Path(directory))
    log = DecisionLog(spool, remember_s=REMEMBER_S, deferred_expiry_s=DEFERRED_S)
    start.wait(timeout=60)
    recorded = refused = 0
    for i in range(count):
        log.record(f"{name}-{i}", "A/quiz", float(i))
        if i < len(shared):
            try:
                log.record(shared[i], "A/quiz", float(i))
                recorded += 1
            except EventIdReused:
                refused += 1
    log.close()
    spool.close()
    results.put((recorded, refused))


def test_two_processes_recording_at_once_lose_nothing_and_a_shared_id_is_taken_once(
    tmp_path: Path,
) -> None:
    # Two processes of their own (not a pool: a pool worker that dies loses its task, and the
    # test would wait for it for ever); a worker that fails fails the test within minutes.
    spawn = multiprocessing.get_context("spawn")
    n, shared = 300, [f"shared-{i}" for i in range(100)]
    start, results = spawn.Barrier(2), spawn.Queue()
    workers = [
        spawn.Process(
            target=record_from_another_process,
            args=(str(tmp_path), name, n, shared, start, results),
        )
        for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert [worker.exitcode for worker in workers] == [0, 0]

    assert sum(recorded for recorded, _ in outcomes) == len(shared)
    assert sum(refused for _, refused in outcomes) == len(shared)
    log = open_log(tmp_path, ManualClock(0.0))
    assert all(log.lookup(f"{name}-{i}") for name in ("a", "b") for i in range(n))
    assert rows(tmp_path) == 2 * n + len(shared)


@pytest.mark.parametrize(
    ("remember_s", "deferred_s", "message"),
    [(0.0, 1.0, "remember_s=0.0"), (1.0, -1.0, "deferred_expiry_s=-1.0")],
)
def test_a_log_that_keeps_nothing_is_refused(
    tmp_path: Path, remember_s: float, deferred_s: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DecisionLog(open_spool(tmp_path), remember_s=remember_s, deferred_expiry_s=deferred_s)
