"""The send ledger and event store: one SQLite database per workspace.

Every hand-off to a transport follows the same protocol, so that a crash (even SIGKILL) at any
moment leads neither to a duplicate nor to a loss:

1. the batch's rows are written ``pending`` and committed (``synchronous=FULL``);
2. the transport hands the batch over;
3. the rows become ``sent`` (with the transport's message id), ``failed`` (with the reason,
   nothing was accepted) or ``unknown`` (the request may have been accepted).

A run that finds ``pending`` rows left by a crashed run asks the transport to reconcile them
(the outbox can tell from its files; SendGrid cannot, so they become ``unknown``). ``unknown``
rows are never resent unless the coordinator passes ``--resend-unknown``.

A concurrent run writes batches ahead of their hand-off (step 1 overlaps other batches'
requests). Such a batch is recorded ``queued`` (its rows ``pending``, so no other run can take
them) and flipped to ``pending`` by :meth:`Ledger.mark_handed_off`, durably, just before its
request. After a crash the rows of a still ``queued`` batch are known never to have left:
:meth:`Ledger.pending_rows` reports them with status ``queued`` and they are retried, never
``unknown``. So a SIGKILL leaves at most as many batches ``unknown`` as requests were in flight.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from outreach.exceptions import LedgerError, Location

if TYPE_CHECKING:
    from outreach.campaign import Campaign

SCHEMA_VERSION = 4
BUSY_TIMEOUT_MS = 10_000  # how long to wait for another process's write lock
STATUSES = ("pending", "sent", "failed", "unknown", "cancelled")

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE runs (
        id            INTEGER PRIMARY KEY,
        campaign      TEXT NOT NULL,
        transport     TEXT NOT NULL,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        outcome       TEXT,
        options       TEXT,
        host          TEXT,
        pid           INTEGER
    );
    CREATE TABLE sends (
        send_id        TEXT PRIMARY KEY,
        campaign       TEXT NOT NULL,
        step           TEXT NOT NULL,
        contact_id     TEXT NOT NULL,
        transport      TEXT NOT NULL,
        email          TEXT NOT NULL,
        status         TEXT NOT NULL CHECK (status IN ('pending','sent','failed','unknown','cancelled')),
        batch_id       TEXT,
        variant        TEXT,
        segment        TEXT,
        relationship   TEXT,
        country        TEXT,
        country_status TEXT,
        language       TEXT,
        message_id     TEXT,
        send_at        TEXT,
        error          TEXT,
        attempts       INTEGER NOT NULL DEFAULT 0,
        run_id         INTEGER,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        UNIQUE (campaign, step, contact_id, transport)
    );
    CREATE INDEX sends_batch ON sends (batch_id);
    CREATE INDEX sends_email ON sends (email);
    CREATE INDEX sends_message ON sends (message_id);
    CREATE TABLE batches (
        batch_id          TEXT PRIMARY KEY,
        campaign          TEXT NOT NULL,
        step              TEXT NOT NULL,
        transport         TEXT NOT NULL,
        variant           TEXT,
        size              INTEGER NOT NULL,
        status            TEXT NOT NULL,
        provider_batch_id TEXT,
        message_id        TEXT,
        error             TEXT,
        run_id            INTEGER,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL
    );
    CREATE INDEX batches_step ON batches (campaign, step, transport);
    CREATE TABLE test_sends (
        id         INTEGER PRIMARY KEY,
        campaign   TEXT NOT NULL,
        step       TEXT NOT NULL,
        variant    TEXT NOT NULL,
        to_email   TEXT NOT NULL,
        transport  TEXT NOT NULL,
        message_id TEXT,
        sent_at    TEXT NOT NULL
    );
    CREATE TABLE events (
        id            INTEGER PRIMARY KEY,
        sg_event_id   TEXT UNIQUE,
        event         TEXT NOT NULL,
        email         TEXT,
        timestamp     INTEGER,
        send_id       TEXT,
        campaign      TEXT,
        step          TEXT,
        contact_id    TEXT,
        message_id    TEXT,
        url           TEXT,
        type          TEXT,
        reason        TEXT,
        machine_open  INTEGER NOT NULL DEFAULT 0,
        matched       INTEGER NOT NULL DEFAULT 0,
        source        TEXT,
        received_at   TEXT NOT NULL,
        raw           TEXT
    );
    CREATE INDEX events_send ON events (send_id);
    CREATE INDEX events_campaign ON events (campaign, step, event);
    CREATE TABLE suppressions (
        email       TEXT PRIMARY KEY,
        reason      TEXT NOT NULL,
        source      TEXT NOT NULL,
        detail      TEXT,
        created_at  TEXT NOT NULL,
        created_by  TEXT
    );
    CREATE TABLE suppression_log (
        id      INTEGER PRIMARY KEY,
        email   TEXT NOT NULL,
        action  TEXT NOT NULL,
        reason  TEXT,
        source  TEXT,
        who     TEXT,
        at      TEXT NOT NULL,
        note    TEXT
    );
    """,
    # 2: a covering index for `outreach report` (reads 1M events without touching the table)
    # and for counting matched/unmatched events per campaign; it replaces events_campaign
    # (same leading column), so that ingestion still maintains only three indexes
    2: """
    CREATE INDEX IF NOT EXISTS events_report ON events
        (campaign, matched, event, send_id, timestamp, type, machine_open, url);
    DROP INDEX IF EXISTS events_campaign;
    """,
    # 3: no query looks sends up by address; the index only cost a random write per send
    3: """
    DROP INDEX IF EXISTS sends_email;
    """,
    # 4: editions. A yearly campaign is sent again every year: "already sent" is per edition,
    # so the edition joins the key of a send (SQLite cannot change a constraint: the table is
    # rebuilt). Rows written before have edition NULL until Ledger.assign_editions dates them
    # with the campaign's edition windows (the migration cannot read campaign files).
    4: """
    CREATE TABLE sends_v4 (
        send_id        TEXT PRIMARY KEY,
        campaign       TEXT NOT NULL,
        edition        INTEGER,
        step           TEXT NOT NULL,
        contact_id     TEXT NOT NULL,
        transport      TEXT NOT NULL,
        email          TEXT NOT NULL,
        status         TEXT NOT NULL CHECK (status IN ('pending','sent','failed','unknown','cancelled')),
        batch_id       TEXT,
        variant        TEXT,
        segment        TEXT,
        relationship   TEXT,
        country        TEXT,
        country_status TEXT,
        language       TEXT,
        message_id     TEXT,
        send_at        TEXT,
        error          TEXT,
        attempts       INTEGER NOT NULL DEFAULT 0,
        run_id         INTEGER,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        UNIQUE (campaign, edition, step, contact_id, transport)
    );
    INSERT INTO sends_v4 (send_id, campaign, step, contact_id, transport, email, status,
        batch_id, variant, segment, relationship, country, country_status, language, message_id,
        send_at, error, attempts, run_id, created_at, updated_at)
    SELECT send_id, campaign, step, contact_id, transport, email, status,
        batch_id, variant, segment, relationship, country, country_status, language, message_id,
        send_at, error, attempts, run_id, created_at, updated_at FROM sends ORDER BY rowid;
    DROP TABLE sends;
    ALTER TABLE sends_v4 RENAME TO sends;
    CREATE INDEX sends_batch ON sends (batch_id);
    CREATE INDEX sends_message ON sends (message_id);
    ALTER TABLE batches ADD COLUMN edition INTEGER;
    DROP INDEX IF EXISTS batches_step;
    CREATE INDEX batches_step ON batches (campaign, edition, step, transport);
    ALTER TABLE runs ADD COLUMN edition INTEGER;
    ALTER TABLE test_sends ADD COLUMN edition INTEGER;
    ALTER TABLE events ADD COLUMN edition INTEGER;
    DROP INDEX IF EXISTS events_report;
    CREATE INDEX events_report ON events
        (campaign, edition, matched, event, send_id, timestamp, type, machine_open, url);
    """,
}


def now_iso() -> str:
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    """The ledger's time format (UTC, milliseconds): text that sorts in time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


_ID_POOL: list[str] = []
os.register_at_fork(after_in_child=_ID_POOL.clear)  # a forked child must never reuse ids


def new_id() -> str:
    """An id of 32 hex digits (send ids, batch ids): 12 of time in milliseconds, then 20 random.

    The 80 random bits make a send id unguessable, so it can be the token of a one-click
    unsubscribe URL; the time prefix makes ledger inserts land at the end of the index instead
    of on a random page (1M sends: SQLite time 85 s → 51 s). Show or shorten ids by their
    random *end* (:func:`short_id`), never by their prefix. Random bytes come from the OS
    10 KiB at a time (one ``getrandom`` call per id cost about 10 µs here).
    """
    if not _ID_POOL:
        raw = os.urandom(10 * 1024)
        _ID_POOL.extend(raw[i : i + 10].hex() for i in range(0, len(raw), 10))
    return f"{time.time_ns() // 1_000_000:012x}{_ID_POOL.pop()}"


def short_id(id_: str) -> str:
    """The last 8 hex digits of an id: random, so short forms stay distinct."""
    return id_[-8:]


def sqlite_path(url: str, root: Path) -> Path:
    """``sqlite:///rel.db`` (relative to the workspace), ``sqlite:////abs.db`` or a plain path."""
    if "://" not in url:
        p = Path(url)
        return p if p.is_absolute() else root / p
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise LedgerError(
            f"unsupported database URL scheme {parsed.scheme!r}",
            where="OUTREACH_DB",
            hint="this version stores its ledger in SQLite: use sqlite:///path/to/outreach.db",
        )
    raw = unquote(parsed.path)
    if url.startswith("sqlite:////"):
        return Path("/" + raw.lstrip("/"))
    rel = raw[1:] if raw.startswith("/") else raw
    p = Path(rel)
    return p if p.is_absolute() else root / p


@dataclass(frozen=True, slots=True)
class Row:
    send_id: str
    contact_id: str
    email: str
    status: str
    batch_id: str | None
    message_id: str | None
    error: str | None


class Ledger:
    """Access to the workspace database. Open with :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self._lock_file: int | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, root: Path, *, create: bool = True) -> Ledger:
        path = sqlite_path(url, root)
        if not path.exists() and not create:
            raise LedgerError("no ledger yet", where=Location(path), hint="nothing has been sent")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            # big sends: batches of random-key inserts dirty thousands of pages; checkpointing
            # the WAL after every commit made inserts grow with the table (30% slower at 300k)
            conn.execute("PRAGMA cache_size = -131072")  # up to 128 MB
            conn.execute("PRAGMA wal_autocheckpoint = 20000")  # pages (80 MB)
        except sqlite3.OperationalError as exc:
            raise _explain(exc, path) from None
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"not an outreach database: {exc}", where=Location(path), hint="check OUTREACH_DB"
            ) from None
        ledger = cls(path, conn)
        ledger._migrate()
        return ledger

    def _migrate(self) -> None:
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger has schema version {version}; this outreach understands up to {SCHEMA_VERSION}",
                    where=Location(self.path),
                    hint="it was written by a newer outreach: upgrade outreach (pip install -U .)",
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                with self.transaction():
                    for statement in _statements(MIGRATIONS[target]):
                        self.conn.execute(statement)
                    self.conn.execute(f"PRAGMA user_version = {target}")
        except sqlite3.OperationalError as exc:
            raise _explain(exc, self.path) from None
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"not an outreach database: {exc}", where=Location(self.path)
            ) from None

    def close(self) -> None:
        self.release_send_lock()
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction. ``durable=False`` skips the fsync at commit: only for writes
        whose loss leaves a state the next run repairs safely (a sent batch that reads as
        pending is reconciled as unknown, never resent). The next durable commit flushes it."""
        if not durable:
            self.conn.execute("PRAGMA synchronous = NORMAL")
        try:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _explain(exc, self.path) from None
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
        finally:
            if not durable:
                self.conn.execute("PRAGMA synchronous = FULL")

    def check_writable(self) -> None:
        """Fail now, before a plan is shown, if another process holds the write lock."""
        with self.transaction():
            pass

    # -- exclusive send lock ---------------------------------------------------------------

    def acquire_send_lock(self, campaign: str) -> None:
        """Only one ``outreach send`` per ledger at a time (released by the OS on any exit)."""
        lock_path = self.path.with_name(self.path.name + ".send.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LedgerError(
                "another outreach send is running on this ledger"
                + (f" ({holder})" if holder else ""),
                where=Location(self.path),
                hint="wait for it to finish; it will send what is due",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"campaign {campaign}, pid {os.getpid()} on {socket.gethostname()}".encode(), 0
        )
        self._lock_file = fd

    def release_send_lock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    # -- runs ----------------------------------------------------------------------------

    def begin_run(self, campaign: str, edition: int, transport: str, options: dict) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs (campaign, edition, transport, started_at, options, host, pid) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    campaign,
                    edition,
                    transport,
                    now_iso(),
                    json.dumps(options, default=str),
                    socket.gethostname(),
                    os.getpid(),
                ),
            )
            return int(cur.lastrowid)

    def end_run(self, run_id: int, outcome: str) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?",
                (now_iso(), outcome, run_id),
            )

    # -- sends ---------------------------------------------------------------------------

    def rows(self, campaign: str, edition: int, step: str, transport: str) -> dict[str, Row]:
        """Existing ledger rows for a step of an edition, by contact id."""
        cur = self.conn.execute(
            "SELECT send_id, contact_id, email, status, batch_id, message_id, error FROM sends "
            "WHERE campaign = ? AND edition = ? AND step = ? AND transport = ?",
            (campaign, edition, step, transport),
        )
        return {r["contact_id"]: Row(*r) for r in cur}

    def pending_rows(self, campaign: str, transport: str) -> list[Row]:
        """Rows a crashed run left ``pending``, whatever their edition. Rows of a batch that was
        still ``queued`` (written ahead, never handed off) come back with status ``queued``."""
        cur = self.conn.execute(
            "SELECT s.send_id, s.contact_id, s.email, "
            "CASE WHEN b.status = 'queued' THEN 'queued' ELSE s.status END, "
            "s.batch_id, s.message_id, s.error FROM sends s "
            "LEFT JOIN batches b ON b.batch_id = s.batch_id "
            "WHERE s.campaign = ? AND s.transport = ? AND s.status = 'pending'",
            (campaign, transport),
        )
        return [Row(*r) for r in cur]

    def mark_pending(
        self,
        *,
        campaign: str,
        edition: int,
        step: str,
        transport: str,
        batch_id: str,
        variant: str,
        rows: Iterable[dict],
        run_id: int,
        provider_batch_id: str | None = None,
        queued: bool = False,
    ) -> None:
        """Write a batch's rows as ``pending`` (new rows, or failed/unknown rows being retried).

        ``queued``: the batch is written ahead of its hand-off; :meth:`mark_handed_off` must
        flip it before its request (until then a crash means "never sent")."""
        ts = now_iso()
        rows = list(rows)
        with self.transaction() as c:
            c.execute(
                "INSERT INTO batches (batch_id, campaign, edition, step, transport, variant, size, "
                "status, provider_batch_id, run_id, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    batch_id,
                    campaign,
                    edition,
                    step,
                    transport,
                    variant,
                    len(rows),
                    "queued" if queued else "pending",
                    provider_batch_id,
                    run_id,
                    ts,
                    ts,
                ),
            )
            c.executemany(
                """INSERT INTO sends (send_id, campaign, edition, step, contact_id, transport, email,
                       status, batch_id, variant, segment, relationship, country, country_status,
                       language, send_at, attempts, run_id, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
                   ON CONFLICT DO UPDATE SET
                       status = 'pending', batch_id = excluded.batch_id, variant = excluded.variant,
                       email = excluded.email, send_at = excluded.send_at, error = NULL,
                       attempts = sends.attempts + 1, run_id = excluded.run_id,
                       updated_at = excluded.updated_at
                   WHERE sends.status IN ('failed', 'unknown', 'cancelled')""",
                [
                    (
                        r["send_id"],
                        campaign,
                        edition,
                        step,
                        r["contact_id"],
                        transport,
                        r["email"],
                        batch_id,
                        variant,
                        r["segment"],
                        r["relationship"],
                        r["country"],
                        r["country_status"],
                        r["language"],
                        r.get("send_at"),
                        run_id,
                        ts,
                        ts,
                    )
                    for r in rows
                ],
            )
            n = c.execute(
                "SELECT count(*) FROM sends WHERE batch_id = ? AND status = 'pending'", (batch_id,)
            ).fetchone()[0]
            if n != len(rows):
                # a row was already sent or pending: refuse rather than risk a duplicate
                raise LedgerError(
                    f"batch {batch_id}: {len(rows) - n} recipient(s) are already sent or in flight",
                    where=Location(self.path),
                    hint="another process may be sending; run `outreach status` and try again",
                )

    def mark_handed_off(self, batch_id: str) -> None:
        """A ``queued`` batch is about to be handed off: from now on a crash leaves its rows
        ``unknown``, not "never sent". Committed durably before the request goes out."""
        ts = now_iso()
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE batches SET status = 'pending', updated_at = ? "
                "WHERE batch_id = ? AND status = 'queued'",
                (ts, batch_id),
            )
            if cur.rowcount != 1:
                raise LedgerError(
                    f"batch {batch_id} is not queued: it cannot be handed off",
                    where=Location(self.path),
                )

    def mark_sent(self, batch_id: str, message_ids: dict[str, str] | str | None) -> None:
        ts = now_iso()
        # not fsynced: if this is lost, the rows read as pending and become unknown, never resent
        with self.transaction(durable=False) as c:
            if isinstance(message_ids, dict):
                c.executemany(
                    "UPDATE sends SET status = 'sent', message_id = ?, updated_at = ? WHERE send_id = ? AND batch_id = ?",
                    [(mid, ts, sid, batch_id) for sid, mid in message_ids.items()],
                )
                batch_mid = None
            else:
                c.execute(
                    "UPDATE sends SET status = 'sent', message_id = ?, updated_at = ? WHERE batch_id = ? AND status = 'pending'",
                    (message_ids, ts, batch_id),
                )
                batch_mid = message_ids
            c.execute(
                "UPDATE batches SET status = 'sent', message_id = ?, updated_at = ? WHERE batch_id = ?",
                (batch_mid, ts, batch_id),
            )

    def mark_batch(self, batch_id: str, status: str, error: str) -> None:
        """Mark every pending row of a batch ``failed`` or ``unknown`` with a reason."""
        assert status in ("failed", "unknown", "cancelled")
        ts = now_iso()
        with self.transaction() as c:
            c.execute(
                "UPDATE sends SET status = ?, error = ?, updated_at = ? WHERE batch_id = ? AND status = 'pending'",
                (status, error, ts, batch_id),
            )
            c.execute(
                "UPDATE batches SET status = ?, error = ?, updated_at = ? WHERE batch_id = ?",
                (status, error, ts, batch_id),
            )

    def resolve_rows(self, outcomes: dict[str, tuple[str, str | None]]) -> None:
        """After a crash: set each pending row (by send id) to (status, message_id or reason).

        ``status`` is ``sent``, ``unknown`` or ``retry`` (never handed off: the row is deleted
        so the next plan treats the contact as not yet sent).
        """
        ts = now_iso()
        with self.transaction() as c:
            for send_id, (status, info) in outcomes.items():
                if status == "sent":
                    c.execute(
                        "UPDATE sends SET status = 'sent', message_id = ?, updated_at = ? WHERE send_id = ? AND status = 'pending'",
                        (info, ts, send_id),
                    )
                elif status == "unknown":
                    c.execute(
                        "UPDATE sends SET status = 'unknown', error = ?, updated_at = ? WHERE send_id = ? AND status = 'pending'",
                        (info, ts, send_id),
                    )
                elif status == "retry":
                    c.execute(
                        "UPDATE sends SET status = 'failed', error = ?, updated_at = ? WHERE send_id = ? AND status = 'pending'",
                        (info or "never handed off (interrupted run)", ts, send_id),
                    )
                else:
                    raise ValueError(status)
            c.execute(
                "UPDATE batches SET status = 'reconciled', updated_at = ? "
                "WHERE status IN ('pending', 'queued') AND batch_id IN "
                "(SELECT DISTINCT batch_id FROM sends WHERE status != 'pending')",
                (ts,),
            )

    def record_test_send(
        self,
        campaign: str,
        edition: int,
        step: str,
        variant: str,
        to: str,
        transport: str,
        mid: str | None,
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO test_sends (campaign, edition, step, variant, to_email, transport, "
                "message_id, sent_at) VALUES (?,?,?,?,?,?,?,?)",
                (campaign, edition, step, variant, to, transport, mid, now_iso()),
            )

    # -- queries -------------------------------------------------------------------------

    def step_counts(
        self, campaign: str, edition: int, transport: str | None = None
    ) -> dict[str, dict[str, int]]:
        """{step: {status: count}} for an edition (all transports unless one is given)."""
        sql = "SELECT step, status, count(*) FROM sends WHERE campaign = ? AND edition = ?"
        args: list = [campaign, edition]
        if transport:
            sql += " AND transport = ?"
            args.append(transport)
        out: dict[str, dict[str, int]] = {}
        for step, status, n in self.conn.execute(sql + " GROUP BY step, status", args):
            out.setdefault(step, {})[status] = n
        return out

    def transports_used(self, campaign: str, edition: int) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT transport FROM sends WHERE campaign = ? AND edition = ?",
                (campaign, edition),
            )
        ]

    def editions(self, campaign: str) -> dict[int, dict[str, int]]:
        """{edition: {status: count}} of every edition with ledger rows, oldest first."""
        out: dict[int, dict[str, int]] = {}
        for edition, status, n in self.conn.execute(
            "SELECT edition, status, count(*) FROM sends WHERE campaign = ? AND edition IS NOT NULL "
            "GROUP BY edition, status ORDER BY edition",
            (campaign,),
        ):
            out.setdefault(edition, {})[status] = n
        return out

    def sent_contacts(self, campaign: str, edition: int, step: str, transport: str) -> set[str]:
        cur = self.conn.execute(
            "SELECT contact_id FROM sends WHERE campaign = ? AND edition = ? AND step = ? "
            "AND transport = ? AND status = 'sent'",
            (campaign, edition, step, transport),
        )
        return {r[0] for r in cur}

    def engaged_contacts(
        self,
        campaign: str,
        edition: int,
        step: str,
        transport: str,
        kind: str,
        url: str | None = None,
    ) -> set[str]:
        """Contacts of a step with a human ``open`` or a ``click`` (optionally on ``url``)."""
        if kind == "open":
            # a click implies the message was opened by a person, even if the pixel was blocked
            cond = "((e.event = 'open' AND e.machine_open = 0) OR e.event = 'click')"
            args: list = []
        else:
            cond = "e.event = 'click'"
            args = []
            if url is not None:
                cond += " AND e.url = ?"
                args.append(url)
        cur = self.conn.execute(
            f"""SELECT DISTINCT s.contact_id FROM events e JOIN sends s ON s.send_id = e.send_id
                WHERE s.campaign = ? AND s.edition = ? AND s.step = ? AND s.transport = ? AND {cond}""",
            [campaign, edition, step, transport, *args],
        )
        return {r[0] for r in cur}

    def events_count(self, campaign: str, edition: int) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM events WHERE campaign = ? AND edition = ?", (campaign, edition)
        ).fetchone()[0]

    def suppressed(self) -> dict[str, str]:
        """{lower-case email: reason} of every active suppression."""
        return {r[0]: r[1] for r in self.conn.execute("SELECT email, reason FROM suppressions")}

    def sent_rows_for_index(
        self, campaign: str, edition: int, step: str, transport: str
    ) -> list[sqlite3.Row]:
        return list(
            self.conn.execute(
                "SELECT send_id, email, variant, language, country, country_status, relationship, message_id, updated_at "
                "FROM sends WHERE campaign = ? AND edition = ? AND step = ? AND transport = ? "
                "AND status = 'sent' ORDER BY updated_at",
                (campaign, edition, step, transport),
            )
        )

    # -- editions of rows written before schema 4 -----------------------------------------

    def undated(self, campaign: str) -> tuple[str, str] | None:
        """(earliest, latest) time of the campaign's rows without an edition, or None."""
        lo, hi = self.conn.execute(
            "SELECT min(created_at), max(created_at) FROM sends WHERE campaign = ? AND edition IS NULL",
            (campaign,),
        ).fetchone()
        lo2, hi2 = self.conn.execute(
            "SELECT min(started_at), max(started_at) FROM runs WHERE campaign = ? AND edition IS NULL",
            (campaign,),
        ).fetchone()
        times = [t for t in (lo, hi, lo2, hi2) if t]
        return (min(times), max(times)) if times else None

    def date_old_rows(self, campaign: Campaign) -> int:
        """Give rows written before editions existed (schema < 4) their edition, by the
        campaign's edition windows; returns how many sends were dated (0 almost always)."""
        span = self.undated(campaign.name)
        if span is None:
            return 0
        first, last = (datetime.fromisoformat(t) for t in span)
        return self.assign_editions(campaign.name, campaign.edition_windows(first, last))

    def assign_editions(self, campaign: str, windows: list[tuple[int, datetime, datetime]]) -> int:
        """Give the campaign's rows without an edition the edition whose window ``[start, end)``
        holds their time (sends and batches by creation, runs by start, test sends by sending,
        events by their send; an event that matches no send keeps none: reports place it by
        its timestamp)."""
        n = 0
        with self.transaction() as c:
            for edition, start, end in windows:
                lo, hi = _iso(start), _iso(end)
                for table, column in (
                    ("sends", "created_at"),
                    ("batches", "created_at"),
                    ("runs", "started_at"),
                    ("test_sends", "sent_at"),
                ):
                    cur = c.execute(
                        f"UPDATE {table} SET edition = ? WHERE campaign = ? AND edition IS NULL "
                        f"AND {column} >= ? AND {column} < ?",
                        (edition, campaign, lo, hi),
                    )
                    n += cur.rowcount if table == "sends" else 0
            c.execute(
                "UPDATE events SET edition = (SELECT s.edition FROM sends s "
                "WHERE s.send_id = events.send_id) WHERE campaign = ? AND edition IS NULL AND matched = 1",
                (campaign,),
            )
        return n


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _explain(exc: sqlite3.OperationalError, path: Path) -> LedgerError:
    msg = str(exc)
    if "locked" in msg or "busy" in msg:
        return LedgerError(
            "the ledger is locked by another process",
            where=Location(path),
            hint="another outreach command (or a database browser) holds it; close it and retry",
        )
    if "unable to open" in msg or "readonly" in msg or "read-only" in msg:
        return LedgerError(
            f"cannot open the ledger for writing ({msg})",
            where=Location(path),
            hint="check the folder exists and is writable, or set OUTREACH_DB",
        )
    return LedgerError(f"database error: {msg}", where=Location(path))
