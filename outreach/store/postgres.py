"""The shared store: PostgreSQL through psycopg 3.

One connection per store object, opened at once and again on the next call after it is lost
(a server restart, ``pg_terminate_backend``, a network cut), so that a long-running
``events serve`` recovers by itself. A store that holds the send lock never reconnects: the
lock went with the connection, so the send stops with a clear message before its next
hand-off instead of carrying on unprotected. No pool: every process (a CLI command, each
server worker) has its own connection, and pools wait with timed waits that libfaketime
(which the tests run under) never ends.

Bulk paths: a batch's ``pending`` rows go in one pipelined ``executemany``; events are
``COPY``'d into a temporary table (``ON COMMIT DELETE ROWS``: emptied by truncation at each
commit, so it never grows), then moved with one ``INSERT … ON CONFLICT DO NOTHING
RETURNING``, which says which ids were new whatever other process inserts concurrently; a
batch's per-recipient message ids are one ``UPDATE … FROM unnest(…)``. A batch's events find
their sends by one index probe per id (``unnest`` joined ``LATERAL``), never a scan of the
table: with ``= ANY(…)`` the planner scanned all of ``sends`` for every webhook batch whenever
it judged the table small or had no statistics yet (a freshly loaded ledger).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.pq import TransactionStatus

from outreach.exceptions import LedgerError
from outreach.store.base import (
    EVENT_COLUMNS,
    SERIAL_TABLES,
    ReportRows,
    Store,
    StoreConflict,
    StoreUnavailable,
)
from outreach.store.url import StoreURL, redact_url

CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise
LOCK_CLASS = 0x6F75  # advisory lock namespace ("ou"); the key is the database and schema
_CONFLICTS = (
    pgerrors.DeadlockDetected,
    pgerrors.SerializationFailure,
    pgerrors.UniqueViolation,
    pgerrors.LockNotAvailable,
)
_LOCK_KEY = "hashtext(current_database() || '.' || current_schema())"


class PostgresStore(Store):
    backend = "postgresql"
    PARAMS_PER_IN = 100_000  # one array parameter: no chunks needed

    def __init__(self, target: StoreURL, purpose: str) -> None:
        super().__init__(target, purpose)
        self.conn: psycopg.Connection | None = None
        self._sql: dict[str, str] = {}
        self._staging = False  # the temporary table for event inserts exists
        self._staged = False  # it holds rows of this transaction (emptied at commit)

    # -- connection ---------------------------------------------------------------------------

    def _connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"application_name": self.purpose[:63]}
        if "connect_timeout" not in self.target.url:
            args["connect_timeout"] = CONNECT_TIMEOUT
        return args

    def _connect(self) -> None:
        try:
            self.conn = psycopg.connect(self.target.url, autocommit=True, **self._connect_args())
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot connect to the database: {self._reason(exc)}",
                where=self.location,
                hint="check that PostgreSQL is running and reachable and that OUTREACH_DB is "
                "right (user, password, host, port, database); then run the command again",
            ) from None
        self._staging = self._staged = False  # temporary tables go with the connection

    def _disconnect(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def _live(self) -> psycopg.Connection:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        if self._lock_held:
            raise StoreUnavailable(
                "the connection to the database was lost, and the send lock with it",
                where=self.location,
                hint="the send stopped before its next hand-off; when the database is back, "
                "run the same command again: it reconciles and sends only what is missing",
            )
        self._connect()
        assert self.conn is not None
        return self.conn

    def _reason(self, exc: Exception) -> str:
        text = str(exc).strip().splitlines()
        return redact_url(text[0] if text else exc.__class__.__name__)

    # -- transactions -------------------------------------------------------------------------

    def _begin(self, durable: bool) -> None:
        conn = self._live()
        conn.execute("BEGIN")
        if not durable:
            conn.execute("SET LOCAL synchronous_commit = off")

    def _commit(self) -> None:
        self._live().execute("COMMIT")
        self._staged = False

    def _rollback(self) -> None:
        # a rollback also undoes a CREATE TEMP TABLE of this transaction: create it again
        self._staging = self._staged = False
        conn = self.conn
        if conn is None or conn.closed:
            return
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")

    # -- statements ---------------------------------------------------------------------------

    def _q(self, sql: str) -> str:
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return q

    def _cursor_execute(self, sql: str, params: Sequence) -> Any:
        return self._live().execute(self._q(sql), params)  # type: ignore[arg-type]

    def _cursor_executemany(self, sql: str, seq: Iterable[Sequence]) -> None:
        with self._live().cursor() as cur:
            cur.executemany(self._q(sql), seq)  # type: ignore[arg-type]  # pipelined by psycopg

    def _in(self, sql: str, values: Sequence, extra: Sequence = ()) -> Iterator[tuple]:
        if not values:
            return iter(())
        return iter(self._all(sql.replace("{in}", "= ANY(?)"), [*extra, list(values)]))

    def _translate(self, exc: Exception) -> LedgerError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        reason = self._reason(exc)
        if isinstance(exc, _CONFLICTS):
            return StoreConflict(
                f"a concurrent write got in the way: {reason}", where=self.location
            )
        if isinstance(exc, psycopg.OperationalError) or (
            self.conn is not None and (self.conn.closed or self.conn.broken)
        ):
            self._drop()
            return StoreUnavailable(
                f"lost the connection to the database: {reason}",
                where=self.location,
                hint="check that PostgreSQL is running and reachable; run the command again "
                "when it is (nothing is lost: what was not committed is done again)",
            )
        if isinstance(exc, pgerrors.ReadOnlySqlTransaction):
            return LedgerError(
                "the database is read-only",
                where=self.location,
                hint="point OUTREACH_DB at the primary server, not a replica",
            )
        if isinstance(exc, pgerrors.InsufficientPrivilege):
            return LedgerError(
                f"the database user may not do this: {reason}",
                where=self.location,
                hint="grant the user rights on the database (it creates and alters its tables)",
            )
        return LedgerError(f"database error: {reason}", where=self.location)

    def _drop(self) -> None:
        """Forget a broken connection (the next call reconnects, unless the lock was held)."""
        conn, self.conn = self.conn, None
        self._depth = 0
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def ping(self) -> None:
        self._scalar("SELECT 1")

    def check_writable(self) -> None:
        row = self._one("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
        if row and (row[0] or row[1] == "on"):
            raise LedgerError(
                "the database is read-only",
                where=self.location,
                hint="point OUTREACH_DB at the primary server, not a replica",
            )

    # -- the send lock ------------------------------------------------------------------------

    def _lock(self, campaign: str) -> bool:
        return bool(self._scalar(f"SELECT pg_try_advisory_lock({LOCK_CLASS}, {_LOCK_KEY})"))

    def _unlock(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.execute(f"SELECT pg_advisory_unlock({LOCK_CLASS}, {_LOCK_KEY})")

    # -- schema -------------------------------------------------------------------------------

    def revision(self) -> str | None:
        if not self._scalar("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return None
        return self._scalar("SELECT version_num FROM alembic_version")

    def _sqlalchemy_creator(self):
        url, args = self.target.url, self._connect_args()

        def creator() -> psycopg.Connection:
            return psycopg.connect(url, **args)

        return "postgresql+psycopg://", creator

    # -- bulk paths ---------------------------------------------------------------------------

    _FOR_UPDATE = " FOR UPDATE"

    def _set_message_ids(self, batch_id: str, message_ids: dict[str, str], ts: str) -> None:
        self._exec(
            "UPDATE sends SET status = 'sent', message_id = v.mid, updated_at = ? "
            "FROM unnest(?::text[], ?::text[]) AS v(sid, mid) "
            "WHERE sends.send_id = v.sid AND sends.batch_id = ?",
            (ts, list(message_ids), list(message_ids.values()), batch_id),
        )

    def sends_by_id(self, send_ids: Sequence[str]) -> dict[str, tuple]:
        return {
            r[0]: r
            for r in self._probe(
                "send_id, campaign, edition, step, contact_id FROM sends WHERE send_id = v.k "
                "LIMIT 1",
                send_ids,
            )
        }

    def sends_by_message_id(self, message_ids: Sequence[str]) -> list[tuple]:
        return self._probe(
            "send_id, campaign, edition, step, contact_id, message_id, email FROM sends "
            "WHERE message_id = v.k OFFSET 0",
            message_ids,
        )

    def _probe(self, select: str, keys: Sequence[str]) -> list[tuple]:
        """``SELECT {select}`` once per key (``v.k``), each an index probe: ``LIMIT``/``OFFSET``
        keep the subquery a loop over the keys instead of a join the planner may hash."""
        if not keys:
            return []
        return self._all(
            f"SELECT s.* FROM unnest(?::text[]) AS v(k) CROSS JOIN LATERAL (SELECT {select}) s",
            (list(keys),),
        )

    def insert_events(self, rows: Sequence[Sequence]) -> set[str]:
        if not rows:
            return set()
        cols = ", ".join(EVENT_COLUMNS)

        def run() -> set[str]:
            conn = self._live()
            with self.transaction():
                if not self._staging:
                    # emptied at commit by truncation: a DELETE left its pages behind, which
                    # autovacuum never visits in a temporary table, so it grew by every batch
                    # (70 MB per 100,000 events) and each INSERT below read all of it again
                    conn.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS events_in ON COMMIT DELETE ROWS AS "
                        f"SELECT {cols} FROM events WITH NO DATA"
                    )
                    self._staging = True
                elif self._staged:  # a second batch in one transaction
                    conn.execute("DELETE FROM events_in")
                self._staged = True
                with conn.cursor() as cur:
                    with cur.copy(f"COPY events_in ({cols}) FROM STDIN") as copy:
                        for r in rows:
                            copy.write_row(r)
                    # in id order: concurrent inserters lock the index in one order (no deadlock)
                    cur.execute(
                        f"INSERT INTO events ({cols}) SELECT {cols} FROM events_in "
                        "ORDER BY sg_event_id ON CONFLICT (sg_event_id) DO NOTHING "
                        "RETURNING sg_event_id"
                    )
                    return {r[0] for r in cur.fetchall()}

        return self._call(run)

    def refresh_statistics(self) -> None:
        self._exec("ANALYZE sends")
        self._exec("ANALYZE events")

    # -- the report ---------------------------------------------------------------------------

    def report_rows(self, campaign, edition, transport, step, window) -> ReportRows:
        """As on SQLite, but the database joins each event to its send and returns the send's
        index, not its 32-character id (a million fewer strings to parse and look up), read in
        binary from one snapshot (so that both lists agree).

        One pass over the edition's matched events, which also counts them (the ``matched``
        figure; with ``step``, whose count is by the events' own step, a count of its
        own)."""
        from outreach.store.base import REPORT_KIND_SQL, REPORT_SEND_COLUMNS

        where = "s.campaign = %s AND s.edition = %s AND s.transport = %s"
        args: list = [campaign, edition, transport or ""]
        if step:
            where += " AND s.step = %s"
            args.append(step)
        step_sql = " AND step = %s" if step else ""
        step_arg = [step] if step else []
        # with one step, the events of the other steps' sends are not needed for the count
        join = "JOIN" if step else "LEFT JOIN"

        def run() -> ReportRows:
            conn = self._live()
            with self.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                # plans that hold without statistics (a freshly loaded ledger, autovacuum off
                # or not yet run: the planner guesses one row everywhere):
                # - the join is always a bulk one: a nested loop re-ran the numbering of every
                #   send per event (> 7 minutes for 1M events instead of seconds);
                # - no index scans while most of the events table is not known all-visible
                #   (before its first VACUUM): an index-only scan of the covering
                #   ``events_report`` index then fetches every row from the table in index
                #   order, at random (5 s per pass over 1M events), where a bitmap or
                #   sequential scan reads the table in its order (< 1 s); once vacuumed, the
                #   index-only scan is the fastest (2.6 s against 3.3 s for the whole pass);
                # - memory for the join's and the sort's 200,000 sends, not temporary files.
                conn.execute("SET LOCAL enable_nestloop = off")
                pages, visible = conn.execute(
                    "SELECT relpages, relallvisible FROM pg_class WHERE oid = to_regclass('events')"
                ).fetchone() or (0, 0)
                if not pages or visible * 2 < pages:
                    conn.execute("SET LOCAL enable_indexscan = off")
                    conn.execute("SET LOCAL enable_indexonlyscan = off")
                conn.execute("SET LOCAL work_mem = '64MB'")
                with conn.cursor(binary=True) as cur:
                    cols = ", ".join("s." + c for c in REPORT_SEND_COLUMNS)
                    cur.execute(
                        f"SELECT {cols} FROM sends s WHERE {where} ORDER BY s.send_id", args
                    )
                    sends = cur.fetchall()
                    # one row of arrays: a million rows' worth of Python tuples is the
                    # slow part of reading them (and the clicks apart, for their URLs)
                    kept = "pos IS NOT NULL AND k IS NOT NULL"
                    click = "pos IS NOT NULL AND k = 7 AND url IS NOT NULL"
                    cur.execute(
                        f"""WITH s AS (SELECT s.send_id,
                                              (row_number() OVER (ORDER BY s.send_id) - 1)::int
                                              AS pos
                                       FROM sends s WHERE {where}),
                            ev AS (SELECT s.pos, {REPORT_KIND_SQL} AS k, e.timestamp AS ts, e.url
                                   FROM events e {join} s ON s.send_id = e.send_id
                                   WHERE e.campaign = %s AND e.edition = %s AND e.matched = 1)
                            SELECT count(*),
                                   array_agg(pos) FILTER (WHERE {kept}),
                                   array_agg(k) FILTER (WHERE {kept}),
                                   array_agg(ts) FILTER (WHERE {kept}),
                                   array_agg(pos) FILTER (WHERE {click}),
                                   array_agg(url) FILTER (WHERE {click})
                            FROM ev""",
                        [*args, campaign, edition],
                    )
                    n, *arrays = cur.fetchone()
                    columns = tuple(a or [] for a in arrays)
                    if step:
                        cur.execute(
                            "SELECT count(*) FROM events WHERE campaign = %s AND edition = %s "
                            "AND matched = 1 AND step = %s",
                            [campaign, edition, step],
                        )
                        matched = cur.fetchone()[0]
                    else:
                        matched = n
                    cur.execute(
                        "SELECT count(*) FROM events WHERE campaign = %s AND matched = 0 "
                        "AND timestamp >= %s AND timestamp < %s" + step_sql,
                        [campaign, window[0], window[1], *step_arg],
                    )
                    unmatched = cur.fetchone()[0]
            return ReportRows(sends, [], int(matched), int(unmatched), columns=columns)

        return self._call(run)

    # -- copies -------------------------------------------------------------------------------

    def read_table(self, table: str, batch: int = 10_000) -> Iterator[list[tuple]]:
        from outreach.store.base import _ORDER, _check_table

        _check_table(table)

        def run() -> list[list[tuple]]:
            out = []
            with self.transaction(), self._live().cursor(name=f"read_{table}") as cur:
                cur.execute(f"SELECT * FROM {table} ORDER BY {_ORDER[table]}")
                while part := cur.fetchmany(batch):
                    out.append(part)
            return out

        # a copy out of PostgreSQL is rare (tests, moving back): batches are kept in memory
        yield from self._call(run)

    def write_table(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        from outreach.store.base import _check_table

        _check_table(table)

        def run() -> None:
            with (
                self._live().cursor() as cur,
                cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for r in rows:
                    copy.write_row(r)

        self._call(run)

    def after_copy(self) -> None:
        with self.transaction():
            for table in SERIAL_TABLES:
                self._exec(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
