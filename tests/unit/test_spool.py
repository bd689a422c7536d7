"""The spool in front of Kafka (`streams.spool`): durable, ordered across processes, bounded,
drained by one drainer per directory, and never blocked by a broker outage or a refused record.

Kafka is `streams.memory`'s broker behind a sink whose availability the test switches; a send
becomes a record only on flush, as with a real producer.
"""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from bandit.errors import BrokerError, RecordRefused, StorageError
from bandit.ports import MessageSink
from streams import spool as spool_module
from streams.memory import ManualClock, MemoryBroker
from streams.spool import DB_FILE, Backoff, Drainer, Spool, SpoolFull, SpoolMessage

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "impressions"
BIG = 1 << 30


class Kafka:
    """A broker the test can take down; `factory` makes sinks into it (or fails while down)."""

    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.up = True
        self.starts = 0
        self.sinks: list[SwitchedSink] = []

    def factory(self) -> MessageSink:
        self.starts += 1
        if not self.up:
            raise BrokerError("Kafka producer start failed: NoBrokersAvailable()")
        sink = SwitchedSink(self)
        self.sinks.append(sink)
        return sink

    def values(self, topic: str = TOPIC) -> list[bytes]:
        if topic not in self.broker.topics():
            return []
        return [r.value for r in self.broker.records(topic) if r.value is not None]


class SwitchedSink:
    """A producer into `Kafka`: refuses values starting `too-large` as it sends them, and values
    starting `poison` on delivery (delivering the rest of the flush, as Kafka would)."""

    def __init__(self, kafka: Kafka) -> None:
        self.kafka = kafka
        self.pending: list[tuple[str, bytes | None, bytes]] = []
        self.closed = False

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if value.startswith(b"too-large"):
            raise RecordRefused(f"Kafka refused a record for {topic}: too large", topic, key)
        self.pending.append((topic, key, value))

    def flush(self, timeout_s: float = 60.0) -> None:
        pending, self.pending = self.pending, []
        if not self.kafka.up:
            raise BrokerError("Kafka flush failed: KafkaTimeoutError('Timeout after 10 secs')")
        refused = None
        for topic, key, value in pending:
            if value.startswith(b"poison"):
                refused = RecordRefused(f"Kafka refused a record for {topic}: denied", topic, key)
            else:
                self.kafka.broker.append(topic, key, value)
        if refused is not None:
            raise refused

    def close(self) -> None:
        self.closed = True


def messages(*values: str, topic: str = TOPIC) -> list[SpoolMessage]:
    return [SpoolMessage(topic, v.encode(), v.encode()) for v in values]


def drain_all(drainer: Drainer) -> None:
    while drainer.drain_once():
        pass


def test_messages_reach_kafka_in_insertion_order_across_two_spools_on_one_directory(
    tmp_path: Path,
) -> None:
    a = Spool(tmp_path, max_events=100, max_bytes=BIG)
    b = Spool(tmp_path, max_events=100, max_bytes=BIG)
    a.append(messages("1", "2"))
    b.append(messages("3"))
    a.append(messages("4"))
    b.append([SpoolMessage("outcomes", None, b"5"), *messages("6")])
    kafka = Kafka()

    drain_all(Drainer(a, kafka.factory, batch=2))

    assert kafka.values() == [b"1", b"2", b"3", b"4", b"6"]
    assert kafka.values("outcomes") == [b"5"]
    assert [r.key for r in kafka.broker.records("outcomes")] == [None]
    assert a.depth() == b.depth() == (0, 0)


@pytest.mark.parametrize(
    ("max_events", "max_bytes", "limit_text"),
    [(3, BIG, "of at most 3 events"), (100, 12, "(12 bytes)")],
    ids=["events", "bytes"],
)
def test_an_append_that_would_pass_a_limit_is_refused_whole(
    tmp_path: Path, max_events: int, max_bytes: int, limit_text: str
) -> None:
    spool = Spool(tmp_path, max_events=max_events, max_bytes=max_bytes)
    spool.append(messages("ab", "cd"))  # 2 events, 8 bytes (keys and values)

    with pytest.raises(SpoolFull) as caught:
        spool.append(messages("ef", "gh"))

    assert "holds 2 events (8 bytes)" in str(caught.value)
    assert limit_text in str(caught.value)
    assert "2 more (8 bytes) cannot be added until Kafka takes some" in str(caught.value)
    assert caught.value.retriable
    assert spool.depth() == (2, 8)
    assert spool.status().full
    kafka = Kafka()
    drain_all(Drainer(spool, kafka.factory))
    assert kafka.values() == [b"ab", b"cd"]  # nothing of the refused batch
    assert not spool.status().full  # a drain makes room again


def test_an_append_that_reaches_a_limit_exactly_is_taken(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=2, max_bytes=8)
    spool.append(messages("ab", "cd"))
    assert spool.depth() == (2, 8)
    assert spool.status().full  # at the limit, no room for one more


def test_a_batch_larger_than_the_whole_spool_is_refused_without_marking_it_full(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=10)
    with pytest.raises(SpoolFull, match=r"1 more \(12 bytes\) cannot be added even when empty"):
        spool.append(messages("abcdef"))
    assert spool.depth() == (0, 0)
    assert not spool.status().full


def notes(spool: Spool) -> list[str]:
    with spool.connection() as db:
        return [text for (text,) in db.execute("SELECT text FROM notes ORDER BY text")]


def spool_with_notes(directory: Path, max_events: int) -> Spool:
    """A spool whose database also holds another component's table, `notes`."""
    spool = Spool(directory, max_events=max_events, max_bytes=BIG)
    with spool.connection() as db:
        db.execute("CREATE TABLE notes (text TEXT PRIMARY KEY)")
    return spool


def test_another_tables_writes_commit_with_the_append_of_their_transaction(
    tmp_path: Path,
) -> None:
    spool = spool_with_notes(tmp_path, max_events=10)
    with spool.transaction() as tx:
        tx.db.execute("INSERT INTO notes VALUES ('one')")
        tx.append(messages("1"))
    with pytest.raises(RuntimeError), spool.transaction() as tx:
        tx.db.execute("INSERT INTO notes VALUES ('two')")
        tx.append(messages("2"))
        raise RuntimeError("the caller changed its mind")

    assert notes(spool) == ["one"]
    assert spool.depth() == (1, 2)
    kafka = Kafka()
    drain_all(Drainer(spool, kafka.factory))
    assert kafka.values() == [b"1"]


def test_an_append_turned_away_in_a_transaction_undoes_it_yet_marks_the_spool_full(
    tmp_path: Path,
) -> None:
    spool = spool_with_notes(tmp_path, max_events=2)
    spool.append(messages("1"))
    with pytest.raises(SpoolFull, match="holds 1 events"), spool.transaction() as tx:
        tx.db.execute("INSERT INTO notes VALUES ('two')")
        tx.append(messages("2", "3"))

    assert notes(spool) == []
    assert spool.depth() == (1, 2)
    assert spool.status().full  # until a drain, though there is room for one
    drain_all(Drainer(spool, Kafka().factory))
    assert not spool.status().full


def test_a_full_spool_is_not_marked_full_after_a_drain_made_room_in_between(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_events=1, max_bytes=BIG)
    spool.append(messages("1"))
    other = Spool(tmp_path, max_events=1, max_bytes=BIG)
    with pytest.raises(SpoolFull), spool.transaction() as tx:
        try:
            tx.append(messages("2"))
        finally:  # a drain gets in after the rollback, before the refusal is recorded
            tx.db.rollback()
            drain_all(Drainer(other, Kafka().factory))

    assert spool.depth() == (0, 0)
    assert not spool.status().full


def test_a_broker_outage_keeps_every_row_and_all_arrive_in_order_when_it_returns(
    tmp_path: Path,
) -> None:
    clock = ManualClock(1000.0)
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG, clock=clock)
    kafka = Kafka()
    drainer = Drainer(spool, kafka.factory, batch=3)
    spool.append(messages("1", "2", "3", "4"))
    kafka.up = False

    assert drainer.drain_once() == 0  # the producer cannot start
    kafka.up = True
    drainer.sink_factory = lambda: take_down_after_start(kafka)
    assert drainer.drain_once() == 0  # it starts, then the flush fails
    spool.append(messages("5"))

    assert spool.depth() == (5, 10)
    status = spool.status()
    assert (status.broker_ok, status.failures_total, status.sent_total) == (False, 2, 0)
    assert status.last_error == "Kafka flush failed: KafkaTimeoutError('Timeout after 10 secs')"
    assert kafka.sinks[0].closed  # a sink that failed is discarded...
    kafka.up = True
    drainer.sink_factory = kafka.factory
    clock.advance(5.0)
    drain_all(drainer)

    assert kafka.values() == [b"1", b"2", b"3", b"4", b"5"]
    assert len(kafka.sinks) == 2  # ...and a new one made for the next try
    status = spool.status()
    assert (status.broker_ok, status.last_ok_at, status.sent_total) == (True, 1005.0, 5)
    assert (status.depth_events, status.depth_bytes, status.failures_total) == (0, 0, 2)


def take_down_after_start(kafka: Kafka) -> MessageSink:
    sink = kafka.factory()
    kafka.up = False
    return sink


def test_a_producer_that_cannot_start_is_recorded_as_a_failure_not_raised(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    spool.append(messages("1"))
    kafka = Kafka()
    kafka.up = False

    assert Drainer(spool, kafka.factory).drain_once() == 0

    status = spool.status()
    assert (status.broker_ok, status.failures_total, status.depth_events) == (False, 1, 1)
    assert status.last_error == "Kafka producer start failed: NoBrokersAvailable()"


def test_a_record_refused_as_it_is_sent_is_set_aside_and_the_rest_goes_on(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    spool.append(messages("1", "too-large", "2", "3"))
    kafka = Kafka()

    drain_all(Drainer(spool, kafka.factory))

    assert kafka.values() == [b"1", b"2", b"3"]
    assert spool.refused() == [
        (messages("too-large")[0], f"Kafka refused a record for {TOPIC}: too large")
    ]
    status = spool.status()
    assert (status.refused_total, status.sent_total, status.depth_events) == (1, 3, 0)
    assert status.depth_bytes == 0


def test_a_record_refused_on_delivery_is_found_and_set_aside_and_the_rest_goes_on(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    spool.append(messages("1", "poison", "2", "3"))
    kafka = Kafka()

    drain_all(Drainer(spool, kafka.factory, batch=10))

    # the first flush delivered 1, 2 and 3 before the refusal was known; they are sent again
    # one at a time (the consumer drops the duplicates by event id)
    assert list(dict.fromkeys(kafka.values())) == [b"1", b"2", b"3"]
    assert [m.value for m, _ in spool.refused()] == [b"poison"]
    assert spool.status().refused_total == 1
    assert spool.depth() == (0, 0)


def append_from_another_process(directory: str, name: str, count: int, start: Barrier) -> None:
    """A worker process: wait for the start, then append `count` messages one or two at a time."""
    spool = Spool(Path(directory), max_events=100_000, max_bytes=BIG)
    start.wait()
    i = 0
    while i < count:
        take = 1 + i % 2
        spool.append(messages(*(f"{name}-{j:04d}" for j in range(i, min(i + take, count)))))
        i += take
    spool.close()


def test_two_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(3)
    n = 400
    workers = [
        spawn.Process(target=append_from_another_process, args=(str(tmp_path), name, n, start))
        for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    start.wait(timeout=60)
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]

    spool = Spool(tmp_path, max_events=100_000, max_bytes=BIG)
    assert spool.depth() == (2 * n, 2 * n * 12)  # "a-0000" as key and value
    kafka = Kafka()
    drain_all(Drainer(spool, kafka.factory))
    values = [v.decode() for v in kafka.values()]
    for name in ("a", "b"):  # each process's messages arrive whole and in its order
        assert [v for v in values if v.startswith(name)] == [f"{name}-{j:04d}" for j in range(n)]
    assert len(values) == 2 * n


def test_only_one_drainer_drains_a_directory_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    kafka = Kafka()
    first = Drainer(spool, kafka.factory, batch=1)
    second = Drainer(Spool(tmp_path, max_events=100, max_bytes=BIG), kafka.factory, batch=1)
    spool.append(messages("1", "2", "3"))

    assert first.drain_once() == 1
    assert second.drain_once() == 0  # the lock is held while the first one runs
    assert (first.draining, second.draining) == (True, False)
    assert spool.depth() == (2, 4)
    first.stop(drain_timeout_s=0.0)
    assert not first.draining

    assert second.drain_once() == 1
    assert kafka.values() == [b"1", b"2"]


def test_a_started_drainer_takes_over_when_the_holder_stops(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    kafka = Kafka()
    holder = Drainer(spool, kafka.factory)
    holder.drain_once()  # takes the lock
    waiting = Drainer(Spool(tmp_path, max_events=100, max_bytes=BIG), kafka.factory)
    waiting.start()
    try:
        spool.append(messages("1"))
        time.sleep(0.3)
        assert kafka.values() == []
        holder.stop(drain_timeout_s=0.0)

        wait_for(lambda: kafka.values() == [b"1"], within_s=5.0)
        assert waiting.draining
    finally:
        waiting.stop()


def test_a_started_drainer_sends_in_the_background_and_stop_closes_the_sink(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    kafka = Kafka()
    drainer = Drainer(spool, kafka.factory)
    drainer.start()
    spool.append(messages("1", "2"))
    wait_for(lambda: kafka.values() == [b"1", b"2"], within_s=5.0)
    spool.append(messages("3"))

    drainer.stop(drain_timeout_s=5.0)

    assert kafka.values() == [b"1", b"2", b"3"]
    assert kafka.sinks[-1].closed and not drainer.draining


def test_stop_with_kafka_down_returns_within_its_timeout_and_keeps_the_rows(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    kafka = Kafka()
    kafka.up = False
    drainer = Drainer(spool, kafka.factory, backoff_s=(0.05, 0.1))
    drainer.start()
    spool.append(messages("1", "2"))
    wait_for(lambda: spool.status().failures_total >= 2, within_s=5.0)

    began = time.monotonic()
    drainer.stop(drain_timeout_s=0.5)

    assert time.monotonic() - began < 3.0
    assert spool.depth() == (2, 4) and not drainer.draining
    assert spool.status().broker_ok is False


def database_bytes(directory: Path) -> int:
    """The size of the database file proper: pages reach it only by a checkpoint of the WAL."""
    return (directory / DB_FILE).stat().st_size


def big_messages(count: int) -> list[SpoolMessage]:
    return [SpoolMessage(TOPIC, None, b"x" * 4000) for _ in range(count)]


def test_appends_leave_the_wal_to_the_drainer_which_checkpoints_it_even_with_kafka_down(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    before = database_bytes(tmp_path)
    for _ in range(50):
        spool.append(big_messages(1))
    assert database_bytes(tmp_path) == before  # no append paid for a checkpoint
    kafka = Kafka()
    kafka.up = False
    drainer = Drainer(spool, kafka.factory, backoff_s=(0.05, 0.05))
    drainer.start()
    try:
        wait_for(lambda: database_bytes(tmp_path) > 50 * 4000, within_s=5.0)
    finally:
        drainer.stop(drain_timeout_s=0.0)
    assert spool.depth()[0] == 50  # nothing sent: the rows are in the file, not in Kafka
    wal_pages, copied = spool.checkpoint()
    assert wal_pages == copied > 50
    spool.close()
    with pytest.raises(StorageError, match="is closed"):
        spool.checkpoint()


def test_without_a_drainer_an_append_checkpoints_past_the_safety_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SAFETY_CHECKPOINT_PAGES", 10)
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    for _ in range(20):
        spool.append(big_messages(1))
    assert database_bytes(tmp_path) > 10 * 4000


def test_status_is_shared_by_every_spool_on_the_directory(tmp_path: Path) -> None:
    clock = ManualClock(50.0)
    draining = Spool(tmp_path, max_events=100, max_bytes=BIG, clock=clock)
    watching = Spool(tmp_path, max_events=100, max_bytes=BIG)
    assert watching.status().broker_ok is None  # no drainer has tried yet
    kafka = Kafka()
    drainer = Drainer(draining, kafka.factory)

    assert drainer.drain_once() == 0  # nothing to send, but the producer started
    assert (watching.status().broker_ok, watching.status().last_ok_at) == (True, 50.0)
    kafka.up = False
    drainer.sink_factory = lambda: take_down_after_start(kafka)
    drainer.drain_once()  # the sink is still the old one, up to its flush
    watching.append(messages("1"))
    drainer.drain_once()
    assert watching.status().broker_ok is False and watching.status().failures_total == 1

    kafka.up = True
    drainer.sink_factory = kafka.factory
    clock.advance(1.0)
    assert drainer.drain_once() == 1
    status = watching.status()
    assert (status.broker_ok, status.last_ok_at, status.sent_total) == (True, 51.0, 1)
    assert status.last_error is not None  # the last error is kept for the status page


def test_rows_survive_close_and_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    spool.append(messages("1", "2"))
    spool.close()
    spool.close()  # safe twice
    with pytest.raises(StorageError, match="is closed"):
        spool.append(messages("3"))

    reopened = Spool(tmp_path, max_events=100, max_bytes=BIG)
    assert reopened.depth() == (2, 4)
    kafka = Kafka()
    drain_all(Drainer(reopened, kafka.factory))
    assert kafka.values() == [b"1", b"2"]


CRASH = """
import os, signal, sys
from pathlib import Path
from streams.spool import Spool, SpoolMessage
spool = Spool(Path(sys.argv[1]), max_events=100, max_bytes=1 << 30)
for v in (b"1", b"2", b"3"):
    spool.append([SpoolMessage("impressions", v, v)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_rows_survive_a_process_killed_before_it_drained_them(tmp_path: Path) -> None:
    crashed = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)], cwd=ROOT, timeout=60)
    assert crashed.returncode == -signal.SIGKILL

    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    assert spool.depth() == (3, 6)
    kafka = Kafka()
    drain_all(Drainer(spool, kafka.factory))
    assert kafka.values() == [b"1", b"2", b"3"]


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success() -> None:
    backoff = Backoff(0.2, 1.0)
    assert [backoff.failed() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.succeeded()
    assert backoff.failed() == 0.2


@pytest.mark.parametrize(
    ("max_events", "max_bytes", "message"),
    [(0, 10, "max_events=0, max_bytes=10"), (10, 0, "max_events=10, max_bytes=0")],
)
def test_a_spool_without_room_is_refused(
    tmp_path: Path, max_events: int, max_bytes: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Spool(tmp_path, max_events=max_events, max_bytes=max_bytes)


def wait_for(condition: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_idle_drainer_probes_kafka_so_the_status_notices_a_broker_gone_and_back(
    tmp_path: Path,
) -> None:
    kafka = Kafka()

    def probe() -> None:
        if not kafka.up:
            raise BrokerError("cannot reach Kafka at 127.0.0.1:9092 within 10 s")

    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    drainer = Drainer(spool, kafka.factory, probe=probe, probe_every_s=0.0)
    drainer._step()  # empty spool: the producer starts (contact), the probe answers
    assert spool.status().broker_ok is True
    kafka.up = False
    drainer._step()  # still nothing to send: only the probe can tell
    status = spool.status()
    assert status.broker_ok is False and "cannot reach Kafka" in (status.last_error or "")
    kafka.up = True
    drainer._step()
    assert spool.status().broker_ok is True


def test_an_idle_drainer_probes_no_more_often_than_asked(tmp_path: Path) -> None:
    calls: list[float] = []
    spool = Spool(tmp_path, max_events=100, max_bytes=BIG)
    drainer = Drainer(spool, Kafka().factory, probe=lambda: calls.append(1), probe_every_s=3600)
    for _ in range(5):
        drainer._step()
    assert len(calls) == 1


def test_threads_opening_a_new_spool_at_once_all_open_it(tmp_path: Path) -> None:
    # Reproduction of a CI failure (two `nudge serve` workers starting together): switching a
    # new database to WAL, SQLite told one opener "database is locked" at once, without waiting
    # (about 4% of 400 opens here); now it is tried again until the busy timeout.
    failures: list[BaseException] = []
    for round_ in range(100):
        directory = tmp_path / str(round_)
        start = threading.Barrier(4)

        def open_and_close(directory: Path = directory, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                Spool(directory, max_events=1000, max_bytes=1 << 30).close()
            except Exception as exc:  # collected, asserted below
                failures.append(exc)

        threads = [threading.Thread(target=open_and_close) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
