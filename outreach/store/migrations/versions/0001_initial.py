"""Schema 1: runs, sends, batches, test sends, events, suppressions and their log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# text compares byte by byte on both backends (PostgreSQL's "C" collation is SQLite's order)
TEXT = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
INT = sa.Integer()
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY = rowid


def _id() -> sa.Column:
    return sa.Column("id", BIGINT, primary_key=True, autoincrement=True)


def text(name: str, nullable: bool = True, **kw) -> sa.Column:
    return sa.Column(name, TEXT, nullable=nullable, **kw)


def upgrade() -> None:
    op.create_table(
        "runs",
        _id(),
        text("campaign", False),
        text("transport", False),
        text("started_at", False),
        text("finished_at"),
        text("outcome"),
        text("options"),
        text("host"),
        sa.Column("pid", INT),
    )
    op.create_table(
        "sends",
        text("send_id", primary_key=True),
        text("campaign", False),
        text("step", False),
        text("contact_id", False),
        text("transport", False),
        text("email", False),
        text("status", False),
        text("batch_id"),
        text("variant"),
        text("segment"),
        text("relationship"),
        text("country"),
        text("country_status"),
        text("language"),
        text("message_id"),
        text("send_at"),
        text("error"),
        sa.Column("attempts", INT, nullable=False, server_default=sa.text("0")),
        sa.Column("run_id", BIGINT),
        text("created_at", False),
        text("updated_at", False),
        sa.CheckConstraint(
            "status IN ('pending','sent','failed','unknown','cancelled')", name="sends_status"
        ),
        sa.UniqueConstraint("campaign", "step", "contact_id", "transport", name="sends_key"),
    )
    op.create_index("sends_batch", "sends", ["batch_id"])
    op.create_index("sends_email", "sends", ["email"])
    op.create_index("sends_message", "sends", ["message_id"])
    op.create_table(
        "batches",
        text("batch_id", primary_key=True),
        text("campaign", False),
        text("step", False),
        text("transport", False),
        text("variant"),
        sa.Column("size", INT, nullable=False),
        text("status", False),
        text("provider_batch_id"),
        text("message_id"),
        text("error"),
        sa.Column("run_id", BIGINT),
        text("created_at", False),
        text("updated_at", False),
    )
    op.create_index("batches_step", "batches", ["campaign", "step", "transport"])
    op.create_table(
        "test_sends",
        _id(),
        text("campaign", False),
        text("step", False),
        text("variant", False),
        text("to_email", False),
        text("transport", False),
        text("message_id"),
        text("sent_at", False),
    )
    op.create_table(
        "events",
        _id(),
        text("sg_event_id"),
        text("event", False),
        text("email"),
        sa.Column("timestamp", sa.BigInteger()),
        text("send_id"),
        text("campaign"),
        text("step"),
        text("contact_id"),
        text("message_id"),
        text("url"),
        text("type"),
        text("reason"),
        sa.Column("machine_open", INT, nullable=False, server_default=sa.text("0")),
        sa.Column("matched", INT, nullable=False, server_default=sa.text("0")),
        text("source"),
        text("received_at", False),
        text("raw"),
        # SendGrid retries a batch for 24 hours: an event is stored once, whoever receives it
        sa.UniqueConstraint("sg_event_id", name="events_sg_event_id_key"),
    )
    op.create_index("events_send", "events", ["send_id"])
    op.create_index("events_campaign", "events", ["campaign", "step", "event"])
    op.create_table(
        "suppressions",
        text("email", primary_key=True),
        text("reason", False),
        text("source", False),
        text("detail"),
        text("created_at", False),
        text("created_by"),
    )
    op.create_table(
        "suppression_log",
        _id(),
        text("email", False),
        text("action", False),
        text("reason"),
        text("source"),
        text("who"),
        text("at", False),
        text("note"),
    )
