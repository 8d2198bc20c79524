"""Schema 8: recipients' preferences, chosen on the page behind each message's footer link.

``preferences`` is append-only: every choice is a row (who, which campaign or ``*`` for every
coalition mailing, what, when, from which link and client address); the newest row of a kind
decides. Kinds and sources are typed codes (``outreach.store.codes`` as they were at this
revision). Leaving *every* mailing is not a preference: it is a suppression, as before.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY = rowid


def text(name: str, nullable: bool = True, **kw) -> sa.Column:
    return sa.Column(name, TEXT, nullable=nullable, **kw)


def upgrade() -> None:
    op.create_table(
        "preferences",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        text("email", False),  # lower-cased
        text("campaign", False),  # a campaign's name, or '*': every coalition mailing
        text("kind", False),
        text("language"),  # the language chosen (kind 'language' only)
        text("created_at", False),
        text("source", False),
        text("send_id"),  # the link the choice was made from
        text("client"),  # the client's address, as the server saw it
        sa.CheckConstraint(
            "kind IN ('leave_campaign','rejoin_campaign','language')", name="preferences_kind"
        ),
        sa.CheckConstraint("source IN ('page')", name="preferences_source"),
        sa.CheckConstraint(
            "(kind = 'language') = (language IS NOT NULL)", name="preferences_language"
        ),
    )
    op.create_index("preferences_campaign", "preferences", ["campaign", "email"])
    op.create_index("preferences_email", "preferences", ["email"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA user_version = 8")
