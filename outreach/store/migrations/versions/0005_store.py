"""Schema 5: the shared store. Every status column takes only its typed codes (the sets of
``outreach.store.codes`` as they were at this revision), and ``send_lock`` names the holder of
the send lock, so that a refused send can say who runs and since when.

SQLite cannot add a CHECK to a table: the four small tables are rebuilt (sends had its CHECK
from the start; events, the big one, has no status). ``PRAGMA user_version`` becomes 5, which
older outreach versions refuse to open ("written by a newer outreach").

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")

CHECKS = {
    "batches": (
        "batches_status",
        "status IN ('pending','sent','failed','unknown','cancelled','reconciled')",
    ),
    "runs": (
        "runs_outcome",
        "outcome IS NULL OR outcome IN ('complete','paused','stopped','interrupted')",
    ),
    "suppressions": (
        "suppressions_reason",
        "reason IN ('bounce','dropped','spamreport','unsubscribe','group_unsubscribe','manual')",
    ),
    "suppression_log": ("suppression_log_action", "action IN ('add','replace','remove')"),
}

SQLITE_TABLES = {
    "batches": """
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
        edition           INTEGER""",
    "runs": """
        id            INTEGER PRIMARY KEY,
        campaign      TEXT NOT NULL,
        transport     TEXT NOT NULL,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        outcome       TEXT,
        options       TEXT,
        host          TEXT,
        pid           INTEGER,
        edition       INTEGER""",
    "suppressions": """
        email       TEXT PRIMARY KEY,
        reason      TEXT NOT NULL,
        source      TEXT NOT NULL,
        detail      TEXT,
        created_at  TEXT NOT NULL,
        created_by  TEXT""",
    "suppression_log": """
        id      INTEGER PRIMARY KEY,
        email   TEXT NOT NULL,
        action  TEXT NOT NULL,
        reason  TEXT,
        source  TEXT,
        who     TEXT,
        at      TEXT NOT NULL,
        note    TEXT""",
}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, (name, check) in CHECKS.items():
        if sqlite:
            columns = SQLITE_TABLES[table]
            names = ", ".join(line.split()[0] for line in columns.strip().splitlines())
            op.execute(f"CREATE TABLE {table}_v5 ({columns},\n CONSTRAINT {name} CHECK ({check}))")
            op.execute(f"INSERT INTO {table}_v5 ({names}) SELECT {names} FROM {table}")
            op.execute(f"DROP TABLE {table}")
            op.execute(f"ALTER TABLE {table}_v5 RENAME TO {table}")
        else:
            op.create_check_constraint(name, table, check)
    if sqlite:
        op.create_index("batches_step", "batches", ["campaign", "edition", "step", "transport"])
    op.create_table(
        "send_lock",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("campaign", TEXT, nullable=False),
        sa.Column("host", TEXT, nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("since", TEXT, nullable=False),
        sa.CheckConstraint("id = 1", name="send_lock_one_row"),
    )
    if sqlite:
        op.execute("PRAGMA user_version = 5")
