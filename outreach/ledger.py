"""The send ledger: the name the rest of outreach has always used for the store.

Everything lives in :mod:`outreach.store` (backends, migrations, the send protocol);
``Ledger`` is :class:`outreach.store.Store`.
"""

from __future__ import annotations

from outreach.store import SCHEMA_VERSION, Row, Store, new_id, now_iso, short_id

Ledger = Store

__all__ = ["SCHEMA_VERSION", "Ledger", "Row", "new_id", "now_iso", "short_id"]
