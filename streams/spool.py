"""A durable, ordered, bounded outbox in front of Kafka: `Spool` (SQLite, WAL) and `Drainer`.

The decision service appends every event here before it answers, so a Kafka outage or a
`kill -9` loses nothing (WAL with synchronous=NORMAL survives a process crash; an OS crash may
lose the last commits). Rows keep their insertion order across every process that appends to
one directory. One `Drainer` per directory at a time (`flock` on `drain.lock`) sends the
oldest rows, flushes, then deletes them, so a failed flush only means they are sent again (the
consumer refuses duplicate event ids). The drainer also checkpoints the WAL into the database
file, on a connection of its own, so requests do not pay for it (an append checkpoints only past
`SAFETY_CHECKPOINT_PAGES`, when no drainer does). Depth and the drainer's health live in one
counters row, so every worker process reads the same status cheaply. Another component may keep
its own tables in the spool's database and write them in the same transaction as an append
(`transaction`): both are committed, or neither.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bandit.atomic_dir import os_error_text
from bandit.dir_lock import DirectoryLock
from bandit.errors import NudgeError, RecordRefused, StorageError
from bandit.ports import MessageSink

log = logging.getLogger("nudge.spool")

DB_FILE = "spool.sqlite3"
LOCK_FILE = "drain.lock"
T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000  # several workers append at once; a write transaction is short
LOCK_RETRY_S = 1.0  # how often a drainer without the lock tries again (its holder may die)
# WAL pages past which a committing append checkpoints (SQLite's default is 1,000): only a
# backstop, the drainer checkpoints far sooner; 10,000 pages of 4 KiB bound the WAL near 40 MB.
SAFETY_CHECKPOINT_PAGES = 10_000
# How often the drainer checkpoints: each one syncs the files, so not after every batch.
CHECKPOINT_EVERY_S = 0.5

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL,
    reason TEXT NOT NULL, refused_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    depth_events INTEGER NOT NULL, depth_bytes INTEGER NOT NULL, turned_away INTEGER NOT NULL,
    broker_ok INTEGER, last_ok_at REAL, last_error TEXT,
    sent_total INTEGER NOT NULL, failures_total INTEGER NOT NULL, refused_total INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES (1, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0);
COMMIT;
"""
_INSERT_MESSAGE = "INSERT INTO messages (topic, key, value, size) VALUES (?, ?, ?, ?)"


class SpoolFull(NudgeError):
    """The spool cannot take more events until Kafka takes some; the message gives the depth and
    the limits."""

    retriable = True


@dataclass(frozen=True, slots=True)
class SpoolMessage:
    """One message waiting for Kafka: its topic, key and value."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What every worker sees of the spool: depth, whether it turns events away, how the drainer
    fares (`broker_ok` None: no drainer has tried Kafka yet)."""

    depth_events: int
    depth_bytes: int
    full: bool
    broker_ok: bool | None
    last_ok_at: float | None
    last_error: str | None
    sent_total: int
    failures_total: int
    refused_total: int


class SpoolTransaction:
    """One write transaction on the spool's database, open for a `with spool.transaction()` block:
    the messages appended through it and what another component writes through `db` (its own
    tables in the same database) are committed together, or not at all."""

    def __init__(self, spool: Spool, db: sqlite3.Connection) -> None:
        self.db = db
        self._spool = spool
        self._turned_away: list[tuple[int, int]] = []  # (events, bytes) refused for want of room

    def append(self, messages: Sequence[SpoolMessage]) -> None:
        """Add messages (all or none) when the transaction commits; `SpoolFull` if they would pass
        a limit (the spool counts as full from then on, even if the transaction is rolled back)."""
        self._spool._append(self, messages)


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int
    message: SpoolMessage


def message_size(message: SpoolMessage) -> int:
    """The bytes a message counts against `max_bytes`: its key and value."""
    return len(message.value) + len(message.key or b"")


class Spool:
    """Messages for Kafka in `<directory>/spool.sqlite3`, in insertion order, at most
    `max_events` events and `max_bytes` bytes; safe to share between threads and processes.

    `full` in the status: at a limit, or an append was turned away and nothing drained since.
    `clock` (wall seconds) stamps the drainer's successes and refusals.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_events: int,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError(
                f"a spool needs room for at least one event and one byte, got "
                f"max_events={max_events}, max_bytes={max_bytes}"
            )
        self.directory = Path(directory)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.clock = clock
        self._lock = threading.RLock()  # a read inside a transaction's block must not deadlock
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self._closed = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"spool {self.directory}: cannot create the directory: {os_error_text(exc)}"
            ) from exc
        with self._translated():
            self._db: sqlite3.Connection | None = connect(self.directory / DB_FILE)
            self._db.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_CHECKPOINT_PAGES}")
            self._db.executescript(_SCHEMA)

    def append(self, messages: Sequence[SpoolMessage]) -> None:
        """Add messages in one transaction (all or none); `SpoolFull` if they would pass a limit."""
        with self.transaction() as tx:
            tx.append(messages)

    @contextmanager
    def transaction(self) -> Iterator[SpoolTransaction]:
        """One write transaction, taken at once (BEGIN IMMEDIATE, so the writers of every process
        serialize): committed when the block ends, rolled back if it raises."""
        with self._lock, self._translated():
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            tx = SpoolTransaction(self, db)
            try:
                yield tx
            except BaseException:
                db.rollback()
                self._mark_turned_away(tx, committing=False)
                raise
            try:
                self._mark_turned_away(tx, committing=True)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The database connection, this thread's alone during the block (autocommit: each
        statement its own transaction), for a component reading or creating its own tables in
        the spool's database; writes that must commit with appends go through `transaction`."""
        with self._read() as db:
            yield db

    def depth(self) -> tuple[int, int]:
        """(events, bytes) waiting, read from the counters row."""
        with self._read() as db:
            events, nbytes = db.execute("SELECT depth_events, depth_bytes FROM counters").fetchone()
        return int(events), int(nbytes)

    def status(self) -> SpoolStatus:
        """Depth, fullness and the drainer's health, as recorded by whichever process drains."""
        with self._read() as db:
            row = db.execute(
                "SELECT depth_events, depth_bytes, turned_away, broker_ok, last_ok_at, "
                "last_error, sent_total, failures_total, refused_total FROM counters"
            ).fetchone()
        events, nbytes, turned_away, broker_ok, last_ok_at, last_error, sent, failures, refused = (
            row
        )
        return SpoolStatus(
            depth_events=events,
            depth_bytes=nbytes,
            full=bool(turned_away) or events >= self.max_events or nbytes >= self.max_bytes,
            broker_ok=None if broker_ok is None else bool(broker_ok),
            last_ok_at=last_ok_at,
            last_error=last_error,
            sent_total=sent,
            failures_total=failures,
            refused_total=refused,
        )

    def refused(self) -> list[tuple[SpoolMessage, str]]:
        """The messages Kafka refused for good, oldest first, each with Kafka's reason."""
        with self._read() as db:
            rows = db.execute("SELECT topic, key, value, reason FROM refused ORDER BY seq")
            return [(SpoolMessage(t, k, v), reason) for t, k, v, reason in rows]

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL's committed pages into the database file without waiting for anyone
        (PASSIVE), on a connection of its own so this process's appends go on meanwhile;
        returns (pages in the WAL, pages copied). The drainer calls it every
        `CHECKPOINT_EVERY_S`, so appends need not (see `SAFETY_CHECKPOINT_PAGES`)."""
        with self._checkpoint_lock, self._translated():
            if self._closed:
                raise StorageError(f"spool {self.directory} is closed")
            if self._checkpointer is None:
                self._checkpointer = connect(self.directory / DB_FILE)
            _, wal_pages, copied = self._checkpointer.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
        return int(wal_pages), int(copied)

    def close(self) -> None:
        """Close the database (the rows stay on disk); safe twice."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()
        with self._checkpoint_lock:
            self._closed = True
            checkpointer, self._checkpointer = self._checkpointer, None
            if checkpointer is not None:
                checkpointer.close()

    # -- for SpoolTransaction ---------------------------------------------------------------

    def _append(self, tx: SpoolTransaction, messages: Sequence[SpoolMessage]) -> None:
        """Count the messages in and insert them if they fit: one conditional UPDATE of the
        counters (it is the check) and one INSERT; the depth is read only to explain a refusal."""
        batch = list(messages)
        if not batch:
            return
        size = sum(message_size(m) for m in batch)
        db = tx.db
        counted = db.execute(
            "UPDATE counters SET depth_events = depth_events + ?1, depth_bytes = depth_bytes + ?2 "
            "WHERE depth_events + ?1 <= ?3 AND depth_bytes + ?2 <= ?4",
            (len(batch), size, self.max_events, self.max_bytes),
        )
        if counted.rowcount == 1:
            rows = [(m.topic, m.key, m.value, message_size(m)) for m in batch]
            if len(rows) == 1:
                db.execute(_INSERT_MESSAGE, rows[0])
            else:
                db.executemany(_INSERT_MESSAGE, rows)
            return
        events, nbytes = db.execute("SELECT depth_events, depth_bytes FROM counters").fetchone()
        too_large = len(batch) > self.max_events or size > self.max_bytes
        if not too_large:  # turned away for want of room: the spool is full
            tx._turned_away.append((len(batch), size))
        raise SpoolFull(
            f"spool {self.directory} is full: it holds {events} events ({nbytes} bytes) of at "
            f"most {self.max_events} events ({self.max_bytes} bytes), so {len(batch)} more "
            f"({size} bytes) cannot be added"
            + (" even when empty" if too_large else " until Kafka takes some")
        )

    def _mark_turned_away(self, tx: SpoolTransaction, *, committing: bool) -> None:
        """Record that an append was turned away, so the status says full until a drain. The
        condition is checked again in the same statement: after a rollback, a drain may have
        made room in between. After a rollback a failure here is only logged (the exception
        that rolled back matters more)."""
        for events, size in tx._turned_away:
            try:
                tx.db.execute(
                    "UPDATE counters SET turned_away = 1 "
                    "WHERE depth_events + ?1 > ?3 OR depth_bytes + ?2 > ?4",
                    (events, size, self.max_events, self.max_bytes),
                )
            except sqlite3.Error as exc:
                if committing:
                    raise
                log.warning("spool %s: could not mark the spool full: %s", self.directory, exc)
        tx._turned_away.clear()

    # -- for the Drainer -------------------------------------------------------------------

    def _oldest(self, limit: int, limit_bytes: int) -> list[_Row]:
        """Up to `limit` oldest rows, stopping once they pass `limit_bytes` (at least one row)."""
        rows: list[_Row] = []
        total = 0
        with self._read() as db:
            cursor = db.execute(
                "SELECT seq, topic, key, value, size FROM messages ORDER BY seq LIMIT ?", (limit,)
            )
            for seq, topic, key, value, size in cursor:  # values are read only as far as needed
                if rows and total + size > limit_bytes:
                    break
                rows.append(_Row(seq, SpoolMessage(topic, key, value)))
                total += size
            cursor.close()
        return rows

    def _delete_sent(self, first: int, last: int) -> int:
        """Delete the rows `first..last` Kafka now has, counting them as sent; returns how many."""
        with self._write() as db:
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages WHERE seq BETWEEN ? AND ?",
                (first, last),
            ).fetchone()
            db.execute("DELETE FROM messages WHERE seq BETWEEN ? AND ?", (first, last))
            db.execute(
                "UPDATE counters SET depth_events = depth_events - ?, "
                "depth_bytes = depth_bytes - ?,"
                " turned_away = 0, sent_total = sent_total + ?, broker_ok = 1, last_ok_at = ?",
                (count, size, count, self.clock()),
            )
        return int(count)

    def _set_aside(self, seq: int, reason: str) -> None:
        """Move a row Kafka refused for good to the `refused` table, so the queue goes on."""
        with self._write() as db:
            row = db.execute(
                "SELECT topic, key, value, size FROM messages WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                return
            topic, key, value, size = row
            db.execute(
                "INSERT INTO refused (seq, topic, key, value, reason, refused_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (seq, topic, key, value, reason, self.clock()),
            )
            db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
            db.execute(
                "UPDATE counters SET depth_events = depth_events - 1, "
                "depth_bytes = depth_bytes - ?,"
                " turned_away = 0, refused_total = refused_total + 1, last_error = ?",
                (size, reason),
            )

    def _record_contact(self) -> None:
        """The drainer reached Kafka (its producer started)."""
        with self._write() as db:
            db.execute("UPDATE counters SET broker_ok = 1, last_ok_at = ?", (self.clock(),))

    def _record_failure(self, error: str) -> None:
        """The drainer could not reach Kafka or Kafka did not acknowledge a batch."""
        with self._write() as db:
            db.execute(
                "UPDATE counters SET broker_ok = 0, last_error = ?, "
                "failures_total = failures_total + 1",
                (error,),
            )

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translated():
            yield self._open()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so appends serialize."""
        with self._lock, self._translated():
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.execute("COMMIT")

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"spool {self.directory} is closed")
        return self._db

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"spool {self.directory}: SQLite failed: {exc}") from exc


def _while_locked(statement: Callable[[], T]) -> T:
    """Run `statement` again while SQLite says the database is locked, up to the busy timeout.
    Two processes opening a new spool at once both switch it to WAL, and SQLite answers one of
    them "database is locked" at once, without its busy handler (a lock it would wait for while
    holding one the other waits for)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    backoff = Backoff(0.005, 0.25)
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(backoff.failed())


def connect(path: Path) -> sqlite3.Connection:
    """A connection for several processes: WAL, synchronous=NORMAL, a busy timeout, and
    transactions begun explicitly (autocommit otherwise)."""
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = _while_locked(lambda: db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL on {path} (journal mode {mode})")
        db.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        db.close()
        raise
    return db


class Backoff:
    """Delays after consecutive failures: `first_s`, doubling, at most `max_s`; a success resets."""

    def __init__(self, first_s: float, max_s: float) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"backoff needs 0 < first <= max seconds, got ({first_s}, {max_s})")
        self.first_s = first_s
        self.max_s = max_s
        self._next = first_s

    def failed(self) -> float:
        """The delay before the next try after one more failure."""
        delay, self._next = self._next, min(self._next * 2, self.max_s)
        return delay

    def succeeded(self) -> None:
        self._next = self.first_s


@dataclass(frozen=True, slots=True)
class _Attempt:
    sent: int  # rows Kafka acknowledged (and so deleted)
    refused: int  # rows set aside
    failed: bool  # Kafka unreachable or a batch unacknowledged: back off


class Drainer:
    """Sends a spool's rows to Kafka oldest first, while holding `<directory>/drain.lock`.

    A batch is at most `batch` rows and `batch_bytes` bytes (at least one row); `timeout_s`
    bounds each flush. The sink comes from `sink_factory` when first needed and is discarded
    after any failure (a new one next try); failures back off from `backoff_s[0]` to
    `backoff_s[1]` seconds. While the spool stays empty, `probe` (if given; it raises when Kafka
    cannot be reached) runs every `probe_every_s`, so the status (and readiness) notices a
    broker that went away while nothing needed sending. A drainer is started once and stopped
    once.
    """

    def __init__(
        self,
        spool: Spool,
        sink_factory: Callable[[], MessageSink],
        *,
        batch: int = 500,
        timeout_s: float = 10.0,
        backoff_s: tuple[float, float] = (0.2, 5.0),
        batch_bytes: int = 8 * 1024 * 1024,
        idle_s: float = 0.05,
        probe: Callable[[], object] | None = None,
        probe_every_s: float = 10.0,
    ) -> None:
        if batch < 1 or batch_bytes < 1 or timeout_s <= 0 or idle_s <= 0:
            raise ValueError(
                f"a drainer needs batch >= 1, batch_bytes >= 1, timeout_s > 0 and idle_s > 0, "
                f"got {batch}, {batch_bytes}, {timeout_s}, {idle_s}"
            )
        self.spool = spool
        self.sink_factory = sink_factory
        self.batch = batch
        self.batch_bytes = batch_bytes
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self._backoff = Backoff(*backoff_s)
        self._lock = DirectoryLock(
            spool.directory, "serve.spool_directory", "one drainer per spool", file=LOCK_FILE
        )
        self._sink: MessageSink | None = None
        self._stopping = threading.Event()
        self._deadline = 0.0
        self._checkpointed_at = -math.inf
        self._thread: threading.Thread | None = None
        self.probe = probe
        self.probe_every_s = probe_every_s
        self._contact_at = -math.inf

    @property
    def draining(self) -> bool:
        """Whether this drainer holds the directory's drain lock."""
        return self._lock.held

    def drain_once(self) -> int:
        """Send one batch, flush, delete it; how many rows Kafka now has (0 when empty, when
        Kafka failed, or when another drainer holds the lock)."""
        return self._attempt(self.timeout_s).sent

    def start(self) -> None:
        """Drain on a daemon thread until `stop`."""
        if self._thread is not None:
            raise RuntimeError("a drainer is started once")
        self._thread = threading.Thread(target=self._run, name="spool-drainer", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Drain what is left for up to `drain_timeout_s` seconds, close the sink, release the
        lock; the rows Kafka did not take stay in the spool."""
        if self._stopping.is_set():
            return
        self._deadline = time.monotonic() + drain_timeout_s
        self._stopping.set()
        if self._thread is None:
            self._finish()
            return
        self._thread.join(drain_timeout_s + self.timeout_s + 1.0)  # a flush may be under way
        if self._thread.is_alive():
            log.warning("the spool drainer did not stop within %.1f s", drain_timeout_s)

    def _run(self) -> None:
        delay = 0.0
        while not self._stopping.wait(delay):
            try:
                delay = self._step()
            except Exception:  # the spool itself failed (disk): keep trying, never die silently
                log.exception("the spool drainer failed; trying again")
                delay = self._backoff.failed()
        self._finish()

    def _step(self) -> float:
        """One turn of the loop; returns how long to wait before the next."""
        if not self._lock.try_acquire():
            return LOCK_RETRY_S
        attempt = self._attempt(self.timeout_s)
        self._checkpoint()
        if attempt.failed:
            return self._backoff.failed()
        if attempt.sent or attempt.refused:
            self._contact_at = time.monotonic()
        elif not self._probe_when_idle():
            return self._backoff.failed()
        self._backoff.succeeded()
        return 0.0 if attempt.sent or attempt.refused else self.idle_s

    def _probe_when_idle(self) -> bool:
        """With nothing to send, ask Kafka whether it is there (every `probe_every_s`); False
        when the probe failed (recorded in the status like a failed send)."""
        now = time.monotonic()
        if self.probe is None or now - self._contact_at < self.probe_every_s:
            return True
        self._contact_at = now
        try:
            self.probe()
        except Exception as exc:
            self._failed(exc)
            return False
        self.spool._record_contact()
        return True

    def _checkpoint(self) -> None:
        """Checkpoint the spool's WAL here, off the request path, whether or not Kafka is up,
        at most every `CHECKPOINT_EVERY_S`."""
        now = time.monotonic()
        if 0 <= now - self._checkpointed_at < CHECKPOINT_EVERY_S:
            return
        self._checkpointed_at = now
        try:
            self.spool.checkpoint()
        except StorageError as exc:  # the next turn tries again; appends checkpoint past a limit
            log.warning("spool %s: checkpoint failed: %s", self.spool.directory, exc)

    def _finish(self) -> None:
        try:
            while (remaining := self._deadline - time.monotonic()) > 0:
                attempt = self._attempt(min(self.timeout_s, remaining))
                if attempt.failed:
                    time.sleep(
                        min(self._backoff.failed(), max(self._deadline - time.monotonic(), 0))
                    )
                elif not (attempt.sent or attempt.refused):
                    break  # empty, or another drainer holds the lock
        finally:
            sink, self._sink = self._sink, None
            if sink is not None:
                _close_quietly(sink).join(max(self._deadline - time.monotonic(), 1.0))
            self._lock.release()

    def _attempt(self, flush_timeout_s: float) -> _Attempt:
        if not self._lock.try_acquire():
            return _Attempt(0, 0, failed=False)
        sink = self._open_sink()
        if sink is None:
            return _Attempt(0, 0, failed=True)
        rows = self.spool._oldest(self.batch, self.batch_bytes)
        if not rows:
            return _Attempt(0, 0, failed=False)
        refused: dict[int, str] = {}
        try:
            for row in rows:
                try:
                    _send(sink, row)
                except RecordRefused as exc:  # refused as it was sent: we know which row
                    refused[row.seq] = str(exc)
            sink.flush(flush_timeout_s)
            refused_at_flush = False
        except RecordRefused:  # refused on delivery: find it by sending one at a time
            refused_at_flush = True
        except Exception as exc:
            self._failed(exc)
            return _Attempt(0, 0, failed=True)
        for seq, reason in refused.items():
            self.spool._set_aside(seq, reason)
        pending = [row for row in rows if row.seq not in refused]
        if refused_at_flush:
            attempt = self._one_at_a_time(sink, pending, flush_timeout_s)
            return _Attempt(attempt.sent, attempt.refused + len(refused), attempt.failed)
        return _Attempt(self.spool._delete_sent(rows[0].seq, rows[-1].seq), len(refused), False)

    def _one_at_a_time(
        self, sink: MessageSink, rows: Sequence[_Row], flush_timeout_s: float
    ) -> _Attempt:
        """Send and flush each row alone, setting aside the ones Kafka refuses."""
        sent = refused = 0
        for row in rows:
            try:
                _send(sink, row)
                sink.flush(flush_timeout_s)
            except RecordRefused as exc:
                self.spool._set_aside(row.seq, str(exc))
                refused += 1
                continue
            except Exception as exc:
                self._failed(exc)
                return _Attempt(sent, refused, failed=True)
            sent += self.spool._delete_sent(row.seq, row.seq)
        return _Attempt(sent, refused, failed=False)

    def _open_sink(self) -> MessageSink | None:
        if self._sink is None:
            try:
                self._sink = self.sink_factory()
            except Exception as exc:  # the broker is down as the producer starts: retry later
                self._failed(exc)
                return None
            self.spool._record_contact()
        return self._sink

    def _failed(self, exc: Exception) -> None:
        error = str(exc) if isinstance(exc, NudgeError) else f"{type(exc).__name__}: {exc}"
        log.warning(
            "spool %s: Kafka did not take the spooled events: %s", self.spool.directory, error
        )
        self.spool._record_failure(error)
        sink, self._sink = self._sink, None
        if sink is not None:
            _close_quietly(sink)  # not waited for: closing may wait for a broker that is down


def _send(sink: MessageSink, row: _Row) -> None:
    sink.send(row.message.topic, row.message.key, row.message.value)


def _close_quietly(sink: MessageSink) -> threading.Thread:
    """Close a sink on a daemon thread, logging what it raises; returns the thread."""

    def close() -> None:
        try:
            sink.close()
        except Exception as exc:
            log.info("closing a spool sink failed: %s", exc)

    thread = threading.Thread(target=close, name="spool-sink-close", daemon=True)
    thread.start()
    return thread
