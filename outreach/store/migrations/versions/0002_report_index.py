"""Schema 2: a covering index for ``outreach report`` (reads 1M events without touching the
table) and for counting matched/unmatched events per campaign; it replaces events_campaign
(same leading column), so that ingestion still maintains only three indexes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "events_report",
        "events",
        ["campaign", "matched", "event", "send_id", "timestamp", "type", "machine_open", "url"],
        if_not_exists=True,
    )
    op.drop_index("events_campaign", table_name="events", if_exists=True)
