"""What the decision service remembers about recent decisions, shared by its worker processes.

Event id -> trigger and time (so an outcome without a trigger finds it, and a reused id is
refused), and for a deferred decision its impression and the outcomes that wait for its
activation. The tables live in the spool's database, so a decision and its spooled impression
are one transaction (`tx`: a `SpoolTransaction`): both are committed, or neither. A row lives
`remember_s` seconds (counted from the activation for a deferred decision), a deferred decision
never activated `deferred_expiry_s` seconds. Expired rows are invisible at once and deleted every
`EXPIRE_EVERY` records, so the table stays near what those durations imply.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bandit.errors import NudgeError, StorageError
from streams.spool import DB_FILE as SPOOL_DB_FILE
from streams.spool import Spool, SpoolTransaction

DB_FILE = SPOOL_DB_FILE  # the log's tables are in the spool's database
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
_INSERT = "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, 0, ?, ?)"


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
    """Recent decisions in the tables `decisions` and `held_outcomes` of `spool`'s database;
    safe to share between threads and processes. `clock`: wall seconds, for expiry.

    Every write takes `tx`, a transaction of `spool` to join (committed with whatever else the
    caller does in it); without one it runs in a transaction of its own. The log does not own
    the spool: closing the log leaves the spool open.
    """

    def __init__(
        self,
        spool: Spool,
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
        self.spool = spool
        self.directory = spool.directory
        self.remember_s = remember_s
        self.deferred_expiry_s = deferred_expiry_s
        self.clock = clock
        self._closed = False
        self._records_since_expiry = 0
        self._dropped_uncounted = 0  # deferred dropped by the expiry inside `record`
        with spool.connection() as db, self._translated():
            db.executescript(_SCHEMA)

    def record(
        self,
        event_id: str,
        trigger: str,
        ts: float,
        deferred_impression: bytes | None = None,
        *,
        tx: SpoolTransaction | None = None,
    ) -> None:
        """Remember a decision (deferred when it brings its impression); `EventIdReused` if the
        id is known and not expired. One INSERT: the primary key finds a reused id."""
        now = self.clock()
        lives_s = self.remember_s if deferred_impression is None else self.deferred_expiry_s
        row = (
            event_id,
            trigger,
            ts,
            now,
            deferred_impression is not None,
            deferred_impression,
            now + lives_s,
        )
        with self._writing(tx) as db:
            try:
                db.execute(_INSERT, row)
            except sqlite3.IntegrityError:
                self._replace_expired(db, event_id, now, row)
            self._records_since_expiry += 1
            if self._records_since_expiry >= EXPIRE_EVERY:
                self._dropped_uncounted += self._expire(db, now)

    def forget(self, event_id: str, *, tx: SpoolTransaction | None = None) -> None:
        """Undo a `record`, freeing the id (and dropping the outcomes held for it)."""
        with self._writing(tx) as db:
            _delete(db, event_id)

    def lookup(self, event_id: str) -> LoggedDecision | None:
        """The decision with this id; None when unknown or expired."""
        with self._reading() as db:
            row = db.execute(
                "SELECT trigger, ts, deferred, activated, created_at FROM decisions "
                "WHERE event_id = ? AND expires_at > ?",
                (event_id, self.clock()),
            ).fetchone()
        if row is None:
            return None
        trigger, ts, deferred, activated, created_at = row
        return LoggedDecision(event_id, trigger, ts, bool(deferred), bool(activated), created_at)

    def hold_outcome(
        self, event_id: str, outcome: bytes, *, tx: SpoolTransaction | None = None
    ) -> bool:
        """Keep an outcome of a deferred decision until its activation. False (nothing kept) when
        the decision is not, or no longer, waiting for activation: send the outcome now."""
        with self._writing(tx) as db:
            kept = db.execute(
                "INSERT INTO held_outcomes (event_id, outcome) SELECT ?1, ?2 WHERE EXISTS "
                "(SELECT 1 FROM decisions WHERE event_id = ?1 AND deferred = 1 AND activated = 0 "
                "AND expires_at > ?3)",
                (event_id, outcome, self.clock()),
            )
            return kept.rowcount == 1

    def activate(
        self, event_id: str, *, tx: SpoolTransaction | None = None
    ) -> tuple[bytes, list[bytes]] | None:
        """The first activation of a deferred decision: its impression and the outcomes held for
        it in arrival order, handed out once; None if not deferred, expired or activated already.
        In `tx`, a rollback makes it deferred again, its outcomes held as before."""
        now = self.clock()
        with self._writing(tx) as db:
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
        dropped without an activation (also by the expiry `record` runs itself, since the last
        call: each drop is reported once)."""
        with self._writing(None) as db:
            dropped = self._expire(db, self.clock())
        dropped, self._dropped_uncounted = dropped + self._dropped_uncounted, 0
        return dropped

    def close(self) -> None:
        """Stop using the spool's database (the rows stay on disk, the spool stays open); safe
        twice."""
        self._closed = True

    def _replace_expired(
        self, db: sqlite3.Connection, event_id: str, now: float, row: tuple[object, ...]
    ) -> None:
        """The id is in the table: refuse it if that decision is still remembered, else drop
        the expired one (and outcomes held for it) and insert again."""
        known = db.execute(
            "SELECT trigger, created_at, expires_at FROM decisions WHERE event_id = ?",
            (event_id,),
        ).fetchone()
        if known is None:  # not the primary key: some other constraint failed
            raise StorageError(f"decision log {self.directory}: cannot record {event_id!r}")
        if known[2] > now:
            raise EventIdReused(
                f"event id {event_id!r} is already used by a decision for trigger "
                f"{known[0]!r} made {now - known[1]:.0f} s ago; each decision needs its own"
            )
        _delete(db, event_id)
        db.execute(_INSERT, row)

    def _expire(self, db: sqlite3.Connection, now: float) -> int:
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

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        self._check_open()
        with self.spool.connection() as db, self._translated():
            yield db

    @contextmanager
    def _writing(self, tx: SpoolTransaction | None) -> Iterator[sqlite3.Connection]:
        """The connection of `tx`, or of a transaction of our own (BEGIN IMMEDIATE: checks and
        writes of all processes serialize)."""
        self._check_open()
        if tx is not None:
            with self._translated():
                yield tx.db
            return
        with self.spool.transaction() as own, self._translated():
            yield own.db

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"decision log {self.directory} is closed")

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"decision log {self.directory}: SQLite failed: {exc}") from exc


def _delete(db: sqlite3.Connection, event_id: str) -> None:
    db.execute("DELETE FROM held_outcomes WHERE event_id = ?", (event_id,))
    db.execute("DELETE FROM decisions WHERE event_id = ?", (event_id,))
