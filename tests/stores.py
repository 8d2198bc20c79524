"""The stores tests run against: SQLite (a file in the workspace) and PostgreSQL.

PostgreSQL tests need ``OUTREACH_TEST_PG_URL`` (CI sets it to the local server,
``postgresql://postgres@127.0.0.1:5432/test``). Each test run creates its own database there
(and drops it at the end); each workspace gets its own schema in it, named in the workspace's
``.env`` as ``OUTREACH_DB`` (so CLI commands and subprocesses use it as a coordinator's
would). Without the variable the PostgreSQL tests are skipped and say why; under CI they fail.

Tests read state through the store (:func:`open_store`) or the CLI, never with SQL.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from outreach.store import Store
from outreach.workspace import Workspace

PG_ENV = "OUTREACH_TEST_PG_URL"
SKIP_REASON = (
    f"{PG_ENV} is not set: PostgreSQL store tests skipped "
    "(set it to a server where the user may create databases, e.g. "
    "postgresql://postgres@127.0.0.1:5432/test; CI does)"
)
BACKENDS = ("sqlite", "postgresql")

ACTIVE = ["sqlite"]  # the backend that new workspaces get (set by the `backend` fixture)


class PGServer:
    """This run's database on the test server; one schema per store."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self.name = f"outreach_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._n = itertools.count(1)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        parts = urlsplit(admin_url)
        self.base = urlunsplit((parts.scheme, parts.netloc, "/" + self.name, "", ""))
        self._admin = psycopg.connect(self.base, autocommit=True)

    def new_url(self) -> str:
        """The URL of a new, empty store (its own schema)."""
        schema = f"s{next(self._n)}"
        self._admin.execute(f"CREATE SCHEMA {schema}")
        return f"{self.base}?options={quote('-csearch_path=' + schema)}"

    def terminate(self, application_like: str) -> int:
        """``pg_terminate_backend`` every connection of this run's database whose
        application_name is LIKE the pattern; returns how many."""
        rows = self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE %s AND pid <> pg_backend_pid()",
            (self.name, application_like),
        ).fetchall()
        return sum(1 for r in rows if r[0])

    def drop(self) -> None:
        import psycopg

        self._admin.close()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


SERVER: list[PGServer] = []  # set by the session fixture when PostgreSQL is configured


def new_url(backend: str, folder: Path) -> str:
    """An empty store of ``backend``: a SQLite file in ``folder``, or a PostgreSQL schema."""
    if backend == "sqlite":
        return f"sqlite:///{folder / '.outreach' / 'outreach.db'}"
    return SERVER[0].new_url()


def attach(root: Path, backend: str | None = None) -> Path:
    """Give a new workspace its store of the active backend: SQLite is the default file;
    PostgreSQL is a new schema, named in the workspace's ``.env``."""
    backend = backend or ACTIVE[0]
    if backend == "postgresql":
        env = root / ".env"
        lines = [
            line
            for line in (env.read_text().splitlines() if env.exists() else [])
            if not line.startswith("OUTREACH_DB=")
        ]
        env.write_text("\n".join([*lines, f"OUTREACH_DB={new_url(backend, root)}"]) + "\n")
    return root


def store_url(root: Path) -> str:
    return Workspace.open(root).db_url()


def open_store(root: Path) -> Store:
    """The workspace's store (read its state through the store's methods)."""
    ws = Workspace.open(root)
    return Store.open(ws.db_url(), ws.root, purpose="outreach tests")


def copy_workspace(src: Path, dst: Path) -> Path:
    """Copy a workspace with its store (a PostgreSQL store is copied into a new schema)."""
    shutil.copytree(src, dst)
    url = store_url(src)
    if url.startswith("postgresql"):
        attach(dst, "postgresql")
        copy_store(url, store_url(dst))
    return dst


def copy_store(src_url: str, dst_url: str) -> None:
    """Every row of one store into another, empty one (as ``outreach db copy`` does)."""
    from outreach.store.base import TABLES

    with Store.open(src_url) as src, Store.open(dst_url) as dst, dst.transaction():
        for table in TABLES:
            columns = src.columns(table)
            for part in src.read_table(table):
                dst.write_table(table, columns, part)
        dst.after_copy()


def rows(root: Path, table: str = "sends", **where) -> list[dict]:
    """A table's rows as dicts (``where``: column = value)."""
    with open_store(root) as store:
        return store.table_rows(table, **where)


def pg_seq_scans(store: Store, table: str) -> int:
    """Sequential scans of ``table`` so far in the store's current transaction (PostgreSQL's
    own counter): for tests of how the store reads, not what."""
    row = store.conn.execute(  # type: ignore[attr-defined]
        "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = %s", (table,)
    ).fetchone()
    return int(row[0]) if row else 0


def pg_staging_bytes(store: Store) -> int:
    """The size on disk of the store's event staging table (a temporary table of its
    connection; 0 when it was never made)."""
    row = store.conn.execute(  # type: ignore[attr-defined]
        "SELECT coalesce(pg_relation_size(to_regclass('pg_temp.events_in')), 0)"
    ).fetchone()
    return int(row[0])
