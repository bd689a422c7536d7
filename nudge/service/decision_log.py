"""What the decision service remembers about recent decisions, shared by its worker processes.

Event id -> trigger and time (so an outcome without a trigger finds it, and a reused id is
refused), and for a deferred decision its impression and the outcomes that wait for its
activation. One SQLite file (WAL) in the given directory; a row lives `remember_s` seconds
(counted from the activation for a deferred decision), a deferred decision never activated
`deferred_expiry_s` seconds. Expired rows are invisible at once and deleted every
`EXPIRE_EVERY` records, so the table stays near what those durations imply.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bandit.atomic_dir import os_error_text
from bandit.errors import NudgeError, StorageError
from streams.spool import connect

DB_FILE = "decisions.sqlite3"
EXPIRE_EVERY = 1000  # records per process between two deletions of expired rows

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS decisions (
    event_id TEXT PRIMARY KEY, trigger TEXT NOT NULL, ts REAL NOT NULL,
    created_at REAL NOT NULL, deferred INTEGER NOT NULL, activated INTEGER NOT NULL,
    impression BLOB, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_by_expiry ON decisions (expires_at);
CREATE TABLE IF NOT EXISTS held_outcomes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, outcome BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS held_by_event ON held_outcomes (event_id, seq);
COMMIT;
"""


class EventIdReused(NudgeError):
    """A decision asked for an event id a recent decision already has; ids must be unique."""


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """A remembered decision: its trigger, event time, whether it was deferred and activated,
    and when it was recorded (the log's clock)."""

    event_id: str
    trigger: str
    ts: float
    deferred: bool
    activated: bool
    created_at: float


class DecisionLog:
    """Recent decisions in `<directory>/decisions.sqlite3`; safe to share between threads and
    processes. `clock`: wall seconds, for expiry."""

    def __init__(
        self,
        directory: Path,
        *,
        remember_s: float,
        deferred_expiry_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if remember_s <= 0 or deferred_expiry_s <= 0:
            raise ValueError(
                f"a decision log keeps rows for some time, got remember_s={remember_s}, "
                f"deferred_expiry_s={deferred_expiry_s}"
            )
        self.directory = Path(directory)
        self.remember_s = remember_s
        self.deferred_expiry_s = deferred_expiry_s
        self.clock = clock
        self._lock = threading.Lock()
        self._records_since_expiry = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"decision log {self.directory}: cannot create the directory: {os_error_text(exc)}"
            ) from exc
        with self._translated():
            self._db: sqlite3.Connection | None = connect(self.directory / DB_FILE)
            self._db.executescript(_SCHEMA)

    def record(
        self, event_id: str, trigger: str, ts: float, deferred_impression: bytes | None = None
    ) -> None:
        """Remember a decision (deferred when it brings its impression); `EventIdReused` if the
        id is known and not expired."""
        now = self.clock()
        lives_s = self.remember_s if deferred_impression is None else self.deferred_expiry_s
        with self._write() as db:
            known = db.execute(
                "SELECT trigger, created_at, expires_at FROM decisions WHERE event_id = ?",
                (event_id,),
            ).fetchone()
            if known is not None and known[2] > now:
                raise EventIdReused(
                    f"event id {event_id!r} is already used by a decision for trigger "
                    f"{known[0]!r} made {now - known[1]:.0f} s ago; each decision needs its own"
                )
            if known is not None:
                _delete(db, event_id)
            db.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    event_id,
                    trigger,
                    ts,
                    now,
                    deferred_impression is not None,
                    deferred_impression,
                    now + lives_s,
                ),
            )
        self._records_since_expiry += 1
        if self._records_since_expiry >= EXPIRE_EVERY:
            self.expire()

    def forget(self, event_id: str) -> None:
        """Undo a `record` (its impression could not be spooled), freeing the id."""
        with self._write() as db:
            _delete(db, event_id)

    def lookup(self, event_id: str) -> LoggedDecision | None:
        """The decision with this id; None when unknown or expired."""
        with self._read() as db:
            row = db.execute(
                "SELECT trigger, ts, deferred, activated, created_at FROM decisions "
                "WHERE event_id = ? AND expires_at > ?",
                (event_id, self.clock()),
            ).fetchone()
        if row is None:
            return None
        trigger, ts, deferred, activated, created_at = row
        return LoggedDecision(event_id, trigger, ts, bool(deferred), bool(activated), created_at)

    def hold_outcome(self, event_id: str, outcome: bytes) -> bool:
        """Keep an outcome of a deferred decision until its activation. False (nothing kept) when
        the decision is not, or no longer, waiting for activation: send the outcome now."""
        with self._write() as db:
            waiting = db.execute(
                "SELECT 1 FROM decisions WHERE event_id = ? AND deferred = 1 AND activated = 0 "
                "AND expires_at > ?",
                (event_id, self.clock()),
            ).fetchone()
            if waiting is not None:
                db.execute(
                    "INSERT INTO held_outcomes (event_id, outcome) VALUES (?, ?)",
                    (event_id, outcome),
                )
        return waiting is not None

    def activate(self, event_id: str) -> tuple[bytes, list[bytes]] | None:
        """The first activation of a deferred decision: its impression and the outcomes held for
        it in arrival order, handed out once; None if not deferred, expired or activated already."""
        now = self.clock()
        with self._write() as db:
            row = db.execute(
                "SELECT impression FROM decisions WHERE event_id = ? AND deferred = 1 "
                "AND activated = 0 AND expires_at > ?",
                (event_id, now),
            ).fetchone()
            if row is None:
                return None
            held = db.execute(
                "SELECT outcome FROM held_outcomes WHERE event_id = ? ORDER BY seq", (event_id,)
            ).fetchall()
            db.execute("DELETE FROM held_outcomes WHERE event_id = ?", (event_id,))
            db.execute(
                "UPDATE decisions SET activated = 1, impression = NULL, expires_at = ? "
                "WHERE event_id = ?",
                (now + self.remember_s, event_id),
            )
        return bytes(row[0]), [bytes(outcome) for (outcome,) in held]

    def expire(self) -> int:
        """Delete expired rows (and outcomes held for them); how many deferred decisions were
        dropped without an activation."""
        now = self.clock()
        with self._write() as db:
            (dropped,) = db.execute(
                "SELECT COUNT(*) FROM decisions WHERE expires_at <= ? AND deferred = 1 "
                "AND activated = 0",
                (now,),
            ).fetchone()
            db.execute(
                "DELETE FROM held_outcomes WHERE event_id IN "
                "(SELECT event_id FROM decisions WHERE expires_at <= ? AND deferred = 1 "
                "AND activated = 0)",
                (now,),
            )
            db.execute("DELETE FROM decisions WHERE expires_at <= ?", (now,))
        self._records_since_expiry = 0
        return int(dropped)

    def close(self) -> None:
        """Close the database (the rows stay on disk); safe twice."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translated():
            yield self._open()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so checks and writes of all
        processes serialize."""
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
            raise StorageError(f"decision log {self.directory} is closed")
        return self._db

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"decision log {self.directory}: SQLite failed: {exc}") from exc


def _delete(db: sqlite3.Connection, event_id: str) -> None:
    db.execute("DELETE FROM held_outcomes WHERE event_id = ?", (event_id,))
    db.execute("DELETE FROM decisions WHERE event_id = ?", (event_id,))
