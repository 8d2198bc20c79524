"""Alembic's environment for the store's migrations (run by :mod:`outreach.store.migrate`,
never by the ``alembic`` command: the store hands over a connection already in a transaction).

One transaction for the whole upgrade, taken exclusively first (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: an advisory transaction lock), so that two processes opening a new or old store at
once upgrade it once. A SQLite ledger written before Alembic (``PRAGMA user_version`` 1 to 4)
is stamped with the matching revision first, then upgraded from there.
"""

from __future__ import annotations

from alembic import context

from outreach.store.migrate import LEGACY_REVISIONS, MIGRATION_LOCK

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    transactional_ddl=True,
    transaction_per_migration=False,
)

with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(MIGRATION_LOCK)
    elif connection.dialect.name == "sqlite":
        has_version = connection.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).scalar()
        legacy = connection.exec_driver_sql("PRAGMA user_version").scalar()
        if not has_version and legacy in LEGACY_REVISIONS:
            context.get_context().stamp(context.script, LEGACY_REVISIONS[legacy])
    context.run_migrations()
