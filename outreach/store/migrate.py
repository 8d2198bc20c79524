"""Schema upgrades: one Alembic migration history (``outreach/store/migrations``) for every
backend. A store at the current revision opens without importing Alembic (one query); an
empty or older one is upgraded in place, in one transaction; a newer one is refused.

SQLite ledgers written before Alembic carry their schema in ``PRAGMA user_version`` (1 to 4):
they are stamped with the matching revision, then upgraded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from outreach.exceptions import LedgerError

if TYPE_CHECKING:
    from outreach.store.base import Store

HEAD = "0008"  # the newest revision in migrations/versions (tests/test_store.py checks it)
SCHEMA_VERSION = int(HEAD)
LEGACY_REVISIONS = {1: "0001", 2: "0002", 3: "0003", 4: "0004"}
MIGRATIONS = Path(__file__).parent / "migrations"
# PostgreSQL: one upgrader at a time per database and schema
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(28533, hashtext(current_database() || '.migrate.' || current_schema()))"


def schema_number(revision: str | None) -> int | None:
    """The schema version of a revision id (``0005`` → 5; legacy ``user_version N`` → N)."""
    if revision is None:
        return 0
    digits = revision.rsplit(" ", 1)[-1]
    return int(digits) if digits.isdigit() else None


def ensure_schema(store: Store) -> None:
    """Bring the store to :data:`HEAD`, or refuse a schema this outreach does not know."""
    revision = store.revision()
    if revision == HEAD:
        return
    number = schema_number(revision)
    if number is None or number > SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger has schema version {number if number is not None else revision}; "
            f"this outreach understands up to {SCHEMA_VERSION}",
            where=store.where,
            hint="it was written by a newer outreach: upgrade outreach (pip install -U .)",
        )
    upgrade(store)


def upgrade(store: Store, to: str = HEAD) -> None:
    """Run the migrations from the store's revision to ``to`` (:data:`HEAD`; an older
    revision only to test the upgrade from it)."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    url, creator = store._sqlalchemy_creator()  # type: ignore[attr-defined]
    engine = sa.create_engine(url, creator=creator, poolclass=sa.pool.NullPool)
    if engine.dialect.name == "sqlite":
        # the whole upgrade takes SQLite's write lock first (see the pysqlite recipe)
        @sa.event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, to)
    except sa.exc.DBAPIError as exc:
        err = store._translate(exc.orig) if exc.orig is not None else None  # type: ignore[arg-type]
        if err is None:
            raise
        raise LedgerError(
            f"upgrading the schema failed: {err.message}", where=store.where, hint=err.hint
        ) from None
    finally:
        engine.dispose()
