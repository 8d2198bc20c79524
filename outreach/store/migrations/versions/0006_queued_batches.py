"""Schema 6: a batch may be ``queued``. A concurrent send writes batches ahead of their
hand-off and flips each to ``pending`` just before its request (``Store.mark_handed_off``), so
that after a crash a still-queued batch is known never to have left.

SQLite cannot change a CHECK: the batches table is rebuilt with the new one.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NAME = "batches_status"
CHECK = "status IN ('queued','pending','sent','failed','unknown','cancelled','reconciled')"
COLUMNS = """
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
        updated_at        TEXT NOT NULL,
        edition           INTEGER"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(NAME, "batches", type_="check")
        op.create_check_constraint(NAME, "batches", CHECK)
        return
    names = ", ".join(line.split()[0] for line in COLUMNS.strip().splitlines())
    op.execute(f"CREATE TABLE batches_v6 ({COLUMNS},\n CONSTRAINT {NAME} CHECK ({CHECK}))")
    op.execute(f"INSERT INTO batches_v6 ({names}) SELECT {names} FROM batches")
    op.execute("DROP TABLE batches")
    op.execute("ALTER TABLE batches_v6 RENAME TO batches")
    op.create_index("batches_step", "batches", ["campaign", "edition", "step", "transport"])
    op.execute("PRAGMA user_version = 6")
