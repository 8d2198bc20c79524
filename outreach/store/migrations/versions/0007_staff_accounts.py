"""Schema 7: staff accounts for ``outreach serve``.

``users`` (argon2 hashes, never passwords), ``sessions`` (keyed by the SHA-256 of the cookie's
session id, with the session's CSRF token), ``api_tokens`` (SHA-256 of each bearer token),
``login_failures`` (what the login rate limit counts, shared by every worker) and
``audit_log`` (every admin change: who, when, what, why, from where). Roles, audit actions
and channels are typed codes (``outreach.store.codes`` as they were at this revision).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY = rowid


def _id() -> sa.Column:
    return sa.Column("id", BIGINT, primary_key=True, autoincrement=True)


def text(name: str, nullable: bool = True, **kw) -> sa.Column:
    return sa.Column(name, TEXT, nullable=nullable, **kw)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        text("email", False),
        text("role", False),
        text("password_hash", False),
        text("created_at", False),
        text("created_by"),
        text("password_changed_at", False),
        text("last_login_at"),
        sa.UniqueConstraint("email", name="users_email"),
        sa.CheckConstraint("role IN ('viewer','admin')", name="users_role"),
    )
    op.create_table(
        "sessions",
        text("id", primary_key=True),  # SHA-256 (hex) of the id in the cookie
        sa.Column("user_id", BIGINT, nullable=False),
        text("csrf_token", False),
        text("created_at", False),
        text("last_seen_at", False),
        text("client"),
        text("user_agent"),
    )
    op.create_index("sessions_user", "sessions", ["user_id"])
    op.create_table(
        "api_tokens",
        text("id", primary_key=True),  # the token's public part, shown in lists
        sa.Column("user_id", BIGINT, nullable=False),
        text("token_hash", False),
        text("label"),
        text("created_at", False),
        text("created_by"),
        text("last_used_at"),
        text("revoked_at"),
        sa.UniqueConstraint("token_hash", name="api_tokens_hash"),
    )
    op.create_index("api_tokens_user", "api_tokens", ["user_id"])
    op.create_table(
        "login_failures",
        _id(),
        text("email", False),  # the account tried (lower-cased), whether it exists or not
        text("client"),
        text("at", False),
    )
    op.create_index("login_failures_email", "login_failures", ["email", "at"])
    op.create_index("login_failures_client", "login_failures", ["client", "at"])
    op.create_table(
        "audit_log",
        _id(),
        text("at", False),
        text("who", False),
        text("action", False),
        text("target"),
        text("why"),
        text("via", False),
        sa.CheckConstraint(
            "action IN ('user_add','user_remove','password_set','token_create','token_revoke',"
            "'suppression_add','suppression_remove')",
            name="audit_log_action",
        ),
        sa.CheckConstraint("via IN ('cli','web','api')", name="audit_log_via"),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA user_version = 7")
