"""Schema 3: no query looks sends up by address; the index only cost a random write per send.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("sends_email", table_name="sends", if_exists=True)
