"""Where outreach keeps its state: sends, batches, runs, events, suppressions.

``OUTREACH_DB`` picks the backend: ``sqlite:///…`` (or nothing: ``.outreach/outreach.db``)
for one machine, ``postgresql://…`` for a store shared by the coordinator's laptop, the
webhook server and staff reading reports. Every SQL statement of the package lives in this
package; the rest of outreach calls :class:`Store`'s named methods.
"""

from __future__ import annotations

import os

from outreach.store import base as _base
from outreach.store.base import (
    LockHolder,
    ReportRows,
    Row,
    Store,
    StoreConflict,
    StoreUnavailable,
    set_application,
)
from outreach.store.ids import iso, new_id, now_iso, short_id
from outreach.store.migrate import HEAD, SCHEMA_VERSION
from outreach.store.sqlite import SQLiteStore
from outreach.store.url import POSTGRESQL, SQLITE, StoreURL, parse, redact_url


def _sqlite(target: StoreURL, purpose: str | None, create: bool) -> Store:
    return SQLiteStore(target, purpose or _base.application(), create=create)


def _postgresql(target: StoreURL, purpose: str | None, create: bool) -> Store:
    from outreach.store.postgres import PostgresStore  # psycopg loads for PostgreSQL only

    return PostgresStore(target, purpose or f"{_base.application()} (pid {os.getpid()})")


_base.BACKENDS.update({SQLITE: _sqlite, POSTGRESQL: _postgresql})

__all__ = [
    "HEAD",
    "SCHEMA_VERSION",
    "LockHolder",
    "ReportRows",
    "Row",
    "Store",
    "StoreConflict",
    "StoreURL",
    "StoreUnavailable",
    "iso",
    "new_id",
    "now_iso",
    "parse",
    "redact_url",
    "set_application",
    "short_id",
]
