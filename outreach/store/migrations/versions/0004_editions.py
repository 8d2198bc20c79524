"""Schema 4: editions. A yearly campaign is sent again every year: "already sent" is per
edition, so the edition joins the key of a send. Rows written before have edition NULL until
``Store.date_old_rows`` dates them with the campaign's edition windows (a migration cannot
read campaign files).

SQLite cannot change a constraint: its ``sends`` table is rebuilt (by the statements that
schema 4 always used, so that every ledger ends up alike).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQLITE_SENDS = """
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
    CREATE INDEX sends_message ON sends (message_id)
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SENDS.split(";"):
            op.execute(statement)
    else:
        op.add_column("sends", sa.Column("edition", sa.Integer()))
        op.drop_constraint("sends_key", "sends", type_="unique")
        op.create_unique_constraint(
            "sends_key", "sends", ["campaign", "edition", "step", "contact_id", "transport"]
        )
    for table in ("batches", "runs", "test_sends", "events"):
        op.add_column(table, sa.Column("edition", sa.Integer()))
    op.drop_index("batches_step", table_name="batches", if_exists=True)
    op.create_index("batches_step", "batches", ["campaign", "edition", "step", "transport"])
    op.drop_index("events_report", table_name="events", if_exists=True)
    op.create_index(
        "events_report",
        "events",
        [
            "campaign",
            "edition",
            "matched",
            "event",
            "send_id",
            "timestamp",
            "type",
            "machine_open",
            "url",
        ],
    )
