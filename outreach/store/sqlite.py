"""The embedded store: one SQLite file per workspace (``.outreach/outreach.db`` by default).

Writes take the database's write lock at their start (``BEGIN IMMEDIATE``) and wait up to
:data:`BUSY_TIMEOUT_MS` for another process's; the WAL journal lets readers go on meanwhile.
Commits are flushed to disk (``synchronous=FULL``) unless a transaction says it need not be.
The send lock is an ``flock`` on a file beside the database, released by the OS when the
process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from outreach.exceptions import LedgerError
from outreach.store.base import Store, StoreUnavailable
from outreach.store.url import StoreURL

BUSY_TIMEOUT_MS = 10_000  # how long to wait for another process's write lock


class SQLiteStore(Store):
    backend = "sqlite"

    def __init__(self, target: StoreURL, purpose: str, *, create: bool = True) -> None:
        super().__init__(target, purpose)
        assert target.path is not None
        self.path = target.path
        self.create = create
        self.conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> None:
        if not self.path.exists() and not self.create:
            raise LedgerError("no ledger yet", where=self.where, hint="nothing has been sent")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the ledger's folder ({exc.strerror})",
                where=self.where,
                hint="check the folder is writable, or set OUTREACH_DB",
            ) from None
        timeout = BUSY_TIMEOUT_MS / 1000
        try:
            conn = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            # big sends: batches of inserts dirty thousands of pages; checkpointing the WAL
            # after every commit made inserts grow with the table (30% slower at 300k)
            # up to 16 MB: at 128 MB the cache was the largest part of a 1M send's memory
            # growth during delivery (1M peak RSS: 128 MB 720, 32 MB 673, 16 MB 654 MiB;
            # send times equal within noise at 100k and 1M)
            conn.execute("PRAGMA cache_size = -16384")
            conn.execute("PRAGMA wal_autocheckpoint = 20000")  # pages (80 MB)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        self.conn = conn

    def _disconnect(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _live(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StoreUnavailable("the ledger is closed", where=self.where)
        return self.conn

    # -- transactions -------------------------------------------------------------------------

    def _begin(self, durable: bool) -> None:
        conn = self._live()
        if not durable:
            conn.execute("PRAGMA synchronous = NORMAL")
        self._durable = durable
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._restore_sync()
            raise

    def _commit(self) -> None:
        try:
            self._live().execute("COMMIT")
        finally:
            self._restore_sync()

    def _rollback(self) -> None:
        try:
            if self.conn is not None and self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        finally:
            self._restore_sync()

    def _restore_sync(self) -> None:
        if not getattr(self, "_durable", True) and self.conn is not None:
            self.conn.execute("PRAGMA synchronous = FULL")
            self._durable = True

    # -- statements ---------------------------------------------------------------------------

    def _cursor_execute(self, sql: str, params: Sequence) -> Any:
        return self._live().execute(sql, params)

    def _cursor_executemany(self, sql: str, seq: Iterable[Sequence]) -> None:
        self._live().executemany(sql, seq)

    def _translate(self, exc: Exception) -> LedgerError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        msg = str(exc)
        if isinstance(exc, sqlite3.OperationalError):
            if "locked" in msg or "busy" in msg:
                return LedgerError(
                    "the ledger is locked by another process",
                    where=self.where,
                    hint="another outreach command (or a database browser) holds it; close it and retry",
                )
            if "unable to open" in msg or "readonly" in msg or "read-only" in msg:
                return LedgerError(
                    f"cannot open the ledger for writing ({msg})",
                    where=self.where,
                    hint="check the folder exists and is writable, or set OUTREACH_DB",
                )
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in msg or "malformed" in msg or "encrypted" in msg
        ):
            return LedgerError(
                f"not an outreach database: {msg}", where=self.where, hint="check OUTREACH_DB"
            )
        return LedgerError(f"database error: {msg}", where=self.where)

    # -- the send lock ------------------------------------------------------------------------

    def _lock(self, campaign: str) -> bool:
        lock_path = self.path.with_name(self.path.name + ".send.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- schema -------------------------------------------------------------------------------

    def revision(self) -> str | None:
        from outreach.store.migrate import LEGACY_REVISIONS

        has_table = self._scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        )
        if has_table:
            rev = self._scalar("SELECT version_num FROM alembic_version")
            if rev:
                return rev
        legacy = self._scalar("PRAGMA user_version")
        if legacy:
            # a ledger written before the store (schema 1 to 4, by PRAGMA user_version)
            return LEGACY_REVISIONS.get(legacy, f"user_version {legacy}")
        return None

    def legacy_version(self) -> int:
        return int(self._scalar("PRAGMA user_version") or 0)

    def _sqlalchemy_creator(self):
        path = self.path

        def creator() -> sqlite3.Connection:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
            return conn

        return "sqlite://", creator

    # -- bulk paths ---------------------------------------------------------------------------

    def insert_events(self, rows: Sequence[Sequence]) -> set[str]:
        from outreach.store.base import EVENT_COLUMNS

        ids = [r[0] for r in rows]
        with self.transaction():
            # inside the write transaction nobody else can add one: this is exact
            known = {
                r[0] for r in self._in("SELECT sg_event_id FROM events WHERE sg_event_id {in}", ids)
            }
            new = [r for r in rows if r[0] not in known]
            marks = ",".join("?" * len(EVENT_COLUMNS))
            self._many(
                f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({marks}) "
                "ON CONFLICT (sg_event_id) DO NOTHING",
                new,
            )
        return {r[0] for r in new}
