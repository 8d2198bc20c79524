"""The typed codes the store keeps: one set per table column, enforced by the schema.

Each is a :class:`~enum.StrEnum`, so a member compares equal to its text (``"sent"``) and is
stored as that text. The migration that added a set's CHECK constraint lists its values
literally (migrations never change); ``tests/test_store.py`` proves that the schema accepts
every member and refuses anything else, on every backend.
"""

from __future__ import annotations

from enum import StrEnum


class SendStatus(StrEnum):
    """``sends.status``: where one recipient's hand-off stands (see the ledger protocol)."""

    PENDING = "pending"  # committed before the hand-off; outcome not yet recorded
    SENT = "sent"  # the transport accepted it
    FAILED = "failed"  # nothing was accepted: may be retried
    UNKNOWN = "unknown"  # may have been accepted: resent only with --resend-unknown
    CANCELLED = "cancelled"  # a scheduled send cancelled before its time


class BatchStatus(StrEnum):
    """``batches.status``: the same protocol for one request, plus ``queued`` (written ahead of
    its hand-off by a concurrent run; flipped to ``pending`` just before its request, so a
    crash leaves a still-queued batch known never to have left) and ``reconciled`` (a crashed
    run's batch whose rows were settled one by one by the next run)."""

    QUEUED = "queued"
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"
    RECONCILED = "reconciled"


class RunOutcome(StrEnum):
    """``runs.outcome`` (NULL while the run goes on, or if it was killed)."""

    COMPLETE = "complete"
    PAUSED = "paused"  # too many failed batches in a row
    STOPPED = "stopped"  # a fatal transport error
    INTERRUPTED = "interrupted"  # Ctrl-C or a bug during a hand-off


class SuppressionReason(StrEnum):
    """``suppressions.reason``: why an address is never mailed (shown in the send plan)."""

    BOUNCE = "bounce"  # hard bounce
    DROPPED = "dropped"  # SendGrid dropped it for a reason about the address
    SPAMREPORT = "spamreport"
    UNSUBSCRIBE = "unsubscribe"
    GROUP_UNSUBSCRIBE = "group_unsubscribe"  # the only one a later event may lift
    MANUAL = "manual"  # `outreach suppressions add`


class SuppressionAction(StrEnum):
    """``suppression_log.action``."""

    ADD = "add"
    REPLACE = "replace"  # a permanent reason replaced a liftable one
    REMOVE = "remove"


class StaffRole(StrEnum):
    """``users.role``: what a staff account may do in ``outreach serve``."""

    VIEWER = "viewer"  # reads the dashboard, the reports and the API
    ADMIN = "admin"  # also changes suppressions


class AuditAction(StrEnum):
    """``audit_log.action``: the kinds of admin change recorded with who, when and why."""

    USER_ADD = "user_add"
    USER_REMOVE = "user_remove"
    PASSWORD_SET = "password_set"
    TOKEN_CREATE = "token_create"
    TOKEN_REVOKE = "token_revoke"
    SUPPRESSION_ADD = "suppression_add"
    SUPPRESSION_REMOVE = "suppression_remove"


class AuditVia(StrEnum):
    """``audit_log.via``: where an admin change was made."""

    CLI = "cli"  # an `outreach` command on a machine with the store's credentials
    WEB = "web"  # a dashboard form (session and CSRF token)
    API = "api"  # the JSON API (session and CSRF token, or a bearer token)


ALL_CAMPAIGNS = "*"  # ``preferences.campaign`` of a choice about every coalition mailing


class PreferenceKind(StrEnum):
    """``preferences.kind``: a recipient's choice on the preference page (the newest row of a
    kind decides; leaving every mailing is a suppression, not a preference)."""

    LEAVE_CAMPAIGN = "leave_campaign"  # no more messages of this campaign (any edition)
    REJOIN_CAMPAIGN = "rejoin_campaign"  # undoes leave_campaign
    LANGUAGE = "language"  # messages in this language, whatever the list says


class PreferenceSource(StrEnum):
    """``preferences.source``: where a choice was made."""

    PAGE = "page"  # the recipient's page behind the footer link (<unsubscribe.url>/<send_id>)


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in enum)
