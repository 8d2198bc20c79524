"""The store: every SQL statement outreach runs, behind named methods, for every backend.

:class:`Store` holds the statements, written once in the SQL that SQLite and PostgreSQL share
(``?`` placeholders; the PostgreSQL backend turns them into ``%s``). Its subclasses
(:mod:`outreach.store.sqlite`, :mod:`outreach.store.postgres`) connect, begin and commit,
translate errors into one-line :class:`~outreach.exceptions.LedgerError`s, take the send
lock, and provide the few statements whose fastest form differs (bulk inserts, ``IN`` lists).

The send protocol (the reason this store exists): every hand-off to a transport

1. writes the batch's rows ``pending`` and commits durably (:meth:`Store.mark_pending`);
2. lets the transport hand the batch over;
3. writes them ``sent`` (:meth:`Store.mark_sent`), ``failed`` or ``unknown``
   (:meth:`Store.mark_batch`).

A run that finds ``pending`` rows left by a crashed run asks the transport to reconcile them
(:meth:`Store.resolve_rows`). ``unknown`` rows are never resent without ``--resend-unknown``.

Transactions: each method commits on its own, unless it runs inside
``with store.transaction():``, which makes everything in it one transaction (it nests). No
connection or cursor ever leaves the store.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from outreach.exceptions import LedgerError, Location
from outreach.store.accounts import AccountStatements
from outreach.store.codes import (
    ALL_CAMPAIGNS,
    BatchStatus,
    PreferenceKind,
    PreferenceSource,
    SendStatus,
    SuppressionAction,
)
from outreach.store.ids import iso, now_iso
from outreach.store.url import StoreURL

if TYPE_CHECKING:
    from outreach.campaign import Campaign

T = TypeVar("T")

_APPLICATION = ["outreach"]

# backend name → a function making its store, not yet connected: (target, purpose, create).
# ``outreach.store`` fills it in, so that this module imports no backend (each imports it).
BACKENDS: dict[str, Callable[[StoreURL, str | None, bool], Store]] = {}


def application() -> str:
    """The name connections carry by default (PostgreSQL's ``application_name``)."""
    return _APPLICATION[0]


def set_application(name: str) -> None:
    """How this process names its connections (PostgreSQL's ``application_name``)."""
    _APPLICATION[0] = name


# the tables, in an order that `db copy` can fill (no foreign keys, but runs come first);
# staff sessions and failed logins are not copied (they are short-lived: people log in again)
TABLES = (
    "runs",
    "batches",
    "sends",
    "test_sends",
    "events",
    "suppressions",
    "suppression_log",
    "users",
    "api_tokens",
    "audit_log",
    "preferences",
)
# tables that `db copy` leaves behind but tests and `db status` may read
TRANSIENT_TABLES = ("sessions", "login_failures")
# tables whose integer id comes from the database (their sequence follows a copy)
SERIAL_TABLES = (
    "runs",
    "test_sends",
    "events",
    "suppression_log",
    "users",
    "audit_log",
    "preferences",
)

EVENT_COLUMNS = (
    "sg_event_id",
    "event",
    "email",
    "timestamp",
    "send_id",
    "campaign",
    "edition",
    "step",
    "contact_id",
    "message_id",
    "url",
    "type",
    "reason",
    "machine_open",
    "matched",
    "source",
    "received_at",
    "raw",
)

# each report event's kind, as its index in outreach.report.KINDS (bounce type and machine
# opens included): computed by the database, so that only small integers travel
REPORT_KIND_SQL = """CASE e.event
    WHEN 'delivered' THEN 0 WHEN 'deferred' THEN 1
    WHEN 'bounce' THEN (CASE WHEN lower(coalesce(e.type, '')) = 'blocked' THEN 3 ELSE 2 END)
    WHEN 'dropped' THEN 4
    WHEN 'open' THEN (CASE WHEN e.machine_open = 1 THEN 6 ELSE 5 END)
    WHEN 'click' THEN 7 WHEN 'unsubscribe' THEN 8 WHEN 'group_unsubscribe' THEN 8
    WHEN 'spamreport' THEN 9 END"""
REPORT_EVENT_NAMES = (
    "delivered",
    "deferred",
    "bounce",
    "dropped",
    "open",
    "click",
    "unsubscribe",
    "group_unsubscribe",
    "spamreport",
)
REPORT_SEND_COLUMNS = (
    "send_id",
    "step",
    "status",
    "segment",
    "relationship",
    "country",
    "country_status",
    "language",
)


@dataclass(frozen=True, slots=True)
class Row:
    send_id: str
    contact_id: str
    email: str
    status: str
    batch_id: str | None
    message_id: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class LockHolder:
    campaign: str
    host: str
    pid: int
    since: str

    def __str__(self) -> str:
        return f"campaign {self.campaign}, pid {self.pid} on {self.host}, since {self.since}"


@dataclass
class ReportRows:
    """What ``outreach report`` reads: an edition's sends and their (matched) events."""

    sends: list[tuple]  # REPORT_SEND_COLUMNS, ordered by send id
    events: list[tuple]  # (send_id, kind, ts, url)
    matched: int  # matched events of the campaign's edition (any kind)
    unmatched: int  # events that match no send, within the edition's time window
    # or the events as columns, only those of the sends (``events`` is then empty): each
    # one's send index, kind and timestamp; and the clicks that name a URL: send index, URL
    columns: tuple[list, list, list, list, list] | None = None


class StoreUnavailable(LedgerError):
    """The database cannot be reached now (a later call may succeed)."""


class StoreConflict(LedgerError):
    """A concurrent transaction got in the way (deadlock, serialization, unique key taken):
    :meth:`Store.atomic` runs the work again."""


class Store(AccountStatements):
    """One workspace's ledger and event store. Open with :meth:`open`; use as a context
    manager (closing releases the send lock)."""

    backend: ClassVar[str]
    PARAMS_PER_IN: ClassVar[int] = 500  # values per IN (...) list, where lists are used

    def __init__(self, target: StoreURL, purpose: str) -> None:
        self.target = target
        self.purpose = purpose
        self._depth = 0  # transaction nesting
        self._lock_held = False

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls, url: str, root: Any = None, *, create: bool = True, purpose: str | None = None
    ) -> Store:
        """Open the store at ``url`` (``OUTREACH_DB``), creating or upgrading its schema.

        ``purpose`` names the connection where the server shows it (PostgreSQL's
        ``application_name``), e.g. ``outreach send``."""
        from pathlib import Path

        from outreach.store import url as urls

        target = urls.parse(url, Path(root) if root is not None else Path.cwd())
        store = BACKENDS[target.backend](target, purpose, create)
        try:
            store._connect()
            from outreach.store.migrate import ensure_schema

            ensure_schema(store)
        except BaseException:
            store.close()
            raise
        return store

    @property
    def location(self) -> str:
        """Where the store is, as it may be shown (a path, or the URL without its password)."""
        return self.target.shown

    @property
    def where(self) -> Location | str:
        return Location(self.target.path) if self.target.path else self.location

    def close(self) -> None:
        self.release_send_lock()
        self._disconnect()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what a backend provides --------------------------------------------------------------

    def _connect(self) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def _begin(self, durable: bool) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _cursor_execute(self, sql: str, params: Sequence) -> Any:
        """Run one statement; returns a DBAPI cursor."""
        raise NotImplementedError

    def _cursor_executemany(self, sql: str, seq: Iterable[Sequence]) -> None:
        raise NotImplementedError

    def _translate(self, exc: Exception) -> LedgerError | None:
        """The user's error for a driver exception (None: not a database error)."""
        raise NotImplementedError

    def _lock(self, campaign: str) -> bool:
        """Take the exclusive send lock without waiting; False if someone holds it."""
        raise NotImplementedError

    def _unlock(self) -> None:
        raise NotImplementedError

    def revision(self) -> str | None:
        """The schema revision recorded in the database (None: an empty database)."""
        raise NotImplementedError

    def ping(self) -> None:
        """A cheap read that proves the database answers and is still outreach's (it reads the
        schema revision from the database itself, not a constant); raises LedgerError."""
        self._scalar("SELECT version_num FROM alembic_version")

    def check_writable(self) -> None:
        """Fail now, before a plan is shown, if the store cannot take a write."""
        with self.transaction():
            pass

    # -- statements (with errors translated) ------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except LedgerError:
            raise
        except Exception as exc:
            err = self._translate(exc)
            if err is None:
                raise
            raise err from None

    def _exec(self, sql: str, params: Sequence = ()) -> Any:
        return self._call(self._cursor_execute, sql, params)

    def _many(self, sql: str, seq: Iterable[Sequence]) -> None:
        self._call(self._cursor_executemany, sql, seq)

    def _all(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self._call(lambda: list(self._cursor_execute(sql, params)))

    def _one(self, sql: str, params: Sequence = ()) -> tuple | None:
        def run() -> tuple | None:
            rows = self._cursor_execute(sql, params).fetchall()  # consumed: RETURNING completes
            return rows[0] if rows else None

        return self._call(run)

    def _scalar(self, sql: str, params: Sequence = ()) -> Any:
        row = self._one(sql, params)
        return row[0] if row else None

    def _dicts(self, sql: str, params: Sequence = ()) -> list[dict]:
        def run() -> list[dict]:
            cur = self._cursor_execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur]

        return self._call(run)

    def _in(self, sql: str, values: Sequence, extra: Sequence = ()) -> Iterator[tuple]:
        """Rows of ``sql`` whose ``{in}`` is ``IN (…)`` over ``values`` (in chunks)."""
        for i in range(0, len(values), self.PARAMS_PER_IN):
            part = list(values[i : i + self.PARAMS_PER_IN])
            marks = ",".join("?" * len(part))
            yield from self._all(sql.replace("{in}", f"IN ({marks})"), [*extra, *part])

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """One write transaction around everything inside (nested calls join it).

        ``durable=False`` skips the flush to disk at commit: only for writes whose loss
        leaves a state the next run repairs safely (a sent batch that reads as pending is
        reconciled as unknown, never resent)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._call(self._begin, durable)
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with suppress(Exception):
                self._rollback()
            raise
        self._depth = 0
        self._call(self._commit)

    def atomic(self, work: Callable[[], T], attempts: int = 8) -> T:
        """``work()`` in one transaction, run again (after a short random pause) when a
        concurrent writer got in the way."""
        for attempt in range(attempts):
            try:
                with self.transaction():
                    return work()
            except StoreConflict:
                if attempt == attempts - 1 or self._depth:
                    raise
                time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
        raise AssertionError("unreachable")

    # -- the exclusive send lock ------------------------------------------------------------

    def acquire_send_lock(self, campaign: str) -> None:
        """Only one ``outreach send`` (or ``cancel``) per store at a time, across machines.
        Released on :meth:`close`, and by the OS or the server when the process dies."""
        if self._lock_held:
            return
        if not self._call(self._lock, campaign):
            holder = self.lock_holder()
            raise LedgerError(
                "another outreach send is running on this ledger"
                + (f" ({holder})" if holder else ""),
                where=self.where,
                hint="wait for it to finish; it will send what is due",
            )
        self._lock_held = True
        with self.transaction():
            self._exec("DELETE FROM send_lock")
            self._exec(
                "INSERT INTO send_lock (id, campaign, host, pid, since) VALUES (1, ?, ?, ?, ?)",
                (campaign, socket.gethostname(), os.getpid(), now_iso()),
            )

    def lock_holder(self) -> LockHolder | None:
        row = self._one("SELECT campaign, host, pid, since FROM send_lock WHERE id = 1")
        return LockHolder(*row) if row else None

    def release_send_lock(self) -> None:
        if self._lock_held:
            self._lock_held = False
            with suppress(Exception):
                self._unlock()

    # -- runs ---------------------------------------------------------------------------------

    def begin_run(self, campaign: str, edition: int, transport: str, options: dict) -> int:
        with self.transaction():
            return int(
                self._scalar(
                    "INSERT INTO runs (campaign, edition, transport, started_at, options, host, pid) "
                    "VALUES (?,?,?,?,?,?,?) RETURNING id",
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
            )

    def end_run(self, run_id: int, outcome: str) -> None:
        with self.transaction():
            self._exec(
                "UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?",
                (now_iso(), str(outcome), run_id),
            )

    # -- sends --------------------------------------------------------------------------------

    _ROW = "send_id, contact_id, email, status, batch_id, message_id, error"

    def rows(self, campaign: str, edition: int, step: str, transport: str) -> dict[str, Row]:
        """Existing rows for a step of an edition, by contact id."""
        found = self._all(
            f"SELECT {self._ROW} FROM sends "
            "WHERE campaign = ? AND edition = ? AND step = ? AND transport = ?",
            (campaign, edition, step, transport),
        )
        return {r[1]: Row(*r) for r in found}

    def pending_rows(self, campaign: str, transport: str) -> list[Row]:
        """Rows a crashed run left ``pending``, whatever their edition. Rows of a batch that was
        still ``queued`` (written ahead, never handed off) come back with status ``queued``."""
        found = self._all(
            "SELECT s.send_id, s.contact_id, s.email, "
            "CASE WHEN b.status = 'queued' THEN 'queued' ELSE s.status END, "
            "s.batch_id, s.message_id, s.error FROM sends s "
            "LEFT JOIN batches b ON b.batch_id = s.batch_id "
            "WHERE s.campaign = ? AND s.transport = ? AND s.status = ?",
            (campaign, transport, SendStatus.PENDING.value),
        )
        return [Row(*r) for r in found]

    _UPSERT_PENDING = """INSERT INTO sends (send_id, campaign, edition, step, contact_id,
            transport, email, status, batch_id, variant, segment, relationship, country,
            country_status, language, send_at, attempts, run_id, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
        ON CONFLICT (campaign, edition, step, contact_id, transport) DO UPDATE SET
            status = 'pending', batch_id = excluded.batch_id, variant = excluded.variant,
            email = excluded.email, send_at = excluded.send_at, error = NULL,
            attempts = sends.attempts + 1, run_id = excluded.run_id,
            updated_at = excluded.updated_at
        WHERE sends.status IN ('failed', 'unknown', 'cancelled')"""

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
        """Write a batch's rows ``pending`` (new rows, or failed/unknown rows being retried),
        durably: when this returns, the hand-off may begin.

        ``queued``: the batch is written ahead of its hand-off; :meth:`mark_handed_off` must
        flip it before its request (until then a crash means "never sent")."""
        ts = now_iso()
        params = [
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
        ]
        with self.transaction():
            self._exec(
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
                    len(params),
                    (BatchStatus.QUEUED if queued else BatchStatus.PENDING).value,
                    provider_batch_id,
                    run_id,
                    ts,
                    ts,
                ),
            )
            self._many(self._UPSERT_PENDING, params)
            n = self._scalar(
                "SELECT count(*) FROM sends WHERE batch_id = ? AND status = 'pending'", (batch_id,)
            )
            if n != len(params):
                # a row was already sent or pending: refuse rather than risk a duplicate
                raise LedgerError(
                    f"batch {batch_id}: {len(params) - n} recipient(s) are already sent or in flight",
                    where=self.where,
                    hint="another process may be sending; run `outreach status` and try again",
                )

    def mark_handed_off(self, batch_id: str) -> None:
        """A ``queued`` batch is about to be handed off: from now on a crash leaves its rows
        ``unknown``, not "never sent". Committed durably before the request goes out."""
        with self.transaction():
            cur = self._exec(
                "UPDATE batches SET status = 'pending', updated_at = ? "
                "WHERE batch_id = ? AND status = 'queued'",
                (now_iso(), batch_id),
            )
            if cur.rowcount != 1:
                raise LedgerError(
                    f"batch {batch_id} is not queued: it cannot be handed off", where=self.where
                )

    def mark_sent(self, batch_id: str, message_ids: dict[str, str] | str | None) -> None:
        """The batch was accepted: its rows become ``sent`` (with one message id for the
        batch, or one per send id). Not flushed to disk: if this is lost, the rows read as
        pending and are reconciled as unknown, never resent."""
        ts = now_iso()
        with self.transaction(durable=False):
            if isinstance(message_ids, dict):
                self._set_message_ids(batch_id, message_ids, ts)
                batch_mid = None
            else:
                self._exec(
                    "UPDATE sends SET status = 'sent', message_id = ?, updated_at = ? "
                    "WHERE batch_id = ? AND status = 'pending'",
                    (message_ids, ts, batch_id),
                )
                batch_mid = message_ids
            self._exec(
                "UPDATE batches SET status = 'sent', message_id = ?, updated_at = ? WHERE batch_id = ?",
                (batch_mid, ts, batch_id),
            )

    def _set_message_ids(self, batch_id: str, message_ids: dict[str, str], ts: str) -> None:
        self._many(
            "UPDATE sends SET status = 'sent', message_id = ?, updated_at = ? "
            "WHERE send_id = ? AND batch_id = ?",
            [(mid, ts, sid, batch_id) for sid, mid in message_ids.items()],
        )

    def mark_batch(self, batch_id: str, status: str, error: str) -> None:
        """Mark every pending row of a batch ``failed``, ``unknown`` or ``cancelled``."""
        status = SendStatus(status)
        if status not in (SendStatus.FAILED, SendStatus.UNKNOWN, SendStatus.CANCELLED):
            raise ValueError(status)
        ts = now_iso()
        with self.transaction():
            self._exec(
                "UPDATE sends SET status = ?, error = ?, updated_at = ? "
                "WHERE batch_id = ? AND status = 'pending'",
                (status.value, error, ts, batch_id),
            )
            self._exec(
                "UPDATE batches SET status = ?, error = ?, updated_at = ? WHERE batch_id = ?",
                (status.value, error, ts, batch_id),
            )

    def resolve_rows(self, outcomes: dict[str, tuple[str, str | None]]) -> None:
        """After a crash: set each pending row (by send id) to (status, message id or reason).

        ``status`` is ``sent``, ``unknown`` or ``retry`` (never handed off: the row becomes
        ``failed``, so the next plan sends it again)."""
        ts = now_iso()
        by: dict[str, list[tuple]] = {"sent": [], "unknown": [], "retry": []}
        for send_id, (status, info) in outcomes.items():
            if status not in by:
                raise ValueError(status)
            if status == "retry":
                info = info or "never handed off (interrupted run)"
            by[status].append((info, ts, send_id))
        with self.transaction():
            for status, column, new in (
                ("sent", "message_id", SendStatus.SENT),
                ("unknown", "error", SendStatus.UNKNOWN),
                ("retry", "error", SendStatus.FAILED),
            ):
                if by[status]:
                    self._many(
                        f"UPDATE sends SET status = '{new.value}', {column} = ?, updated_at = ? "
                        "WHERE send_id = ? AND status = 'pending'",
                        by[status],
                    )
            self._exec(
                "UPDATE batches SET status = 'reconciled', updated_at = ? "
                "WHERE status IN ('pending', 'queued') "
                "AND batch_id IN (SELECT DISTINCT batch_id FROM sends WHERE status != 'pending')",
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
        with self.transaction():
            self._exec(
                "INSERT INTO test_sends (campaign, edition, step, variant, to_email, transport, "
                "message_id, sent_at) VALUES (?,?,?,?,?,?,?,?)",
                (campaign, edition, step, variant, to, transport, mid, now_iso()),
            )

    # -- queries for plans and status ---------------------------------------------------------

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
        for step, status, n in self._all(sql + " GROUP BY step, status", args):
            out.setdefault(step, {})[status] = n
        return out

    def transports_used(self, campaign: str, edition: int) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT DISTINCT transport FROM sends WHERE campaign = ? AND edition = ? "
                "ORDER BY transport",
                (campaign, edition),
            )
        ]

    def editions(self, campaign: str) -> dict[int, dict[str, int]]:
        """{edition: {status: count}} of every edition with rows, oldest first."""
        out: dict[int, dict[str, int]] = {}
        for edition, status, n in self._all(
            "SELECT edition, status, count(*) FROM sends WHERE campaign = ? AND edition IS NOT NULL "
            "GROUP BY edition, status ORDER BY edition",
            (campaign,),
        ):
            out.setdefault(edition, {})[status] = n
        return out

    def sent_contacts(self, campaign: str, edition: int, step: str, transport: str) -> set[str]:
        return {
            r[0]
            for r in self._all(
                "SELECT contact_id FROM sends WHERE campaign = ? AND edition = ? AND step = ? "
                "AND transport = ? AND status = 'sent'",
                (campaign, edition, step, transport),
            )
        }

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
        args: list = []
        if kind == "open":
            # a click implies the message was opened by a person, even if the pixel was blocked
            cond = "((e.event = 'open' AND e.machine_open = 0) OR e.event = 'click')"
        else:
            cond = "e.event = 'click'"
            if url is not None:
                cond += " AND e.url = ?"
                args.append(url)
        return {
            r[0]
            for r in self._all(
                "SELECT DISTINCT s.contact_id FROM events e JOIN sends s ON s.send_id = e.send_id "
                "WHERE s.campaign = ? AND s.edition = ? AND s.step = ? AND s.transport = ? "
                f"AND {cond}",
                [campaign, edition, step, transport, *args],
            )
        }

    def events_count(self, campaign: str, edition: int) -> int:
        return int(
            self._scalar(
                "SELECT count(*) FROM events WHERE campaign = ? AND edition = ?",
                (campaign, edition),
            )
        )

    def suppressed(self) -> dict[str, str]:
        """{lower-case email: reason} of every active suppression."""
        return dict(self._all("SELECT email, reason FROM suppressions"))

    def sent_rows_for_index(
        self, campaign: str, edition: int, step: str, transport: str
    ) -> list[dict]:
        return self._dicts(
            "SELECT send_id, email, variant, language, country, country_status, relationship, "
            "message_id, updated_at FROM sends WHERE campaign = ? AND edition = ? AND step = ? "
            "AND transport = ? AND status = 'sent' ORDER BY updated_at, send_id",
            (campaign, edition, step, transport),
        )

    # -- editions of rows written before schema 4 --------------------------------------------

    def undated(self, campaign: str) -> tuple[str, str] | None:
        """(earliest, latest) time of the campaign's rows without an edition, or None."""
        lo, hi = self._one(
            "SELECT min(created_at), max(created_at) FROM sends WHERE campaign = ? AND edition IS NULL",
            (campaign,),
        ) or (None, None)
        lo2, hi2 = self._one(
            "SELECT min(started_at), max(started_at) FROM runs WHERE campaign = ? AND edition IS NULL",
            (campaign,),
        ) or (None, None)
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
        with self.transaction():
            for edition, start, end in windows:
                lo, hi = iso(start), iso(end)
                for table, column in (
                    ("sends", "created_at"),
                    ("batches", "created_at"),
                    ("runs", "started_at"),
                    ("test_sends", "sent_at"),
                ):
                    cur = self._exec(
                        f"UPDATE {table} SET edition = ? WHERE campaign = ? AND edition IS NULL "
                        f"AND {column} >= ? AND {column} < ?",
                        (edition, campaign, lo, hi),
                    )
                    n += cur.rowcount if table == "sends" else 0
            self._exec(
                "UPDATE events SET edition = (SELECT s.edition FROM sends s "
                "WHERE s.send_id = events.send_id) WHERE campaign = ? AND edition IS NULL "
                "AND matched = 1",
                (campaign,),
            )
        return n

    # -- events -------------------------------------------------------------------------------

    def sends_by_id(self, send_ids: Sequence[str]) -> dict[str, tuple]:
        """{send_id: (send_id, campaign, edition, step, contact_id)} of the rows that exist."""
        return {
            r[0]: r
            for r in self._in(
                "SELECT send_id, campaign, edition, step, contact_id FROM sends WHERE send_id {in}",
                send_ids,
            )
        }

    def sends_by_message_id(self, message_ids: Sequence[str]) -> list[tuple]:
        """(send_id, campaign, edition, step, contact_id, message_id, email) of the rows whose
        message id is one of ``message_ids``."""
        return list(
            self._in(
                "SELECT send_id, campaign, edition, step, contact_id, message_id, email "
                "FROM sends WHERE message_id {in}",
                message_ids,
            )
        )

    def insert_events(self, rows: Sequence[Sequence]) -> set[str]:
        """Store events (tuples in :data:`EVENT_COLUMNS` order, each ``sg_event_id`` once);
        returns the ids that were new. An id already stored is left as it is: the unique
        index on ``sg_event_id`` decides, whatever other process inserts at the same time."""
        raise NotImplementedError

    def find_send(self, send_id: str) -> tuple | None:
        """(send_id, email, campaign, step, language) of a send, or None."""
        return self._one(
            "SELECT send_id, email, campaign, step, language FROM sends WHERE send_id = ?",
            (send_id,),
        )

    def event_rows(self, **where: Any) -> list[dict]:
        """Stored events as dicts (tests, ``db``): ``where`` compares columns for equality."""
        return self.table_rows("events", **where)

    # -- suppressions -------------------------------------------------------------------------

    def suppression(self, email: str) -> tuple[str, str] | None:
        """(reason, created_at) of an address's active suppression, locked for this
        transaction where the backend has row locks."""
        return self._one(
            "SELECT reason, created_at FROM suppressions WHERE email = ?" + self._FOR_UPDATE,
            (email,),
        )

    _FOR_UPDATE = ""

    def suppress(
        self,
        email: str,
        reason: str,
        *,
        source: str,
        who: str | None,
        why: str | None,
        at: str,
        replace: bool,
    ) -> None:
        """Write an address's suppression (``replace``: over an existing one) and log it."""
        with self.transaction():
            if replace:
                self._exec(
                    "UPDATE suppressions SET reason = ?, source = ?, detail = ?, created_at = ?, "
                    "created_by = ? WHERE email = ?",
                    (reason, source, why, at, who, email),
                )
            else:
                self._exec(
                    "INSERT INTO suppressions (email, reason, source, detail, created_at, "
                    "created_by) VALUES (?,?,?,?,?,?)",
                    (email, reason, source, why, at, who),
                )
            action = SuppressionAction.REPLACE if replace else SuppressionAction.ADD
            self._log_suppression(email, action, reason, source, who, why)

    def suppressions_of(self, emails: Sequence[str]) -> dict[str, tuple[str, str]]:
        """{email: (reason, created_at)} of the active suppressions among ``emails``, locked
        for this transaction where the backend has row locks (pass them sorted: concurrent
        callers then lock in one order)."""
        sql = "SELECT email, reason, created_at FROM suppressions WHERE email {in} ORDER BY email"
        return {r[0]: (r[1], r[2]) for r in self._in(sql + self._FOR_UPDATE, emails)}

    def write_suppressions(
        self,
        rows: dict[str, tuple | None],
        existed: Container[str],
        log: Sequence[tuple[str, SuppressionAction, str, str, str | None, str | None]],
    ) -> None:
        """Several addresses' suppressions at once: ``rows`` maps an address to its final
        (reason, source, detail, created_at, created_by), or None when it has none any more;
        ``existed`` says which had one before; ``log`` holds every change in order as
        (email, action, reason, source, who, why)."""
        with self.transaction():
            gone = [(e,) for e, r in rows.items() if r is None and e in existed]
            changed = [(*r, e) for e, r in rows.items() if r is not None and e in existed]
            new = [(e, *r) for e, r in rows.items() if r is not None and e not in existed]
            if gone:
                self._many("DELETE FROM suppressions WHERE email = ?", gone)
            if changed:
                self._many(
                    "UPDATE suppressions SET reason = ?, source = ?, detail = ?, created_at = ?, "
                    "created_by = ? WHERE email = ?",
                    changed,
                )
            if new:
                self._many(
                    "INSERT INTO suppressions (email, reason, source, detail, created_at, "
                    "created_by) VALUES (?,?,?,?,?,?)",
                    new,
                )
            if log:
                at = now_iso()
                self._many(
                    "INSERT INTO suppression_log (email, action, reason, source, who, at, note) "
                    "VALUES (?,?,?,?,?,?,?)",
                    [(e, a.value, r, src, who, at, why) for e, a, r, src, who, why in log],
                )

    def lift(
        self, email: str, reason: str, *, source: str, who: str | None, why: str | None
    ) -> None:
        """Remove an address's suppression (whose reason was ``reason``) and log it."""
        with self.transaction():
            self._exec("DELETE FROM suppressions WHERE email = ?", (email,))
            self._log_suppression(email, SuppressionAction.REMOVE, reason, source, who, why)

    def _log_suppression(
        self,
        email: str,
        action: SuppressionAction,
        reason: str,
        source: str,
        who: str | None,
        why: str | None,
    ) -> None:
        self._exec(
            "INSERT INTO suppression_log (email, action, reason, source, who, at, note) "
            "VALUES (?,?,?,?,?,?,?)",
            (email, action.value, reason, source, who, now_iso(), why),
        )

    def suppression_rows(self, email: str | None = None) -> list[tuple]:
        """(email, reason, source, detail, created_at, created_by), newest first."""
        sql = "SELECT email, reason, source, detail, created_at, created_by FROM suppressions"
        args: tuple = ()
        if email:
            sql += " WHERE email = ?"
            args = (email,)
        return self._all(sql + " ORDER BY created_at DESC, email", args)

    def suppression_history(self, email: str | None = None) -> list[dict]:
        """The suppression log (optionally of one address), oldest first."""
        sql = "SELECT email, action, reason, source, who, at, note FROM suppression_log"
        args: tuple = ()
        if email:
            sql += " WHERE email = ?"
            args = (email,)
        return self._dicts(sql + " ORDER BY id", args)

    # -- recipients' preferences -------------------------------------------------------------

    def add_preference(
        self,
        email: str,
        campaign: str,
        kind: PreferenceKind,
        language: str | None,
        *,
        source: PreferenceSource,
        send_id: str | None,
        client: str | None,
        at: str,
    ) -> None:
        """Record one choice of a recipient (``campaign``: a name, or ``*`` for every mailing)."""
        with self.transaction():
            self._exec(
                "INSERT INTO preferences (email, campaign, kind, language, created_at, source, "
                "send_id, client) VALUES (?,?,?,?,?,?,?,?)",
                (
                    email.lower(),
                    campaign,
                    PreferenceKind(kind).value,
                    language,
                    at,
                    PreferenceSource(source).value,
                    send_id,
                    client,
                ),
            )

    def campaign_preferences(self, campaign: str) -> list[tuple[str, str, str, str | None]]:
        """(email, campaign, kind, language) of every choice that concerns ``campaign`` (its
        own, and those about every mailing), oldest first."""
        return self._all(
            "SELECT email, campaign, kind, language FROM preferences "
            "WHERE campaign IN (?, ?) ORDER BY id",
            (campaign, ALL_CAMPAIGNS),
        )

    def preference_rows(self, email: str | None = None) -> list[dict]:
        """Recorded choices (optionally of one address), oldest first."""
        sql = (
            "SELECT email, campaign, kind, language, created_at, source, send_id, client "
            "FROM preferences"
        )
        args: tuple = ()
        if email:
            sql += " WHERE email = ?"
            args = (email.lower(),)
        return self._dicts(sql + " ORDER BY id", args)

    # -- scheduled sends ----------------------------------------------------------------------

    def scheduled_rows(
        self, campaign: str, edition: int, step: str, transport: str
    ) -> list[tuple[str, str | None, str]]:
        """(send_id, send_at, provider batch id) of a step's rows handed to a provider's
        scheduler (sent or unknown, in a batch with a provider batch id)."""
        return self._all(
            """SELECT s.send_id, s.send_at, b.provider_batch_id
               FROM sends s JOIN batches b ON b.batch_id = s.batch_id
               WHERE s.campaign = ? AND s.edition = ? AND s.step = ? AND s.transport = ?
                 AND s.status IN ('sent', 'unknown') AND b.provider_batch_id IS NOT NULL
               ORDER BY s.send_id""",
            (campaign, edition, step, transport),
        )

    def mark_cancelled(
        self,
        send_ids: Sequence[str],
        reason: str,
        *,
        provider_batch_id: str,
        campaign: str,
        edition: int,
        step: str,
    ) -> None:
        """Rows whose scheduled delivery was cancelled; their batches too once every row is."""
        ts = now_iso()
        with self.transaction():
            self._many(
                "UPDATE sends SET status = 'cancelled', error = ?, updated_at = ? "
                "WHERE send_id = ? AND status IN ('sent', 'unknown')",
                [(reason, ts, sid) for sid in send_ids],
            )
            self._exec(
                """UPDATE batches SET status = 'cancelled', updated_at = ?
                   WHERE provider_batch_id = ? AND campaign = ? AND edition = ? AND step = ?
                     AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.batch_id = batches.batch_id
                                     AND s.status != 'cancelled')""",
                (ts, provider_batch_id, campaign, edition, step),
            )

    # -- the report ---------------------------------------------------------------------------

    def report_rows(
        self,
        campaign: str,
        edition: int,
        transport: str | None,
        step: str | None,
        window: tuple[int, int],
    ) -> ReportRows:
        """An edition's sends (one transport, optionally one step) and their matched events;
        ``window`` (Unix seconds) places events that match no send."""
        where = "s.campaign = ? AND s.edition = ? AND s.transport = ?"
        args: list = [campaign, edition, transport or ""]
        if step:
            where += " AND s.step = ?"
            args.append(step)
        sends = self._all(
            f"SELECT {', '.join('s.' + c for c in REPORT_SEND_COLUMNS)} FROM sends s "
            f"WHERE {where} ORDER BY s.send_id",
            args,
        )
        marks = ",".join("?" * len(REPORT_EVENT_NAMES))
        # no join (a lookup per event is the slowest part): the caller matches send ids
        events = self._all(
            f"SELECT e.send_id, {REPORT_KIND_SQL}, e.timestamp, e.url FROM events e "
            f"WHERE e.campaign = ? AND e.edition = ? AND e.matched = 1 AND e.event IN ({marks})",
            [campaign, edition, *REPORT_EVENT_NAMES],
        )
        step_sql = " AND step = ?" if step else ""
        step_arg = [step] if step else []
        matched = self._scalar(
            "SELECT count(*) FROM events WHERE campaign = ? AND edition = ? AND matched = 1"
            + step_sql,
            [campaign, edition, *step_arg],
        )
        unmatched = self._scalar(
            "SELECT count(*) FROM events WHERE campaign = ? AND matched = 0 "
            "AND timestamp >= ? AND timestamp < ?" + step_sql,
            [campaign, window[0], window[1], *step_arg],
        )
        return ReportRows(sends, events, int(matched), int(unmatched))

    # -- the staff dashboard ------------------------------------------------------------------

    def data_version(self) -> tuple[int, int, str]:
        """A cheap fingerprint of what reports are computed from: (last event id, sends, last
        change to a send). It changes whenever an event is stored or a send is written or
        changes status; the dashboard keys its cached reports on it."""
        last_event = self._scalar("SELECT max(id) FROM events")
        n, changed = self._one("SELECT count(*), max(updated_at) FROM sends") or (0, None)
        return (int(last_event or 0), int(n or 0), str(changed or ""))

    def refresh_statistics(self) -> None:
        """Give the query planner fresh statistics after a bulk load (PostgreSQL's ANALYZE;
        autovacuum does it by itself where it is on). SQLite: nothing (its plans are fixed by
        the indexes)."""

    def step_send_times(
        self, campaign: str, edition: int, transport: str | None = None
    ) -> list[tuple[str, str, str | None, int]]:
        """(step, status, send_at, count) of an edition's sends (all transports unless one is
        given): ``send_at`` is the time a provider was asked to deliver at (None: at once)."""
        sql = "SELECT step, status, send_at, count(*) FROM sends WHERE campaign = ? AND edition = ?"
        args: list = [campaign, edition]
        if transport:
            sql += " AND transport = ?"
            args.append(transport)
        return [
            (r[0], r[1], r[2], int(r[3]))
            for r in self._all(sql + " GROUP BY step, status, send_at", args)
        ]

    def contact_sends(self, email: str) -> list[dict]:
        """Every send to ``email`` (lower case), oldest first. No index on the address: a scan
        of ``sends`` (milliseconds at 100k rows; a look-up by a person, not by a program)."""
        return self._dicts(
            "SELECT send_id, campaign, edition, step, transport, status, variant, language, "
            "segment, country, send_at, error, created_at, updated_at FROM sends "
            "WHERE email = ? ORDER BY created_at, send_id",
            (email,),
        )

    def contact_events(self, send_ids: Sequence[str]) -> list[dict]:
        """The stored events of these sends, in time order."""
        cols = ("send_id", "event", "timestamp", "url", "type", "reason", "machine_open")
        rows = list(
            self._in(f"SELECT {', '.join(cols)} FROM events WHERE send_id {{in}}", send_ids)
        )
        out = [dict(zip(cols, r, strict=True)) for r in rows]
        out.sort(key=lambda e: (e["timestamp"] is None, e["timestamp"] or 0))
        return out

    # -- administration: `outreach db`, copies, tests ----------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {t: int(self._scalar(f"SELECT count(*) FROM {t}")) for t in TABLES}

    def is_empty(self) -> bool:
        return not any(self._one(f"SELECT 1 FROM {t} LIMIT 1") for t in TABLES)

    def columns(self, table: str) -> list[str]:
        _check_table(table)
        cur = self._exec(f"SELECT * FROM {table} WHERE 1 = 0")
        return [d[0] for d in cur.description]

    def table_rows(self, table: str, **where: Any) -> list[dict]:
        """A table's rows as dicts, in insertion order where the table has one; ``where``
        compares columns for equality (``None`` matches NULL)."""
        _check_table(table)
        cols = set(self.columns(table))
        conds, args = [], []
        for name, value in where.items():
            if name not in cols:
                raise ValueError(f"{table} has no column {name!r}")
            if value is None:
                conds.append(f"{name} IS NULL")
            else:
                conds.append(f"{name} = ?")
                args.append(value)
        sql = f"SELECT * FROM {table}" + (" WHERE " + " AND ".join(conds) if conds else "")
        return self._dicts(sql + f" ORDER BY {_ORDER[table]}", args)

    def read_table(self, table: str, batch: int = 10_000) -> Iterator[list[tuple]]:
        """A table's rows (all columns, in :meth:`columns` order), ``batch`` at a time."""
        _check_table(table)
        yield from self._call(
            self._read_batches, f"SELECT * FROM {table} ORDER BY {_ORDER[table]}", batch
        )

    def _read_batches(self, sql: str, batch: int) -> Iterator[list[tuple]]:
        cur = self._cursor_execute(sql, ())
        while True:
            part = cur.fetchmany(batch)
            if not part:
                return
            yield part

    def write_table(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        """Append rows as they are (ids included): for copies between stores."""
        _check_table(table)
        marks = ",".join("?" * len(columns))
        self._many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def after_copy(self) -> None:
        """Make generated ids continue after the copied ones."""


_ORDER = {
    "runs": "id",
    "batches": "created_at, batch_id",
    "sends": "created_at, send_id",
    "test_sends": "id",
    "events": "id",
    "suppressions": "email",
    "suppression_log": "id",
    "users": "id",
    "api_tokens": "created_at, id",
    "audit_log": "id",
    "preferences": "id",
    "sessions": "created_at, id",
    "login_failures": "id",
}


def _check_table(table: str) -> None:
    if table not in TABLES and table not in TRANSIENT_TABLES:
        raise ValueError(f"no table {table!r}")
